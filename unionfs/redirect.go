package unionfs

import (
	"strconv"
	"strings"

	"github.com/layerfs/layerfs/whiteout"
	"golang.org/x/sys/unix"
)

// redirectAttr, on an upper directory moved away from where its lower parts are, names where
// they are: "/a/b" from the layer roots, or "b" in the same parent (the kernel's redirect_dir).
const redirectAttr = "redirect"

// readRedirect returns the redirect of entry name (a directory) of dirfd, when redirects are
// followed.
func (u *unionFS) readRedirect(dirfd int, name string) (string, bool) {
	if u.cfg.RedirectDir == RedirectNoFollow {
		return "", false
	}
	p := "/proc/self/fd/" + strconv.Itoa(dirfd)
	if name != "" {
		p += "/" + name
	}
	var buf [unix.PathMax]byte
	for _, prefix := range []string{whiteout.TrustedPrefix, whiteout.UserPrefix} {
		sz, err := unix.Lgetxattr(p, prefix+redirectAttr, buf[:])
		if err != nil || sz == 0 {
			continue
		}
		v := string(buf[:sz])
		if strings.Contains(strings.Trim(v, "/"), "//") || (!strings.HasPrefix(v, "/") && strings.Contains(v, "/")) {
			return "", false // malformed, as the kernel judges it: ignored
		}
		return v, true
	}
	return "", false
}

// setRedirect records on the upper directory entry name of dirfd that its lower parts are at
// lowerPath (relative to the layer roots).
func (u *unionFS) setRedirect(dirfd int, name, lowerPath string) error {
	p := "/proc/self/fd/" + strconv.Itoa(dirfd) + "/" + name
	return unix.Lsetxattr(p, u.xattrPrefix()+redirectAttr, []byte("/"+lowerPath), 0)
}
