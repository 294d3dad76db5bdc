package whiteout

import (
	"errors"
	"strconv"

	"golang.org/x/sys/unix"
)

// entryPath names the entry name of the directory open as dirfd, for the path-based xattr calls:
// Linux has no getxattrat, and an O_PATH descriptor does not take fgetxattr. The magic link
// resolves to the directory itself, so the walk stays where dirfd is.
func entryPath(dirfd int, name string) string {
	p := "/proc/self/fd/" + strconv.Itoa(dirfd)
	if name == "" || name == "." {
		return p
	}
	return p + "/" + name
}

// GetXattr reads attribute attr of entry name in directory dirfd without following a final
// symlink. An empty name means the directory itself. A missing attribute gives ENODATA.
func GetXattr(dirfd int, name, attr string) ([]byte, error) {
	p := entryPath(dirfd, name)
	get := unix.Lgetxattr
	if name == "" || name == "." {
		// The path is the descriptor's magic link itself: follow it to the directory.
		get = unix.Getxattr
	}
	buf := make([]byte, 256)
	for {
		n, err := get(p, attr, buf)
		if err == unix.ERANGE {
			sz, err2 := get(p, attr, nil)
			if err2 != nil {
				return nil, err2
			}
			buf = make([]byte, sz+1)
			continue
		}
		if err != nil {
			return nil, err
		}
		return buf[:n], nil
	}
}

// hasAttr reports whether entry name carries trusted.overlay.<attr> or user.overlay.<attr>, and
// the first value found. Errors other than "no such attribute" or "not supported" are returned.
func hasAttr(dirfd int, name, attr string) (string, bool, error) {
	for _, prefix := range [...]string{TrustedPrefix, UserPrefix} {
		v, err := GetXattr(dirfd, name, prefix+attr)
		switch {
		case err == nil:
			return string(v), true, nil
		case errors.Is(err, unix.ENODATA), errors.Is(err, unix.ENOTSUP), errors.Is(err, unix.EPERM):
			// EPERM: trusted.* cannot be read without CAP_SYS_ADMIN; rootless reads user.*.
			continue
		default:
			return "", false, err
		}
	}
	return "", false, nil
}
