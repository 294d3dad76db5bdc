package merge

import (
	"strings"
	"syscall"

	"github.com/layerfs/layerfs/whiteout"
)

// FollowRedirect judges the redirect a directory carries: "/a/b" from the layer roots, or "b"
// in the same parent. It is ignored with redirect_dir=nofollow. A malformed one fails the
// lookup as on the kernel: EINVAL for an empty value, an empty path element or a relative
// value holding "/"; EACCES for "." or ".." as an element (the kernel's lookup_one_len).
func (s *Stack) FollowRedirect(info whiteout.DirInfo) (string, bool, syscall.Errno) {
	if !info.HasRedirect || !s.FollowRedirects {
		return "", false, 0
	}
	v := info.Redirect
	var elems []string
	if strings.HasPrefix(v, "/") {
		elems = strings.Split(v[1:], "/")
	} else if v != "" && !strings.Contains(v, "/") {
		elems = []string{v}
	} else {
		return "", false, syscall.EINVAL
	}
	for _, e := range elems {
		if e == "" {
			return "", false, syscall.EINVAL
		}
	}
	for _, e := range elems {
		if e == "." || e == ".." {
			return "", false, syscall.EACCES
		}
	}
	return v, true, 0
}
