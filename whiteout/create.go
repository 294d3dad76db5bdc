package whiteout

import (
	"errors"

	"github.com/layerfs/layerfs/unionfs/xattrs"
	"golang.org/x/sys/unix"
)

// Create makes a whiteout for name in directory dirfd: the kernel's character device 0/0, or,
// where mknod is not allowed, an AUFS ".wh.<name>" file. It reports which one it made.
func Create(dirfd int, name string) (aufs bool, err error) {
	err = unix.Mknodat(dirfd, name, unix.S_IFCHR|0o000, 0)
	if err == nil {
		return false, nil
	}
	if !errors.Is(err, unix.EPERM) {
		return false, err
	}
	fd, err := unix.Openat(dirfd, Prefix+name, unix.O_WRONLY|unix.O_CREAT|unix.O_CLOEXEC, 0o000)
	if err != nil {
		return true, err
	}
	return true, unix.Close(fd)
}

// MakeWhiteoutAt creates the kernel whiteout (char 0/0) as entry name of dirfd, and nothing
// else; callers that build objects in the work directory use it and rename the result.
func MakeWhiteoutAt(dirfd int, name string) error {
	return unix.Mknodat(dirfd, name, unix.S_IFCHR|0o000, 0)
}

// SetOpaque marks entry name of directory dirfd (a directory; "" for dirfd itself) opaque with
// the attribute of the given prefix (TrustedPrefix or UserPrefix).
func SetOpaque(dirfd int, name, prefix string) error {
	return xattrs.For(name).Set(xattrs.Path(dirfd, name), prefix+OpaqueAttr, []byte("y"), 0)
}
