package unionfs

import (
	"github.com/layerfs/layerfs/unionfs/xattrs"
	"github.com/layerfs/layerfs/whiteout"
	"golang.org/x/sys/unix"
)

// setRedirect records on the upper directory entry name of dirfd that its lower parts are at
// lowerPath (relative to the layer roots).
func (u *unionFS) setRedirect(dirfd int, name, lowerPath string) error {
	return unix.Lsetxattr(xattrs.Path(dirfd, name), u.xattrPrefix()+whiteout.RedirectAttr, []byte("/"+lowerPath), 0)
}
