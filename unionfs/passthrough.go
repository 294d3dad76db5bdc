package unionfs

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// Passthrough: when the kernel grants it (root in the initial user namespace, Linux 6.9 or
// later, layers on a filesystem that is not itself stacked), an open regular file is backed
// by the layer's own file, and the kernel reads, writes and maps it without asking us. It is
// used for files opened for writing and for files of passthroughMin or more opened for
// reading; smaller files are read through the page cache as without passthrough.
//
// The kernel keeps one backing file per inode while any passthrough file of it is open, and
// then refuses any open of the inode that is not passthrough too (and the other way round);
// go-fuse registers one per node and reuses it for every later open until the last closes.
// Files opened for reading may share any backing file of their node: the lower object's
// (opened read-only) or the upper copy's (opened for reading and writing, PassthroughFd). A
// file opened for writing needs the upper copy's, so while passthrough files of the lower
// object are open (the node was copied up under them), opening it for writing fails with
// ETXTBSY (after waiting a little: the kernel sends a RELEASE after close(2) returns, so the
// files may be closed already), and files opened for reading go on reading the lower object
// until they all close,
// as overlayfs did before Linux 4.19. With -o nopassthrough every read goes through us and
// such a file reads the copy (file.go).
//
// To know which object go-fuse's registration is on, and when it ends, the bridge is handed
// our backingHooks instead of the server: every registration and unregistration passes
// through them.

// ptState is a node's passthrough bookkeeping, guarded by node.mu; it is part of the node's
// open state (nodeOpen), made at its first open.
type ptState struct {
	// lower and upper count the passthrough handles on each object given out and not yet
	// released; cached counts the handles served through us while passthrough is on;
	// mappers counts the passthrough handles open for reading and writing, which may map
	// the file shared and writable (volatileAttrs).
	lower, upper, cached, mappers int
	// live is set while go-fuse holds a backing registration for the node, from the first
	// registration until its unregistration, which follows the last release; liveUpper
	// says it is on the upper copy.
	live      bool
	liveUpper bool
	// cond, made on first need, wakes opens waiting for releases (waitPassthroughLocked).
	cond *sync.Cond
}

// ptFile is a file the kernel may serve by passthrough.
type ptFile struct {
	*file
	// upper is the side of the object fd was opened on.
	upper bool
	// mapper says the file was opened for reading and writing: it counts in ptState.mappers.
	mapper bool
	// backing is a descriptor opened for the registration only (PassthroughFd), closed once
	// the kernel holds the file; -1 otherwise.
	backing int
}

var _ fs.FilePassthroughFder = (*ptFile)(nil)

// PassthroughFd offers a descriptor of the file's object as the node's backing file. go-fuse
// calls it only when the node has no registration yet, just before registering it
// (backingHooks). Every later passthrough open of the node shares that backing file, whatever
// its own access mode, and the kernel checks the backing file's mode on each read and write:
// an upper object is offered open for reading and writing (upperBacking). Lower objects are
// only ever opened for reading.
func (f *ptFile) PassthroughFd() (int, bool) {
	fd := f.fd
	if f.upper {
		b, err := f.n.u.upperBacking(f.fd, f.flags)
		if err != nil {
			return -1, false
		}
		if b >= 0 {
			f.backing, fd = b, b
		}
	}
	f.n.u.pt.registering.Store(int32(fd), f)
	return fd, true
}

// upperBacking returns a descriptor of the upper object open as fd for the kernel's backing
// file, or -1 where fd itself serves: open for reading and writing (reopened through /proc
// when fd is not), and under -o noatime on the upper layer's noatime clone (atime.go).
func (u *unionFS) upperBacking(fd, flags int) (int, error) {
	if u.upperNoatimeFd >= 0 {
		h, _, err := unix.NameToHandleAt(fd, "", unix.AT_EMPTY_PATH)
		if err != nil {
			return -1, err
		}
		return unix.OpenByHandleAt(u.upperNoatimeFd, h, unix.O_RDWR|unix.O_CLOEXEC)
	}
	if flags&unix.O_ACCMODE == unix.O_RDWR {
		return -1, nil
	}
	return unix.Open("/proc/self/fd/"+strconv.Itoa(fd), unix.O_RDWR|unix.O_CLOEXEC, 0)
}

// fileOf returns the file of a handle, passthrough or not.
func fileOf(fh fs.FileHandle) (*file, bool) {
	switch f := fh.(type) {
	case *file:
		return f, true
	case *ptFile:
		return f.file, true
	}
	return nil, false
}

// passthroughMin is the size from which a file opened for reading only is served by
// passthrough. Below it the page cache serves it as well (a cached file is read again without
// a round trip), and a passthrough read would cost one: the kernel marks the inode's access
// time stale after each, so the next stat asks the daemon.
const passthroughMin = 1 << 20

// handle wraps a descriptor opened on the node's object for the kernel: a passthrough file
// where the kernel can have one, else a file served through us; with the open flags to reply
// with. write says the file is open for writing: writes by passthrough save a round trip each;
// mapper that the caller opened it for reading and writing, so may map it shared and writable.
func (n *node) handle(o opened, flags int, write, mapper bool) (fs.FileHandle, uint32, syscall.Errno) {
	if !n.u.pt.enabled() {
		// The data changes only through this mount, whose writes go through the kernel's
		// page cache: what it cached stays good across opens.
		n.dropWrittenPages(o.fd, write)
		return newFile(n, o.fd, flags, o.upper), fuse.FOPEN_KEEP_CACHE, 0
	}
	n.mu.Lock()
	if !o.upper && n.u.Layers[n.where[0].Layer].Upper {
		// Copied up since fd was opened: a lower backing file registered now would be
		// handed to the writer that copied it up. Open the copy instead.
		n.mu.Unlock()
		unix.Close(o.fd)
		var err error
		if o, err = n.openTopSide(flags); err != nil {
			return nil, 0, toErrno(err)
		}
		n.mu.Lock()
	}
	fd, upper := o.fd, o.upper
	big := write || o.size >= passthroughMin
	// A write we do not see cannot drop a set-id bit or a capability (killpriv.go).
	served := write && n.privs.Load() == privsSome
	p := n.ptLocked()
	var deadline time.Time
	for {
		// The kernel allows passthrough opens of an inode only beside passthrough opens,
		// and cached ones only beside cached ones: follow the files open, else the size.
		usePT := p.lower > 0 || p.upper > 0 || p.live || (p.cached == 0 && big && !served)
		if !usePT {
			p.cached++
			n.mu.Unlock()
			n.dropWrittenPages(fd, write)
			f := newFile(n, fd, flags, upper)
			f.cachedPT = true
			return f, fuse.FOPEN_KEEP_CACHE, 0
		}
		if !served && (!write || (p.lower == 0 && (!p.live || p.liveUpper))) {
			break
		}
		// A served file cannot open beside passthrough files; and go-fuse would hand a
		// writer the lower object's read-only backing file, beside which the kernel allows
		// no other kind of open. The files in the way may be closed already: the kernel
		// sends their RELEASE after close(2) has returned.
		if deadline.IsZero() {
			deadline = time.Now().Add(releaseWait)
		}
		if !n.waitPassthroughLocked(deadline) {
			n.mu.Unlock()
			unix.Close(fd)
			return nil, 0, syscall.ETXTBSY
		}
	}
	if upper {
		p.upper++
	} else {
		p.lower++
	}
	if mapper {
		p.mappers++
	}
	n.mu.Unlock()
	return &ptFile{file: newFile(n, fd, flags, upper), upper: upper, mapper: mapper, backing: -1}, 0, 0
}

// volatileAttrs reports whether the node's attributes may change without our knowing: a
// passthrough file of it is open for reading and writing, and stores through a shared
// mapping of it change its times in the layer without a request (a write(2) makes the kernel
// drop what it cached by itself; a file open for writing only cannot be mapped writable). Its attributes are then given a
// timeout of a nanosecond, so that every stat asks (as the kernel's overlayfs asks the
// layer's inode), and an open for writing tells the kernel to drop what it had cached
// (notifyWriter).
func (n *node) volatileAttrs() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.open != nil && n.open.pt.mappers > 0
}

// volatileTimeout marks the attributes of a node with volatileAttrs. go-fuse replaces a zero
// timeout with the mount's, and the kernel rounds a nanosecond up to a jiffy, within which a
// stat would still answer from its cache: the raw-level hooks turn this mark into a zero
// timeout on the way out (noCache).
const volatileTimeout = time.Nanosecond

// noCache turns the volatileTimeout mark into a timeout of zero: the kernel then asks for the
// attributes at every stat.
func noCache(sec *uint64, nsec *uint32) {
	if *sec == 0 && *nsec == uint32(volatileTimeout) {
		*nsec = 0
	}
}

// GetAttr answers as the node does, with volatile attributes never cached; it is counted in
// the server's load (procs.go).
func (h *hookedFS) GetAttr(cancel <-chan struct{}, in *fuse.GetAttrIn, out *fuse.AttrOut) fuse.Status {
	h.load.enter()
	defer h.load.leave()
	st := h.RawFileSystem.GetAttr(cancel, in, out)
	noCache(&out.AttrValid, &out.AttrValidNsec)
	return st
}

// SetAttr answers as the node does, with volatile attributes never cached and the others
// for as long as GETATTR's: go-fuse leaves the timeout of a SETATTR's reply at zero, which
// made the next stat after a chmod, chown, truncate or utimensat (tar x sets the times of
// every file) a GETATTR for what the reply had just said.
func (h *hookedFS) SetAttr(cancel <-chan struct{}, in *fuse.SetAttrIn, out *fuse.AttrOut) fuse.Status {
	st := h.RawFileSystem.SetAttr(cancel, in, out)
	if st == fuse.OK && out.AttrValid == 0 && out.AttrValidNsec == 0 {
		out.SetTimeout(cacheTimeout)
	}
	noCache(&out.AttrValid, &out.AttrValidNsec)
	return st
}

// notifyWriter drops the attributes the kernel cached for n before a passthrough file was
// opened for reading and writing (volatileAttrs). An offset of -1 invalidates attributes only, which
// takes no lock the OPEN being answered holds.
func (n *node) notifyWriter(fh fs.FileHandle) {
	if f, ok := fh.(*ptFile); ok && f.mapper {
		n.NotifyContent(-1, 0)
	}
}

// releasePassthrough ends a passthrough handle's count (ptFile.Release). go-fuse drops its
// registration after this, which backingHooks reports.
func (n *node) releasePassthrough(upper, mapper bool) {
	n.mu.Lock()
	p := n.ptLocked()
	if upper {
		p.upper--
	} else {
		p.lower--
	}
	if mapper {
		p.mappers--
	}
	p.changedLocked()
	n.mu.Unlock()
}

// releaseWait is how long an open for writing waits for the release of passthrough files
// of the lower object before it fails with ETXTBSY.
const releaseWait = time.Second

// waitPassthroughLocked waits, with n.mu held, until the node's passthrough state changes or the
// deadline passes; it reports whether the deadline was still ahead.
func (n *node) waitPassthroughLocked(deadline time.Time) bool {
	d := time.Until(deadline)
	if d <= 0 {
		return false
	}
	p := n.ptLocked()
	if p.cond == nil {
		p.cond = sync.NewCond(&n.mu)
	}
	cond := p.cond
	t := time.AfterFunc(d, func() {
		n.mu.Lock()
		cond.Broadcast()
		n.mu.Unlock()
	})
	cond.Wait()
	t.Stop()
	return true
}

// changedLocked wakes opens waiting in waitPassthroughLocked; node.mu is held.
func (p *ptState) changedLocked() {
	if p.cond != nil {
		p.cond.Broadcast()
	}
}

// passthrough is the mount's passthrough switch and the registrations in flight.
type passthrough struct {
	// off is set by -o nopassthrough or -o noopen, when the server is not root of the
	// initial user namespace, or once the kernel refused a registration (go-fuse then stops
	// trying).
	off atomic.Bool
	// registering maps a descriptor offered by PassthroughFd to its file until the
	// registration it is offered for returns.
	registering sync.Map // int32 → *ptFile
	// ids maps a live backing id to its node.
	ids sync.Map // int32 → *node
}

// enabled reports whether opens may use passthrough.
func (p *passthrough) enabled() bool { return !p.off.Load() }

// backingHooks stands in for the FUSE server as go-fuse's callbacks: notifications go to the
// server as they are, backing registrations are recorded on their node on the way.
type backingHooks struct {
	srv *fuse.Server
	pt  *passthrough
	// logf, if set, is told when the kernel refuses passthrough.
	logf func(format string, args ...any)
}

var _ fs.ServerCallbacks = (*backingHooks)(nil)

// RegisterBackingFd registers the descriptor with the kernel and records the registration on
// the node whose file offered it.
func (h *backingHooks) RegisterBackingFd(m *fuse.BackingMap) (int32, syscall.Errno) {
	v, _ := h.pt.registering.LoadAndDelete(m.Fd)
	id, errno := h.srv.RegisterBackingFd(m)
	f, _ := v.(*ptFile)
	if f != nil && f.backing >= 0 {
		unix.Close(f.backing)
		f.backing = -1
	}
	if errno != 0 {
		// go-fuse gives up on passthrough for the mount after this; so do we.
		if !h.pt.off.Swap(true) && h.logf != nil {
			h.logf("passthrough: off (the kernel refused a backing file: %v); reads and writes go through the server", errno)
		}
		return id, errno
	}
	if f != nil {
		n := f.n
		n.mu.Lock()
		p := n.ptLocked()
		p.live, p.liveUpper = true, f.upper
		n.mu.Unlock()
		h.pt.ids.Store(id, n)
	}
	return id, 0
}

// UnregisterBackingFd ends a registration; the node may then get one on another object.
func (h *backingHooks) UnregisterBackingFd(id int32) syscall.Errno {
	errno := h.srv.UnregisterBackingFd(id)
	if v, ok := h.pt.ids.LoadAndDelete(id); ok {
		n := v.(*node)
		n.mu.Lock()
		p := n.ptLocked()
		p.live = false
		p.changedLocked()
		n.mu.Unlock()
	}
	return errno
}

// DeleteNotify passes the notification on.
func (h *backingHooks) DeleteNotify(parent, child uint64, name string) fuse.Status {
	return h.srv.DeleteNotify(parent, child, name)
}

// EntryNotify passes the notification on.
func (h *backingHooks) EntryNotify(parent uint64, name string) fuse.Status {
	return h.srv.EntryNotify(parent, name)
}

// InodeNotify passes the notification on.
func (h *backingHooks) InodeNotify(node uint64, off, length int64) fuse.Status {
	return h.srv.InodeNotify(node, off, length)
}

// InodeRetrieveCache passes the request on.
func (h *backingHooks) InodeRetrieveCache(node uint64, offset int64, dest []byte) (int, fuse.Status) {
	return h.srv.InodeRetrieveCache(node, offset, dest)
}

// InodeNotifyStoreCache passes the notification on.
func (h *backingHooks) InodeNotifyStoreCache(node uint64, offset int64, data []byte) fuse.Status {
	return h.srv.InodeNotifyStoreCache(node, offset, data)
}

// Release closes the file and ends its passthrough count.
func (f *ptFile) Release(ctx context.Context) syscall.Errno {
	errno := f.file.Release(ctx)
	f.n.releasePassthrough(f.upper, f.mapper)
	return errno
}

// ptLocked returns the node's passthrough state, made on first need; n.mu is held.
func (n *node) ptLocked() *ptState { return &n.openLocked().pt }
