package whiteout

import (
	"errors"
	"strings"

	"github.com/layerfs/layerfs/unionfs/xattrs"
	"golang.org/x/sys/unix"
)

// overlayAttrs reads the overlay attributes of entry name of directory dirfd (an empty name
// means dirfd itself) as short name -> value, the trusted.overlay.* value before the
// user.overlay.* one. It costs one listxattr for an object without overlay attributes, the
// common case, and one getxattr more for each it has.
func overlayAttrs(dirfd int, name string) (map[string]string, error) {
	p, follow := xattrs.Path(dirfd, name), xattrs.Follows(name)
	names, err := xattrs.List(p, follow)
	switch {
	case errors.Is(err, unix.ENOTSUP):
		return nil, nil
	case err != nil:
		return nil, err
	}
	var attrs map[string]string
	for _, prefix := range [...]string{UserPrefix, TrustedPrefix} { // trusted last: it wins
		for _, n := range names {
			if !strings.HasPrefix(n, prefix) {
				continue
			}
			val, err := xattrs.Get(p, n, follow)
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
			attrs[n[len(prefix):]] = string(val)
		}
	}
	return attrs, nil
}
