// Package merge is the overlay's merge engine, free of FUSE: the layers of a stack, where a
// merged name lives (lookup: Resolve), what a merged directory lists (Entries) and where
// redirects lead. It reads the layers and never changes them; the FUSE node tree
// (package unionfs) builds every operation on it and does the writing.
//
// The rules are the kernel's overlayfs's (Documentation/filesystems/overlayfs.rst): layers
// are searched top to bottom; a whiteout hides a name in every layer below it; a
// non-directory ends the search; directories merge down to the first opaque one or the first
// non-directory; a directory's redirect continues the search below it at the path it names.
// What counts as a whiteout or a marker, and where, is package whiteout's classifier
// (whiteout.LookupRule, whiteout.ListingRule).
//
// Identity (the st_ino a merged object shows, its link count) depends on more than the
// layers (the kernel's index, the mount's options): the Stack asks its Identity for it.
package merge

import (
	"errors"
	"syscall"

	"golang.org/x/sys/unix"
)

// Stack is the layers of one mount, topmost first, and how to read them.
type Stack struct {
	// Layers are topmost first: the upper (if any) at 0, then the lowers in order.
	Layers []*Layer
	// FollowRedirects says whether directory redirects are followed (redirect_dir is not
	// nofollow).
	FollowRedirects bool
	// Identity gives merged inode numbers and link counts. Set before use.
	Identity Identity
}

// Identity is what a Stack needs to know about inode numbers beyond the layers.
type Identity interface {
	// InoOf is the st_ino the mount shows for the object numbered ino in layer l.
	InoOf(l *Layer, ino uint64) uint64
	// OriginIno is the number an upper object name of directory dirfd keeps from the lower
	// object it was copied up from, if it has one, and what the same look at its extended
	// attributes told.
	OriginIno(dirfd int, name string) (uint64, bool, XattrFacts)
	// MergedNlink is the link count the mount shows for the upper non-directory name of
	// dirfd, stat'ed as st.
	MergedNlink(dirfd int, name string, st *unix.Stat_t) uint64
	// OverrideType is the file type an override attribute gives the regular file name of
	// dirfd in layer l (a device, fifo or socket kept as a file), if it gives one.
	OverrideType(l *Layer, dirfd int, name string) (uint32, bool)
}

// Entry is one name of a merged directory's listing.
type Entry struct {
	Name string
	Mode uint32 // the S_IFMT type bits
	Ino  uint64 // what stat of the name gives as st_ino
}

// Errno is the errno an error from the unix package carries; EIO for any other.
func Errno(err error) syscall.Errno {
	if err == nil {
		return 0
	}
	var e unix.Errno
	if errors.As(err, &e) {
		return syscall.Errno(e)
	}
	return syscall.EIO
}
