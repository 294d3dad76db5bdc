package unionfs

import (
	"context"
	"encoding/binary"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/layerfs/layerfs/whiteout"
	"golang.org/x/sys/unix"
)

// Birth times. The kernel's overlayfs gives statx's birth time of the topmost layer object
// (the copy's, after a copy-up), as it gives the rest of its attributes. FUSE asks for it with
// FUSE_STATX, which the kernel sends only for a statx that asks for the birth time (stat(1),
// not stat(2)) and only while it does not hold one for the inode (fs/fuse/dir.c,
// fuse_update_get_attr): it keeps the answer with the attributes, and neither a notification
// nor a reply with attributes (GETATTR, SETATTR, LOOKUP, READDIRPLUS, LINK) replaces it; only
// attributes that have timed out make it ask again. So a copy-up of an object whose birth
// time the kernel holds drops the kernel's attributes, and every reply carries its attributes
// with a timeout of zero until a STATX has told the new birth time (staleBirths).

var _ fs.NodeStatxer = (*node)(nil)

// Statx answers FUSE_STATX: the attributes GETATTR gives, with the topmost object's birth
// time where its layer records one.
func (n *node) Statx(ctx context.Context, f fs.FileHandle, flags, mask uint32, out *fuse.StatxOut) syscall.Errno {
	// Served before the object is read: a copy-up from here on marks the answer stale.
	n.setAttrBits(attrBirthServed, 0)
	upper := n.topLayer().Upper
	var st unix.Stat_t
	merged, birth, errno := n.statTop(f, &st)
	if errno != 0 {
		return errno
	}
	var a fuse.Attr
	n.u.fillAttr(&a, &st, n.StableAttr().Ino, merged)
	fillStatx(&out.Statx, &a, birth)
	if n.topLayer().Upper == upper {
		n.birthKnown() // no copy-up came between: this birth time is the object's
	}
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
// STATX tells the new one.
func (n *node) birthChanged() {
	if n.attrs.Load()&attrBirthServed == 0 {
		return
	}
	n.setAttrBits(attrBirthStale, attrBirthServed)
	n.u.births.mark(n.StableAttr().Ino)
	n.NotifyContent(-1, 0)
}

// birthKnown ends n's stale mark: a STATX has told the kernel its birth time, or the kernel
// has forgotten the inode.
func (n *node) birthKnown() {
	if n.attrs.Load()&attrBirthStale != 0 {
		n.setAttrBits(0, attrBirthStale)
		n.u.births.clear(n.StableAttr().Ino)
	}
}

// uncachedAttrs reports whether the kernel must not cache the attributes n gives now: they
// change without a request (volatileAttrs), or the birth time it holds is stale.
func (n *node) uncachedAttrs() bool {
	return n.attrs.Load()&attrBirthStale != 0 || n.volatileAttrs()
}

// Statx answers as the node does, with uncached attributes never cached; it is counted in
// the server's load (procs.go), as GETATTR is. With -o nobirthtime it is not served.
func (h *hookedFS) Statx(cancel <-chan struct{}, in *fuse.StatxIn, out *fuse.StatxOut) fuse.Status {
	if h.noStatx {
		return fuse.ENOSYS // -o nobirthtime: the kernel stops asking (fuse_update_get_attr)
	}
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

// staleBirths holds the inode numbers of the objects whose birth time the kernel holds
// stale, for the replies that find an object by name (LOOKUP, READDIRPLUS), where the node
// the kernel knows is not at hand. Empty but for a copy-up after a STATX, so the check costs
// one atomic load.
type staleBirths struct {
	n    atomic.Int32
	mu   sync.Mutex
	inos map[uint64]int
}

// mark adds ino.
func (s *staleBirths) mark(ino uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.inos == nil {
		s.inos = map[uint64]int{}
	}
	s.inos[ino]++
	s.n.Add(1)
}

// clear takes ino out (one mark of it).
func (s *staleBirths) clear(ino uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.inos[ino]; c > 0 {
		if c == 1 {
			delete(s.inos, ino)
		} else {
			s.inos[ino] = c - 1
		}
		s.n.Add(-1)
	}
}

// any reports whether any object is marked.
func (s *staleBirths) any() bool { return s.n.Load() > 0 }

// has reports whether ino is marked.
func (s *staleBirths) has(ino uint64) bool {
	if !s.any() {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.inos[ino] > 0
}

// The layout of a READDIRPLUS reply: per entry, a fuse_entry_out, a fuse_dirent (whose name
// length is at direntNameLen), the name, and padding to 8 bytes (go-fuse's DirEntryList), in
// the host's byte order.
const (
	entryOutSize  = int(unsafe.Sizeof(fuse.EntryOut{}))
	direntSize    = 24
	direntNameLen = 16
	attrValidAt   = int(unsafe.Offsetof(fuse.EntryOut{}.AttrValid))
	attrNsecAt    = int(unsafe.Offsetof(fuse.EntryOut{}.AttrValidNsec))
)

// noCacheEntries applies noCache to every entry of READDIRPLUS reply bytes buf.
func noCacheEntries(buf []byte) {
	for len(buf) >= entryOutSize+direntSize {
		sec := binary.NativeEndian.Uint64(buf[attrValidAt:])
		nsec := binary.NativeEndian.Uint32(buf[attrNsecAt:])
		noCache(&sec, &nsec)
		binary.NativeEndian.PutUint32(buf[attrNsecAt:], nsec)
		name := int(binary.NativeEndian.Uint32(buf[entryOutSize+direntNameLen:]))
		next := entryOutSize + direntSize + name + (8-name&7)&7
		if next > len(buf) {
			return
		}
		buf = buf[next:]
	}
}
