package unionfs

import (
	"strings"

	"github.com/layerfs/layerfs/whiteout"
	"golang.org/x/sys/unix"
)

// followRedirect judges the redirect a directory carries (whiteout.DirInfo.Redirect): "/a/b"
// from the layer roots, or "b" in the same parent. It is ignored with redirect_dir=nofollow,
// and when malformed, as the kernel ignores it.
func (u *unionFS) followRedirect(v string) (string, bool) {
	if v == "" || u.cfg.RedirectDir == RedirectNoFollow {
		return "", false
	}
	if strings.Contains(strings.Trim(v, "/"), "//") || (!strings.HasPrefix(v, "/") && strings.Contains(v, "/")) {
		return "", false
	}
	return v, true
}

// setRedirect records on the upper directory entry name of dirfd that its lower parts are at
// lowerPath (relative to the layer roots).
func (u *unionFS) setRedirect(dirfd int, name, lowerPath string) error {
	return unix.Lsetxattr(procPath(dirfd, name), u.xattrPrefix()+whiteout.RedirectAttr, []byte("/"+lowerPath), 0)
}
