package whiteout

import (
	"errors"
	"strconv"
	"strings"

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

// overlayAttrs reads the overlay attributes of entry name of directory dirfd (an empty name
// means dirfd itself) as short name -> value, the trusted.overlay.* value before the
// user.overlay.* one. It costs one listxattr for an object without overlay attributes, the
// common case, and one getxattr more for each it has.
func overlayAttrs(dirfd int, name string) (map[string]string, error) {
	p := entryPath(dirfd, name)
	list, get := unix.Llistxattr, unix.Lgetxattr
	if name == "" || name == "." {
		// The path is the descriptor's magic link itself: follow it to the directory.
		list, get = unix.Listxattr, unix.Getxattr
	}
	var buf [1024]byte
	names := buf[:]
	sz, err := list(p, names)
	if errors.Is(err, unix.ERANGE) {
		if sz, err = list(p, nil); err == nil {
			names = make([]byte, sz)
			sz, err = list(p, names)
		}
	}
	switch {
	case errors.Is(err, unix.ENOTSUP):
		return nil, nil
	case err != nil:
		return nil, err
	}
	var attrs map[string]string
	for _, prefix := range [...]string{UserPrefix, TrustedPrefix} { // trusted last: it wins
		for _, n := range strings.Split(string(names[:sz]), "\x00") {
			if !strings.HasPrefix(n, prefix) {
				continue
			}
			val := make([]byte, 256)
			vsz, err := get(p, n, val)
			if errors.Is(err, unix.ERANGE) {
				val = make([]byte, unix.PathMax)
				vsz, err = get(p, n, val)
			}
			switch {
			case err == nil:
			case errors.Is(err, unix.ENODATA), errors.Is(err, unix.EPERM):
				continue // gone in between, or trusted.* that we may not read
			default:
				return nil, err
			}
			if attrs == nil {
				attrs = map[string]string{}
			}
			attrs[n[len(prefix):]] = string(val[:vsz])
		}
	}
	return attrs, nil
}
