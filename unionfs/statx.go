package unionfs

import (
	"context"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/layerfs/layerfs/whiteout"
	"golang.org/x/sys/unix"
)

// Birth times. The kernel's overlayfs gives statx's birth time of the topmost layer object
// (the copy's, after a copy-up), as it gives the rest of its attributes. FUSE asks for it with
// FUSE_STATX, which the kernel sends only for a statx that asks for the birth time (stat(1),
// not stat(2)) and only while it does not hold one for the inode (fs/fuse/dir.c,
// fuse_update_get_attr): it keeps the answer with the attributes and does not drop it with
// them, nor does a GETATTR or SETATTR reply replace it. So a copy-up of an object whose birth
// time the kernel holds drops the kernel's attributes and keeps them uncached until a STATX
// has told the new one (attrBirthStale).

var _ fs.NodeStatxer = (*node)(nil)

// Statx answers FUSE_STATX: the attributes GETATTR gives, with the topmost object's birth
// time where its layer records one.
func (n *node) Statx(ctx context.Context, f fs.FileHandle, flags, mask uint32, out *fuse.StatxOut) syscall.Errno {
	var st unix.Stat_t
	var birth whiteout.Birth
	merged, errno := n.statTop(f, &st, &birth)
	if errno != 0 {
		return errno
	}
	var a fuse.Attr
	n.u.fillAttr(&a, &st, n.StableAttr().Ino, merged)
	fillStatx(&out.Statx, &a, birth)
	n.setAttrBits(attrBirthServed, attrBirthStale)
	if n.uncachedAttrs() {
		out.SetTimeout(volatileTimeout)
	}
	return 0
}

// fillStatx puts attributes a and birth time b into a FUSE statx reply. Every basic field is
// given: the kernel caches the reply as a GETATTR's only then (fuse_do_statx).
func fillStatx(out *fuse.Statx, a *fuse.Attr, b whiteout.Birth) {
	out.Mask = unix.STATX_BASIC_STATS
	out.Blksize = a.Blksize
	out.Nlink = a.Nlink
	out.Uid, out.Gid = a.Uid, a.Gid
	out.Mode = uint16(a.Mode)
	out.Ino = a.Ino
	out.Size = a.Size
	out.Blocks = a.Blocks
	out.Atime = fuse.SxTime{Sec: a.Atime, Nsec: a.Atimensec}
	out.Mtime = fuse.SxTime{Sec: a.Mtime, Nsec: a.Mtimensec}
	out.Ctime = fuse.SxTime{Sec: a.Ctime, Nsec: a.Ctimensec}
	out.RdevMajor, out.RdevMinor = unix.Major(uint64(a.Rdev)), unix.Minor(uint64(a.Rdev))
	if b.Known {
		out.Mask |= unix.STATX_BTIME
		out.Btime = fuse.SxTime{Sec: uint64(b.Time.Sec), Nsec: b.Time.Nsec}
	}
}

// birthChanged is called when a copy-up has made a new topmost object for n. Where the
// kernel holds the old one's birth time, its attributes are dropped now (attributes only: no
// lock the operation being served may hold is taken), and replies keep them uncached until a
// STATX tells the new one; a SETATTR's reply would otherwise make the kernel trust its cache.
func (n *node) birthChanged() {
	if n.attrs.Load()&attrBirthServed == 0 {
		return
	}
	n.setAttrBits(attrBirthStale, attrBirthServed)
	n.NotifyContent(-1, 0)
}

// uncachedAttrs reports whether the kernel must not cache the attributes n gives now: they
// change without a request (volatileAttrs), or the birth time it holds is stale.
func (n *node) uncachedAttrs() bool {
	return n.attrs.Load()&attrBirthStale != 0 || n.volatileAttrs()
}

// Statx answers as the node does, with uncached attributes never cached; it is counted in
// the server's load (procs.go), as GETATTR is.
func (h *hookedFS) Statx(cancel <-chan struct{}, in *fuse.StatxIn, out *fuse.StatxOut) fuse.Status {
	h.load.enter()
	defer h.load.leave()
	st := h.RawFileSystem.Statx(cancel, in, out)
	noCache(&out.AttrValid, &out.AttrValidNsec)
	return st
}

// Link answers as the node does, with uncached attributes never cached: linking a lower
// file copies it up.
func (h *hookedFS) Link(cancel <-chan struct{}, in *fuse.LinkIn, name string, out *fuse.EntryOut) fuse.Status {
	st := h.RawFileSystem.Link(cancel, in, name, out)
	noCache(&out.AttrValid, &out.AttrValidNsec)
	return st
}
