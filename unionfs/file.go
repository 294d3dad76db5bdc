package unionfs

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/layerfs/layerfs/copyup"
	"golang.org/x/sys/unix"
)

// file is an open file of the merged view, backed by a descriptor of one layer's object.
//
// When the kernel serves it by passthrough (ptFile, passthrough.go) only the operations other
// than read, write and mmap reach it. Locks are not served: the kernel keeps POSIX and BSD
// locks on the merged inode itself, as it does for overlayfs, so they hold across a copy-up.
type file struct {
	n     *node
	flags int

	// mu guards fd, upper, old, cachedPT and buffered; node.mu may be taken under it.
	mu sync.Mutex
	fd int
	// upper is set once fd is on the upper layer: a file opened read-only on a lower object
	// switches to the copy when the node is copied up (current).
	upper bool
	// old holds the descriptors replaced by a switch; reads in flight may still use them, so
	// they close with the file.
	old []int
	// cachedPT is set when the file is counted in its node's passthrough state as served
	// through us (passthrough.go).
	cachedPT bool
	// buffered is a descriptor of fd's object without O_DIRECT, for the page cache's
	// write-back through a file opened with it (writeBack); -1 until one is needed.
	buffered int
}

// The node's operations (nodeio.go) take precedence in go-fuse and use the file's descriptor
// through current; a file itself only reads, writes and releases.
var (
	_ fs.FileReader   = (*file)(nil)
	_ fs.FileWriter   = (*file)(nil)
	_ fs.FileReleaser = (*file)(nil)
)

func newFile(n *node, fd, flags int, upper bool) *file {
	n.mu.Lock()
	n.openLocked().openFiles++
	n.mu.Unlock()
	return &file{n: n, fd: fd, flags: flags, upper: upper, buffered: -1}
}

// current returns the descriptor to use. A file opened on a lower object before the node was
// copied up reads the copy from then on, as a file of the kernel's overlayfs does since Linux
// 4.19; without it, a read the page cache cannot answer (after a hole punch, or once the cache
// is dropped) would return the lower layer's old data.
func (f *file) current() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.upper || !f.n.topLayer().Upper {
		return f.fd
	}
	fd, err := f.n.openTop(f.flags)
	if err != nil {
		// Renamed over or removed since: the old object is what this file still names.
		return f.fd
	}
	f.old = append(f.old, f.fd)
	f.fd, f.upper = fd, true
	return fd
}

// Read reads from the layer's file; the reply is spliced from the descriptor.
func (f *file) Read(ctx context.Context, buf []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	return fuse.ReadResultFd(uintptr(f.current()), off, len(buf)), 0
}

// Write writes to the layer's file; only upper files are open for writing.
func (f *file) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	fd := f.current()
	if f.flags&unix.O_DIRECT != 0 {
		if e, _ := f.n.u.extras.of(ctx); e.cached {
			return f.writeBack(fd, data, off)
		}
	}
	n, err := unix.Pwrite(fd, data, off)
	if err != nil {
		return uint32(max(n, 0)), f.n.u.failed("write", f.n.path(), err)
	}
	return uint32(n), 0
}

// writeBack writes pages of the page cache back through a file opened with O_DIRECT. The
// kernel writes a file's dirty pages (a shared mapping's, say: FUSE_WRITE_CACHE) through any
// writable handle of the inode, and the last of them ends where the file ends. O_DIRECT's
// alignment rules are for the caller's own reads and writes: the kernel's overlayfs writes
// such pages through the layer's own page cache, where layerfs's O_DIRECT descriptor made the
// layer's file system refuse them (EINVAL, and msync failed). So they go through a descriptor
// of the same object without O_DIRECT, opened at the first write-back and kept with the file.
func (f *file) writeBack(fd int, data []byte, off int64) (uint32, syscall.Errno) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.buffered < 0 {
		// The open file itself, renamed or removed since as it may be.
		b, err := unix.Open("/proc/self/fd/"+strconv.Itoa(fd), unix.O_WRONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			// Reopening checks access anew, which a server that is not root may fail (a
			// file made read-only since it was opened): turn O_DIRECT off on the handle
			// for the write instead. Another request's direct write through this handle
			// at the same moment is then buffered too, which changes no data.
			return f.writeWithoutDirect(fd, data, off)
		}
		f.buffered = b
	}
	n, err := unix.Pwrite(f.buffered, data, off)
	if err != nil {
		return uint32(max(n, 0)), f.n.u.failed("write", f.n.path(), err)
	}
	return uint32(n), 0
}

// writeWithoutDirect writes through fd with its O_DIRECT flag off for the write.
func (f *file) writeWithoutDirect(fd int, data []byte, off int64) (uint32, syscall.Errno) {
	fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	if err == nil {
		_, err = unix.FcntlInt(uintptr(fd), unix.F_SETFL, fl&^unix.O_DIRECT)
	}
	if err != nil {
		return 0, f.n.u.failed("write", f.n.path(), err)
	}
	n, err := unix.Pwrite(fd, data, off)
	unix.FcntlInt(uintptr(fd), unix.F_SETFL, fl)
	if err != nil {
		return uint32(max(n, 0)), f.n.u.failed("write", f.n.path(), err)
	}
	return uint32(n), 0
}

// Release closes the descriptors.
func (f *file) Release(ctx context.Context) syscall.Errno {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, fd := range f.old {
		unix.Close(fd)
	}
	unix.Close(f.fd)
	if f.buffered >= 0 {
		unix.Close(f.buffered)
	}
	f.fd, f.old, f.buffered = -1, nil, -1
	n := f.n
	n.mu.Lock()
	n.openLocked().openFiles--
	if f.cachedPT {
		n.ptLocked().cached--
	}
	last := n.openFilesLocked() == 0 && !n.u.cfg.NoOpen
	n.mu.Unlock()
	if last {
		n.dropHidden() // a removed file closed for the last time: nothing can reach it now
	}
	return 0
}

// openFlagsMask drops what FUSE hands us but must not reach the layer: the kernel keeps the
// append position itself and sends explicit offsets, and the file exists already.
const openFlagsMask = unix.O_APPEND | unix.O_CREAT | unix.O_EXCL | unix.O_NOCTTY | fuse.FMODE_EXEC

func isWrite(flags uint32) bool {
	return flags&(unix.O_WRONLY|unix.O_RDWR|unix.O_TRUNC) != 0
}

var (
	_ fs.NodeOpener         = (*node)(nil)
	_ fs.NodeCopyFileRanger = (*node)(nil)
)

// Open opens the topmost object. Opening for write first copies a lower object up (without
// its data when O_TRUNC will drop it anyway).
func (n *node) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	if isWrite(flags) {
		if errno := n.mayWrite(flags); errno != 0 {
			return nil, 0, errno
		}
		if errno := n.copyUp(ctx, flags&unix.O_TRUNC == 0); errno != 0 {
			return nil, 0, errno
		}
	}
	if n.u.cfg.NoOpen && n.StableAttr().Mode == syscall.S_IFREG {
		// The kernel may open files itself (nodeio.go): this answer, given once, says so.
		return nil, 0, syscall.ENOSYS
	}
	oflags := int(flags &^ openFlagsMask)
	o := opened{fd: -1}
	if n.u.pt.enabled() && oflags&unix.O_ACCMODE != unix.O_RDWR && n.topLayer().Upper {
		// The file may become the node's passthrough backing file, which every later open
		// shares whatever its access: open an upper object for reading and writing now
		// rather than again (PassthroughFd). Where that is refused (an append-only or busy
		// file), the open asked for is made.
		rw := oflags&^unix.O_ACCMODE | unix.O_RDWR
		if got, err := n.openTopSide(rw); err == nil {
			o, oflags = got, rw
		}
	}
	if o.fd < 0 {
		var err error
		o, err = n.openTopSide(oflags)
		if errors.Is(err, unix.EPERM) && isWrite(flags) && flags&unix.O_APPEND != 0 {
			// An object append-only of its own (flagged outside the mount) opens for writing
			// only with O_APPEND, which the kernel otherwise applies itself.
			o, err = n.openTopSide(oflags | unix.O_APPEND)
		}
		if err != nil {
			return nil, 0, toErrno(err)
		}
	}
	if isWrite(flags) {
		// What a write must drop, it drops through us (killpriv.go). An O_TRUNC reaches us
		// as a SETATTR of the size (no atomic_o_trunc), which drops it there.
		n.notePrivs(o.fd, o.mode)
	}
	fh, fflags, errno := n.handle(o, oflags&^unix.O_TRUNC, isWrite(flags), flags&unix.O_ACCMODE == unix.O_RDWR)
	if errno == 0 {
		n.notifyWriter(fh)
	}
	return fh, fflags, errno
}

// opened is a descriptor of a node's object, as openTopSide made it.
type opened struct {
	fd    int
	upper bool   // the object is the upper layer's
	size  int64  // its size when opened
	mode  uint32 // its mode when opened
}

// openTop opens the node's topmost object. The name may have been renamed over since the
// kernel looked it up: then the object opened is not this node's, and ESTALE makes the kernel
// look the name up again and retry.
func (n *node) openTop(flags int) (int, error) {
	o, err := n.openTopSide(flags)
	return o.fd, err
}

// openTopSide is openTop, also saying which object it opened.
func (n *node) openTopSide(flags int) (opened, error) {
	var fd int
	var err error
	upper := true
	if h := n.hiddenName(); h != "" {
		fd, err = unix.Openat(n.u.work.FD, h, flags|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	} else {
		top := n.top()
		upper = n.u.Layers[top.Layer].Upper
		fd, err = n.u.Layers[top.Layer].OpenNoatime(top.Path, flags, 0)
	}
	if err != nil {
		return opened{fd: -1}, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || !n.isSelf(&st) {
		unix.Close(fd)
		return opened{fd: -1}, syscall.ESTALE
	}
	return opened{fd: fd, upper: upper, size: st.Size, mode: st.Mode}, nil
}

// CopyFileRange copies between two open files of the mount in the kernel.
func (n *node) CopyFileRange(ctx context.Context, fhIn fs.FileHandle, offIn uint64, out *fs.Inode, fhOut fs.FileHandle, offOut uint64, length uint64, flags uint64) (uint32, syscall.Errno) {
	dst, ok := out.Operations().(*node)
	if !ok {
		return 0, syscall.EXDEV
	}
	if dst.protFlags()&copyup.FlagImmutable != 0 {
		// generic_copy_file_checks: not into an immutable file, even through a descriptor
		// opened before it became one (protect.go).
		return 0, syscall.EPERM
	}
	if _, ok := fileOf(fhOut); !ok {
		if errno := dst.copyUp(ctx, true); errno != 0 {
			return 0, errno
		}
	}
	if errno := dst.beforeWrite(ctx, fhOut, callerNotRoot(ctx)); errno != 0 {
		return 0, errno
	}
	var c int
	errno := n.withFd(fhIn, unix.O_RDONLY, func(in int) syscall.Errno {
		return dst.withFd(fhOut, unix.O_WRONLY, func(o int) syscall.Errno {
			ri, ro := int64(offIn), int64(offOut)
			var err error
			c, err = unix.CopyFileRange(in, &ri, o, &ro, int(length), int(flags))
			return toErrno(err)
		})
	})
	return uint32(max(c, 0)), errno
}
