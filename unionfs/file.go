package unionfs

import (
	"context"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// fileOps is what an open file answers. It is spelled out rather than embedding
// *fs.LoopbackFile so that the file does not offer FilePassthroughFder by accident: a
// passthrough backing file is fixed per inode by the kernel, and one registered on a lower file
// would survive a copy-up.
type fileOps interface {
	fs.FileReader
	fs.FileWriter
	fs.FileReleaser
	fs.FileFlusher
	fs.FileFsyncer
	fs.FileLseeker
	fs.FileAllocater
	fs.FileGetlker
	fs.FileSetlker
	fs.FileSetlkwer
}

// file is an open file of the merged view, backed by a descriptor of one layer's object.
type file struct {
	fileOps
	fd int
}

func newFile(fd int) *file {
	return &file{fileOps: fs.NewLoopbackFile(fd).(fileOps), fd: fd}
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
		if errno := n.copyUp(ctx, flags&unix.O_TRUNC == 0); errno != 0 {
			return nil, 0, errno
		}
	}
	top := n.top()
	fd, err := n.u.layers[top.layer].open(top.path, int(flags&^openFlagsMask), 0)
	if err != nil {
		return nil, 0, toErrno(err)
	}
	// The name may have been renamed over since the kernel looked it up: then the file
	// opened is not this node's. ESTALE makes the kernel look the name up again and retry.
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || !n.isSelf(&st) {
		unix.Close(fd)
		return nil, 0, syscall.ESTALE
	}
	// The data changes only through this mount, whose writes go through the kernel's page
	// cache: what it cached stays good across opens.
	return newFile(fd), fuse.FOPEN_KEEP_CACHE, 0
}

// CopyFileRange copies between two open files of the mount in the kernel.
func (n *node) CopyFileRange(ctx context.Context, fhIn fs.FileHandle, offIn uint64, out *fs.Inode, fhOut fs.FileHandle, offOut uint64, length uint64, flags uint64) (uint32, syscall.Errno) {
	in, ok1 := fhIn.(*file)
	o, ok2 := fhOut.(*file)
	if !ok1 || !ok2 {
		return 0, syscall.EBADF
	}
	ri, ro := int64(offIn), int64(offOut)
	c, err := unix.CopyFileRange(in.fd, &ri, o.fd, &ro, int(length), int(flags))
	return uint32(c), toErrno(err)
}
