package unionfs

import (
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/layerfs/layerfs/unionfs/merge"
	"github.com/layerfs/layerfs/unionfs/xattrs"
	"github.com/layerfs/layerfs/whiteout"
	"golang.org/x/sys/unix"
)

// Identity: the numbers the mount answers (st_ino, d_ino) and how they survive copy-ups and
// remounts. A non-directory keeps the number it first showed: a lower object's is its own
// (with the layer's filesystem in the top bits when the layers span several, InoOf); a copy
// records it (originAttr), and a copy the kernel made names its origin (kernelOrigin). A merged
// directory has the number of its topmost lower part, and one directory holds a number at a
// time (dirIdentities).

// fsBits is how many high bits of st_ino name the filesystem an object comes from when the
// layers span several filesystems (the kernel's "xino" scheme).
const fsBits = 6

// InoOf maps the real inode number of an object in layer l to its merged st_ino. The mapping
// depends only on the layer's filesystem and the real number, so it is stable across remounts
// of the same stack. A real number too wide for the remaining bits is folded, which can in
// theory collide; ext4, xfs and btrfs numbers fit.
func (u *unionFS) InoOf(l *merge.Layer, real uint64) uint64 {
	if u.sameFS {
		return real
	}
	const lowBits = 64 - fsBits
	const mask = uint64(1)<<lowBits - 1
	if real > mask {
		real = (real ^ real>>lowBits) & mask
	}
	ino := l.FsIdx<<lowBits | real
	if ino == ^uint64(0) { // reserved by go-fuse
		ino--
	}
	return ino
}

// originAttr records, on an object copied up from a lower layer, the merged inode number it
// had there, so st_ino stays the same after copy-up and across remounts. It lives below the
// overlay prefix, so neither layerfs nor the kernel shows it in a merged view.
const originAttr = "layerfs.ino"

// readOrigin returns the merged number recorded on an upper object by copy-up, if any.
func (u *unionFS) readOrigin(dirfd int, name string) (uint64, bool) {
	var buf [24]byte
	n, err := unix.Lgetxattr(xattrs.Path(dirfd, name), u.xattrPrefix()+originAttr, buf[:])
	if err != nil {
		return 0, false
	}
	ino, err := strconv.ParseUint(string(buf[:n]), 10, 64)
	return ino, err == nil
}

// kernelOrigin returns the merged number of the lower object an upper object was copied up
// from by the kernel (its overlay.origin), where that number can be known: with all layers on
// one filesystem, it is the lower object's own number.
func (u *unionFS) kernelOrigin(dirfd int, name string) (uint64, bool) {
	if !u.sameFS {
		return 0, false
	}
	var buf [128]byte
	p := xattrs.Path(dirfd, name)
	for _, prefix := range []string{whiteout.TrustedPrefix, whiteout.UserPrefix} {
		sz, err := unix.Lgetxattr(p, prefix+"origin", buf[:])
		if err == nil {
			return parseFH(buf[:sz])
		}
	}
	return 0, false
}

// OriginIno returns the merged number recorded on an upper object, by layerfs's copy-up or
// the kernel's: one listxattr tells which, if any, is there (most objects have neither).
func (u *unionFS) OriginIno(dirfd int, name string) (uint64, bool) {
	var buf [1024]byte
	sz, err := unix.Llistxattr(xattrs.Path(dirfd, name), buf[:])
	if err == nil {
		names := "\x00" + string(buf[:sz])
		switch {
		case strings.Contains(names, "\x00"+u.xattrPrefix()+originAttr+"\x00"):
			return u.readOrigin(dirfd, name)
		case strings.Contains(names, ".overlay.origin\x00"):
			return u.kernelOrigin(dirfd, name)
		}
		return 0, false
	}
	// More attributes than the buffer holds: ask for each.
	if ino, ok := u.readOrigin(dirfd, name); ok {
		return ino, true
	}
	return u.kernelOrigin(dirfd, name)
}

// dirIdentities remembers which merged directory holds each directory inode number. A merged
// directory takes its topmost lower part's number, so two merged directories share one only
// when a redirect leads to a lower directory that is still visible at its own name (an upper
// damaged or edited by hand). The kernel then refuses the second with ESTALE; so do we,
// rather than let go-fuse serve both names from one inode.
type dirIdentities struct {
	mu   sync.Mutex       // a leaf: nothing of ours is locked under it
	byNo map[uint64]*node // guarded by mu
}

// claim records that dir, about to be returned for name in parent, holds ino. It fails with
// ESTALE when another directory that is still in the tree holds it.
func (d *dirIdentities) claim(ino uint64, dir *node, parent *fs.Inode, name string) syscall.Errno {
	d.mu.Lock()
	defer d.mu.Unlock()
	if prev, ok := d.byNo[ino]; ok {
		if pname, pparent := prev.Parent(); pparent != nil {
			if pparent != parent || pname != name {
				return syscall.ESTALE
			}
			return 0 // the same directory looked up again: go-fuse keeps prev
		}
	}
	if d.byNo == nil {
		d.byNo = map[uint64]*node{}
	}
	d.byNo[ino] = dir
	return 0
}

// forget drops dir's claim once the kernel has forgotten it.
func (d *dirIdentities) forget(ino uint64, dir *node) {
	d.mu.Lock()
	if d.byNo[ino] == dir {
		delete(d.byNo, ino)
	}
	d.mu.Unlock()
}

var _ fs.NodeOnForgetter = (*node)(nil)

// OnForget releases what the node holds once the kernel no longer knows it: an unnamed
// file's descriptor (tmpfile.go), a removed file's work-directory name (hide.go), a
// directory's number.
func (n *node) OnForget() {
	n.named()
	n.dropHidden()
	if n.StableAttr().Mode == syscall.S_IFDIR {
		n.u.dirs.forget(n.StableAttr().Ino, n)
	}
}
