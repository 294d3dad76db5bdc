package whiteout

import (
	"errors"

	"golang.org/x/sys/unix"
)

// DirInfo says how a directory of one layer takes part in a merge.
type DirInfo struct {
	// Opaque directories hide every directory of the same name below them.
	Opaque bool
	// XWhiteouts is set by opaque=x: empty regular files carrying the whiteout attribute in this
	// directory are whiteouts.
	XWhiteouts bool
	// Redirect is the overlay.redirect attribute, when HasRedirect: where the directory's
	// lower parts are (the caller judges it; an empty value is malformed, not absent).
	Redirect    string
	HasRedirect bool
}

// RedirectAttr names the attribute (below TrustedPrefix or UserPrefix) that records where a
// moved directory's lower parts are.
const RedirectAttr = "redirect"

// ReadDirInfo classifies entry name (a directory) of the directory open as dirfd. An empty name
// means dirfd itself. The opaque attribute is read as the kernel reads it: "y" is opaque, "x"
// marks xattr whiteouts, any other value is neither. An ".wh..wh..opq" file inside also makes
// the directory opaque (AUFS/OCI format).
func ReadDirInfo(dirfd int, name string) (DirInfo, error) {
	var info DirInfo
	attrs, err := overlayAttrs(dirfd, name)
	if err != nil {
		return info, err
	}
	switch attrs[OpaqueAttr] {
	case "y":
		info.Opaque = true
	case "x":
		info.XWhiteouts = true
	}
	info.Redirect, info.HasRedirect = attrs[RedirectAttr]
	if !info.Opaque {
		rel := OpaqueFile
		if name != "" && name != "." {
			rel = name + "/" + OpaqueFile
		}
		var st unix.Stat_t
		err := unix.Fstatat(dirfd, rel, &st, unix.AT_SYMLINK_NOFOLLOW)
		switch {
		case err == nil:
			info.Opaque = true
		case errors.Is(err, unix.ENOENT), errors.Is(err, unix.ENOTDIR):
		default:
			return info, err
		}
	}
	return info, nil
}

// IsXWhiteout reports whether entry name of directory dirfd, whose stat is st, is a whiteout in
// the xattr format: an empty regular file that carries the overlay whiteout attribute. The kernel
// honours it only in lower layers (Classify applies the rules).
func IsXWhiteout(dirfd int, name string, st *unix.Stat_t) (bool, error) {
	if st.Mode&unix.S_IFMT != unix.S_IFREG || st.Size != 0 {
		return false, nil
	}
	attrs, err := overlayAttrs(dirfd, name)
	_, ok := attrs[WhiteoutAttr]
	return ok, err
}

// HasAufsWhiteout reports whether directory dirfd holds ".wh.<name>", hiding name below.
func HasAufsWhiteout(dirfd int, name string) (bool, error) {
	var st unix.Stat_t
	err := unix.Fstatat(dirfd, Prefix+name, &st, unix.AT_SYMLINK_NOFOLLOW)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, unix.ENOENT), errors.Is(err, unix.ENAMETOOLONG):
		return false, nil
	default:
		return false, err
	}
}
