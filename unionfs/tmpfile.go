package unionfs

import (
	"context"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/layerfs/layerfs/unionfs/xattrs"
	"golang.org/x/sys/unix"
)

var _ fs.NodeTmpfiler = (*node)(nil)

// Tmpfile makes an unnamed file (O_TMPFILE) in the upper part of this directory, as the
// kernel's overlayfs does. The node keeps a descriptor of it until it is linked into place,
// because until then it has no path.
func (n *node) Tmpfile(ctx context.Context, flags uint32, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	if !n.u.hasUpper {
		return nil, nil, 0, syscall.EROFS
	}
	if errno := n.mayAdd(); errno != 0 {
		return nil, nil, 0, errno
	}
	if errno := n.copyUp(ctx, true); errno != 0 {
		return nil, nil, 0, errno
	}
	d, err := n.u.upper().OpenDir(n.path())
	if err != nil {
		return nil, nil, 0, toErrno(err)
	}
	defer d.Release()
	var dirSt unix.Stat_t
	if err := unix.Fstat(d.FD, &dirSt); err != nil {
		return nil, nil, 0, toErrno(err)
	}
	// Made in its directory, the file gets the default ACL from the filesystem; only the
	// umask is ours to apply, where no default ACL replaces it.
	if umask, ok := n.u.extras.umask(ctx); ok {
		if def, err := defaultACL(d.FD); err != nil {
			return nil, nil, 0, toErrno(err)
		} else if def == nil {
			mode &^= umask
		}
	}
	fd, err := unix.Openat(d.FD, ".", int(flags&^openFlagsMask)|unix.O_TMPFILE|unix.O_CLOEXEC, mode)
	if err != nil {
		return nil, nil, 0, toErrno(err)
	}
	uid, gid := n.u.owner(ctx, &dirSt)
	if uid != -1 || gid != -1 {
		if err := unix.Fchown(fd, uid, gid); err != nil {
			unix.Close(fd)
			return nil, nil, 0, toErrno(err)
		}
	}
	var st unix.Stat_t
	keep, err := unix.Dup(fd)
	if err == nil {
		err = unix.Fstat(fd, &st)
	}
	if err != nil {
		unix.Close(fd)
		if keep >= 0 {
			unix.Close(keep)
		}
		return nil, nil, 0, toErrno(err)
	}
	unix.CloseOnExec(keep)
	ino := n.u.InoOf(n.u.upper(), st.Ino)
	child := &node{u: n.u, where: n.u.upper().Alone, dev: st.Dev, ino: st.Ino, open: &nodeOpen{keptFd: keep}}
	ch := n.NewInode(ctx, child, fs.StableAttr{Mode: syscall.S_IFREG, Ino: ino})
	n.u.fillAttr(&out.Attr, &st, ino, 0)
	child.notePrivsNew(st.Mode)
	fh, oflags, errno := child.handle(opened{fd: fd, upper: true}, int(flags&^openFlagsMask), true, flags&unix.O_ACCMODE == unix.O_RDWR)
	return ch, fh, oflags, errno
}

// tmpPath is a path that reaches an unnamed file through its kept descriptor; linkat with
// AT_SYMLINK_FOLLOW on it gives the file a name.
func (n *node) tmpPath() (string, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	fd := n.keptFdLocked()
	if fd < 0 || n.StableAttr().Mode != unix.S_IFREG {
		return "", false
	}
	return xattrs.Path(fd, ""), true
}

// named drops the kept descriptor once the file has a name.
func (n *node) named() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if fd := n.keptFdLocked(); fd >= 0 {
		unix.Close(fd)
		n.open.keptFd = -1
	}
}
