package unionfs

import (
	"context"
	"encoding/binary"
	"errors"
	"syscall"
	"unsafe"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/layerfs/layerfs/copyup"
	"github.com/layerfs/layerfs/whiteout"
	"golang.org/x/sys/unix"
)

// Inode flags (lsattr, chattr): the kernel asks for them and changes them with FUSE_IOCTL,
// FS_IOC_GETFLAGS and FS_IOC_SETFLAGS or FS_IOC_FSGETXATTR and FS_IOC_FSSETXATTR, on regular
// files and directories it opens for the purpose (fs/fuse/ioctl.c, fuse_fileattr_get/set),
// after checking that the caller owns the object and may change the immutable and
// append-only flags. layerfs answers as the kernel's overlayfs (ovl_fileattr_get/set):
//   - the flags are the topmost object's, with the immutable and append-only flags that
//     overlay.protattr records on an upper object;
//   - a change copies the object up, records those two flags in overlay.protattr rather than
//     on the upper object (where they would keep copy-ups beneath a directory, and the
//     overlay's own markers, from being written), and sets the others on the upper object.
//
// What the immutable and append-only flags forbid, layerfs refuses as the kernel's VFS
// refuses it on an overlayfs inode (protect.go).

const (
	// fsIocFsGetXattr and fsIocFsSetXattr are FS_IOC_FSGETXATTR, _IOR('X', 31, struct
	// fsxattr), and FS_IOC_FSSETXATTR, _IOW('X', 32, struct fsxattr), built as this
	// architecture builds FS_IOC_GETFLAGS and FS_IOC_SETFLAGS.
	fsIocFsGetXattr = unix.FS_IOC_GETFLAGS&^0x1fffffff | fsxattrSize<<16 | 'X'<<8 | 31
	fsIocFsSetXattr = unix.FS_IOC_SETFLAGS&^0x1fffffff | fsxattrSize<<16 | 'X'<<8 | 32
	// fsxattrSize is the size of struct fsxattr: fsx_xflags, then four more 32-bit fields
	// and 8 bytes of padding.
	fsxattrSize = 28

	// protMask is the immutable and append-only flags.
	protMask = copyup.FlagImmutable | copyup.FlagAppend
)

var _ fs.NodeIoctler = (*node)(nil)

// protAttr is the full name of the attribute that records protected flags on the upper.
func (u *unionFS) protAttr() string { return u.xattrPrefix() + whiteout.ProtAttr }

// Ioctl serves the inode flag requests; every other command is ENOTTY, as for a file system
// without it.
func (n *node) Ioctl(ctx context.Context, fh fs.FileHandle, cmd uint32, arg uint64, input []byte, output []byte) (int32, syscall.Errno) {
	switch uint64(cmd) {
	case unix.FS_IOC_GETFLAGS:
		if len(output) < 4 {
			return 0, syscall.EINVAL
		}
		return 0, n.getFlags(fh, output[:4], false)
	case fsIocFsGetXattr:
		if len(output) < fsxattrSize {
			return 0, syscall.EINVAL
		}
		return 0, n.getFlags(fh, output[:fsxattrSize], true)
	case unix.FS_IOC_SETFLAGS:
		if len(input) < 4 {
			return 0, syscall.EINVAL
		}
		return 0, n.setFlags(ctx, input[:4], false)
	case fsIocFsSetXattr:
		if len(input) < fsxattrSize {
			return 0, syscall.EINVAL
		}
		return 0, n.setFlags(ctx, input[:fsxattrSize], true)
	}
	return 0, syscall.ENOTTY
}

// getFlags fills buf, 4 bytes of flags or a struct fsxattr (xattr), with the topmost object's
// answer and the protected flags the upper records.
func (n *node) getFlags(fh fs.FileHandle, buf []byte, xattr bool) syscall.Errno {
	return n.withFd(fh, unix.O_RDONLY|unix.O_NONBLOCK, func(fd int) syscall.Errno {
		cmd := uint(unix.FS_IOC_GETFLAGS)
		if xattr {
			cmd = fsIocFsGetXattr
		}
		if errno := ioctlBuf(fd, cmd, buf); errno != 0 {
			return errno
		}
		// The object's own, or those overlay.protattr records on the upper (protect.go).
		putProtFlags(buf, xattr, n.protFlags())
		return 0
	})
}

// setFlags copies the object up and sets the flags in buf (as for getFlags) on it, the
// protected ones in overlay.protattr.
func (n *node) setFlags(ctx context.Context, buf []byte, xattr bool) syscall.Errno {
	want := protFlagsIn(buf, xattr)
	if errno := n.copyUp(ctx, true); errno != 0 {
		return errno
	}
	errno := n.withFd(nil, unix.O_RDONLY|unix.O_NONBLOCK, func(fd int) syscall.Errno {
		name := n.u.protAttr()
		var err error
		if v := copyup.ProtAttrValue(want); v != "" {
			err = unix.Fsetxattr(fd, name, []byte(v), 0)
			if errors.Is(err, unix.EOPNOTSUPP) {
				// An upper without extended attributes cannot keep them: the kernel
				// refuses too (ovl_set_protattr).
				err = unix.EPERM
			}
		} else if err = unix.Fremovexattr(fd, name); errors.Is(err, unix.ENODATA) || errors.Is(err, unix.EOPNOTSUPP) {
			err = nil
		}
		if err != nil {
			return toErrno(err)
		}
		upper := append([]byte(nil), buf...)
		putProtFlags(upper, xattr, 0)
		cmd := uint(unix.FS_IOC_SETFLAGS)
		if xattr {
			cmd = fsIocFsSetXattr
		}
		return ioctlBuf(fd, cmd, upper)
	})
	// What the merged object now has, whatever the upper object's own flags were; read
	// again where the change failed half-way.
	if errno == 0 {
		n.setProtFlags(want)
	} else {
		n.setAttrBits(0, attrProtKnown)
	}
	// The ctime moved; the kernel's cached attributes say otherwise. Attributes only: that
	// takes no lock the kernel holds while it waits for this answer.
	n.NotifyContent(-1, 0)
	return errno
}

// protFlagsIn returns the protected flags set in buf (flags, or a struct fsxattr's xflags).
func protFlagsIn(buf []byte, xattr bool) uint32 {
	v := binary.NativeEndian.Uint32(buf)
	if xattr {
		return xflagBits.flags(uint64(v))
	}
	return v & protMask
}

// putProtFlags makes the protected flags in buf exactly prot.
func putProtFlags(buf []byte, xattr bool, prot uint32) {
	v := binary.NativeEndian.Uint32(buf)
	if xattr {
		v = v&^xflagBits.all() | xflagBits.to(prot)
	} else {
		v = v&^protMask | prot
	}
	binary.NativeEndian.PutUint32(buf, v)
}

// ioctlBuf runs an ioctl whose argument is buf.
func ioctlBuf(fd int, cmd uint, buf []byte) syscall.Errno {
	_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), uintptr(cmd), uintptr(unsafe.Pointer(&buf[0])))
	return e
}
