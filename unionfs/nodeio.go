package unionfs

import (
	"context"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/layerfs/layerfs/copyup"
	"golang.org/x/sys/unix"
)

// Reads and writes come with the file handle Open made, or, with -o noopen, with none: Open
// then answers ENOSYS once, and the kernel opens regular files itself without asking (FUSE's
// no-open mode), keeps their pages across opens, and sends reads and writes for the inode. Each such request opens the node's
// topmost object for as long as it takes, so an open file costs no round trip and no
// descriptor, a file opened before a copy-up reads the copy, and a write copies a lower object
// up when it first changes it (as the kernel's overlayfs does at open for write). Files made by
// create or O_TMPFILE keep the handle they come with (file.go). An object whose last name goes
// while the kernel still knows it stays reachable in the work directory (hide.go).

var (
	_ fs.NodeReader    = (*node)(nil)
	_ fs.NodeWriter    = (*node)(nil)
	_ fs.NodeFlusher   = (*node)(nil)
	_ fs.NodeFsyncer   = (*node)(nil)
	_ fs.NodeLseeker   = (*node)(nil)
	_ fs.NodeAllocater = (*node)(nil)
)

// withFd runs op on a descriptor of the node's object: the file's own when there is a handle,
// else one opened for the call.
func (n *node) withFd(fh fs.FileHandle, flags int, op func(fd int) syscall.Errno) syscall.Errno {
	if f, ok := fileOf(fh); ok {
		return op(f.current())
	}
	fd, err := n.openTop(flags | unix.O_CLOEXEC | unix.O_NOFOLLOW)
	if err != nil {
		return toErrno(err)
	}
	defer unix.Close(fd)
	return op(fd)
}

// Read reads from the topmost object.
func (n *node) Read(ctx context.Context, fh fs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if f, ok := fileOf(fh); ok {
		return f.Read(ctx, dest, off)
	}
	var res fuse.ReadResult
	errno := n.withFd(nil, unix.O_RDONLY, func(fd int) syscall.Errno {
		c, err := unix.Pread(fd, dest, off)
		if err != nil {
			return toErrno(err)
		}
		res = fuse.ReadResultData(dest[:c])
		return 0
	})
	return res, errno
}

// Write writes to the object, copied up first.
func (n *node) Write(ctx context.Context, fh fs.FileHandle, data []byte, off int64) (uint32, syscall.Errno) {
	n.noteWritten() // the data is in the page cache too (atime.go)
	if f, ok := fileOf(fh); ok {
		if errno := n.beforeWrite(ctx, fh, n.writerUnprivileged(ctx)); errno != 0 {
			return 0, errno
		}
		return f.Write(ctx, data, off)
	}
	// Opened by the kernel without asking (noopen), so the refusals of open come here: an
	// immutable file takes no write, an append-only one none before its end (the kernel
	// sends an O_APPEND write at the end; the flag itself does not reach us).
	prot := n.protFlags()
	if prot&copyup.FlagImmutable != 0 {
		return 0, syscall.EPERM
	}
	if errno := n.copyUp(ctx, true); errno != 0 {
		return 0, errno
	}
	if errno := n.beforeWrite(ctx, fh, n.writerUnprivileged(ctx)); errno != 0 {
		return 0, errno
	}
	var written int
	wflags := unix.O_WRONLY
	if prot&copyup.FlagAppend != 0 {
		wflags |= unix.O_APPEND // the only way into an object append-only of its own
	}
	errno := n.withFd(nil, wflags, func(fd int) syscall.Errno {
		if prot&copyup.FlagAppend != 0 {
			var st unix.Stat_t
			if err := unix.Fstat(fd, &st); err != nil || off < st.Size {
				return syscall.EPERM
			}
		}
		c, err := unix.Pwrite(fd, data, off)
		written = max(c, 0)
		return toErrno(err)
	})
	return uint32(written), errno
}

// Flush has nothing to do: writes reach the layer as they come, and locks are the kernel's.
// ENOSYS tells the kernel so once, and it stops sending a FLUSH at every close.
func (n *node) Flush(ctx context.Context, fh fs.FileHandle) syscall.Errno { return syscall.ENOSYS }

// Fsync syncs the object; bit 0 of flags asks for the data only.
func (n *node) Fsync(ctx context.Context, fh fs.FileHandle, flags uint32) syscall.Errno {
	return n.withFd(fh, unix.O_RDONLY, func(fd int) syscall.Errno {
		sync := unix.Fsync
		if flags&1 != 0 {
			sync = unix.Fdatasync
		}
		if err := sync(fd); err != nil {
			return n.u.failed("fsync", n.path(), err)
		}
		return 0
	})
}

// Lseek answers SEEK_DATA and SEEK_HOLE from the object.
func (n *node) Lseek(ctx context.Context, fh fs.FileHandle, off uint64, whence uint32) (uint64, syscall.Errno) {
	var pos int64
	errno := n.withFd(fh, unix.O_RDONLY, func(fd int) syscall.Errno {
		var err error
		pos, err = unix.Seek(fd, int64(off), int(whence))
		return toErrno(err)
	})
	return uint64(pos), errno
}

// Allocate is fallocate(2) on the object, copied up first.
func (n *node) Allocate(ctx context.Context, fh fs.FileHandle, off uint64, size uint64, mode uint32) syscall.Errno {
	// vfs_fallocate: nothing on an immutable file, and only space kept past the end of an
	// append-only one.
	if p := n.protFlags(); p&copyup.FlagImmutable != 0 || p&copyup.FlagAppend != 0 && mode&^unix.FALLOC_FL_KEEP_SIZE != 0 {
		return syscall.EPERM
	}
	if _, ok := fileOf(fh); !ok {
		if errno := n.copyUp(ctx, true); errno != 0 {
			return errno
		}
	}
	if errno := n.beforeWrite(ctx, fh, callerNotRoot(ctx)); errno != 0 {
		return errno
	}
	return n.withFd(fh, unix.O_WRONLY, func(fd int) syscall.Errno {
		return toErrno(unix.Fallocate(fd, mode, int64(off), int64(size)))
	})
}
