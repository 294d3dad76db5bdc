package unionfs

import (
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/layerfs/layerfs/copyup"
	"github.com/layerfs/layerfs/unionfs/xattrs"
	"golang.org/x/sys/unix"
)

// Immutable and append-only objects. The kernel's overlayfs gives its inode the immutable
// and append-only flags of the topmost object and of overlay.protattr (ovl_copyflags,
// ovl_check_protattr), and the VFS then refuses, with EPERM, what they forbid. A FUSE inode
// never has them, so the kernel sends those requests to layerfs, which refuses them itself,
// with the VFS's rules:
//   - an immutable object: opening it for writing, any change of its attributes (mode,
//     owner, times, size, extended attributes), a link to it, removing or renaming it; and
//     in an immutable directory, adding or removing a name;
//   - an append-only object: opening it for writing without O_APPEND, truncating it, a
//     change of mode, owner or times (but to now), of extended attributes, a link to it,
//     removing or renaming it, an fallocate that may change its data; and in an
//     append-only directory, removing or renaming a name (adding one is allowed).
//
// A node keeps its flags once known (node.attrs): layers do not change while mounted, a
// copy-up keeps them (in overlay.protattr), and only Ioctl (fileattr.go) changes them through
// the mount. A lookup, or the making of a new object, tells them at no cost (statx's
// attributes, whiteout.Lstat; for an upper non-directory, the listxattr the lookup makes for
// its origin says whether overlay.protattr is there too); an upper directory found by lookup,
// or an upper object with overlay.protattr, reads them at its first such request.

// The bits of node.attrs.
const (
	// attrNoXattrs: the object is known to have no extended attributes (xattr.go).
	attrNoXattrs uint32 = 1 << iota
	// attrProtKnown: attrImmutable and attrAppend are known.
	attrProtKnown
	attrImmutable
	attrAppend
	// attrBirthServed: a STATX told the kernel the object's birth time, which it keeps
	// (statx.go).
	attrBirthServed
	// attrBirthStale: the birth time the kernel keeps is no longer the object's (a copy-up
	// made a new one): attributes go uncached until a STATX tells the new one.
	attrBirthStale
)

// setAttrBits sets the bits set and clears the bits clear of n.attrs.
func (n *node) setAttrBits(set, clear uint32) {
	for {
		old := n.attrs.Load()
		v := old&^clear | set
		if v == old || n.attrs.CompareAndSwap(old, v) {
			return
		}
	}
}

// protFlags returns the object's immutable and append-only flags (copyup.FlagImmutable,
// copyup.FlagAppend), as the kernel's overlayfs gives them to its inode.
func (n *node) protFlags() uint32 {
	if a := n.attrs.Load(); a&attrProtKnown != 0 {
		return attrBits.flags(uint64(a))
	}
	flags := n.readProtFlags()
	n.setProtFlags(flags)
	return flags
}

// setProtFlags records the object's immutable and append-only flags.
func (n *node) setProtFlags(flags uint32) {
	n.setAttrBits(attrProtKnown|attrBits.to(flags), attrImmutable|attrAppend)
}

// protBits pairs the immutable and append-only flags (copyup.FlagImmutable and
// copyup.FlagAppend, first) with the bits that stand for them in another encoding.
type protBits [2][2]uint64

// The encodings of the two flags: node.attrs, statx's attributes, and a struct fsxattr's
// xflags (FS_XFLAG_IMMUTABLE, FS_XFLAG_APPEND).
var (
	attrBits  = protBits{{copyup.FlagImmutable, uint64(attrImmutable)}, {copyup.FlagAppend, uint64(attrAppend)}}
	statxBits = protBits{{copyup.FlagImmutable, unix.STATX_ATTR_IMMUTABLE}, {copyup.FlagAppend, unix.STATX_ATTR_APPEND}}
	xflagBits = protBits{{copyup.FlagImmutable, 0x8}, {copyup.FlagAppend, 0x10}}
)

// flags returns the flags that bits v stand for.
func (b protBits) flags(v uint64) uint32 {
	var f uint32
	for _, p := range b {
		if v&p[1] != 0 {
			f |= uint32(p[0])
		}
	}
	return f
}

// to returns the bits that stand for flags.
func (b protBits) to(flags uint32) uint32 {
	var v uint64
	for _, p := range b {
		if uint64(flags)&p[0] != 0 {
			v |= p[1]
		}
	}
	return uint32(v)
}

// all is every bit of the encoding.
func (b protBits) all() uint32 { return uint32(b[0][1] | b[1][1]) }

// readProtFlags reads the topmost object's flags (statx's attributes, which need no open of
// the object itself) and, on an upper object, overlay.protattr. An object that cannot be
// reached has none: the request then fails as it would have.
func (n *node) readProtFlags() uint32 {
	var fd int
	var err error
	upper := true
	if h := n.hiddenName(); h != "" {
		fd, err = unix.Openat(n.u.work.FD, h, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	} else {
		top := n.top()
		upper = n.u.Layers[top.Layer].Upper
		fd, err = n.u.Layers[top.Layer].Open(top.Path, unix.O_PATH, 0)
	}
	if err != nil {
		return 0
	}
	defer unix.Close(fd)
	var flags uint32
	var stx unix.Statx_t
	if unix.Statx(fd, "", unix.AT_EMPTY_PATH|unix.AT_SYMLINK_NOFOLLOW, 0, &stx) == nil {
		flags = statxBits.flags(stx.Attributes & stx.Attributes_mask)
	}
	if upper && n.attrs.Load()&attrNoXattrs == 0 {
		var v [32]byte // OVL_PROTATTR_MAX
		// Through the descriptor's /proc link, which must be followed (O_PATH descriptors
		// take no fgetxattr).
		if sz, err := unix.Getxattr(xattrs.Path(fd, ""), n.u.protAttr(), v[:]); err == nil {
			p, _ := copyup.ParseProtAttr(v[:sz])
			flags |= p
		}
	}
	return flags
}

// mayChange is EPERM where the object's attributes may not change (notify_change,
// xattr_permission): it is immutable or append-only.
func (n *node) mayChange() syscall.Errno {
	if n.protFlags() != 0 {
		return syscall.EPERM
	}
	return 0
}

// maySetattr is EPERM where the object's flags forbid the change in (notify_change,
// setattr_prepare, and the truncates): a change of mode, owner or explicit times of an
// immutable or append-only object, and times set to now on an immutable one; a new size of
// an append-only object, and of an immutable one but through a descriptor opened for writing
// before it became so (FATTR_FH: ftruncate checks only append-only, do_sys_ftruncate).
func (n *node) maySetattr(in *fuse.SetAttrIn) syscall.Errno {
	v := in.Valid
	explicit := v&fuse.FATTR_ATIME != 0 && v&fuse.FATTR_ATIME_NOW == 0 || v&fuse.FATTR_MTIME != 0 && v&fuse.FATTR_MTIME_NOW == 0
	if v&(fuse.FATTR_MODE|fuse.FATTR_UID|fuse.FATTR_GID) != 0 || explicit {
		return n.mayChange()
	}
	if v&fuse.FATTR_SIZE != 0 {
		p := n.protFlags()
		if p&copyup.FlagAppend != 0 || p&copyup.FlagImmutable != 0 && v&fuse.FATTR_FH == 0 {
			return syscall.EPERM
		}
	}
	if v&(fuse.FATTR_ATIME|fuse.FATTR_MTIME) != 0 && n.protFlags()&copyup.FlagImmutable != 0 {
		return syscall.EPERM
	}
	return 0
}

// mayWrite is EPERM where the object may not be opened for writing with flags (may_open).
func (n *node) mayWrite(flags uint32) syscall.Errno {
	switch p := n.protFlags(); {
	case p&copyup.FlagImmutable != 0:
		return syscall.EPERM
	case p&copyup.FlagAppend != 0 && flags&unix.O_APPEND == 0:
		return syscall.EPERM
	}
	return 0
}

// mayAdd is EPERM where directory n may not take a new name (may_create).
func (n *node) mayAdd() syscall.Errno {
	if n.protFlags()&copyup.FlagImmutable != 0 {
		return syscall.EPERM
	}
	return 0
}

// mayRemove is EPERM where name may not be removed from directory n, or moved out of it
// (may_delete): n or the object is immutable or append-only.
func (n *node) mayRemove(name string) syscall.Errno {
	if n.protFlags() != 0 {
		return syscall.EPERM
	}
	if c := n.knownChild(name); c != nil && c.protFlags() != 0 {
		return syscall.EPERM
	}
	return 0
}

// knownChild returns the node of name in directory n, if the tree has one (the kernel looks a
// name up before it asks to remove or rename it).
func (n *node) knownChild(name string) *node {
	if ch := n.GetChild(name); ch != nil {
		if c, ok := ch.Operations().(*node); ok {
			return c
		}
	}
	return nil
}
