package copyup

import (
	"errors"
	"fmt"
	"strings"

	"github.com/layerfs/layerfs/unionfs/xattrs"
	"golang.org/x/sys/unix"
)

// copyXattrs copies src's extended attributes to tmp in w, less the skipped ones, then adds
// opt.ExtraXattrs. The error policy is the kernel's (ovl_copy_xattr): an attribute the
// destination does not support (EOPNOTSUPP) is left out, unless it is one a copy must keep
// (MustCopyXattr); any other failure fails the copy-up, so that no copy silently loses a
// capability or an ACL.
func copyXattrs(src Source, w int, tmp string, opt Options) error {
	from, follow := xattrs.Path(src.DirFd, src.Name), xattrs.Follows(src.Name)
	to := xattrs.Path(w, tmp)
	names, err := xattrs.List(from, follow)
	if errors.Is(err, unix.ENOTSUP) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, name := range names {
		if opt.SkipXattr != nil && opt.SkipXattr(name) {
			continue
		}
		val, err := xattrs.Get(from, name, follow)
		if errors.Is(err, unix.ENODATA) {
			continue // removed in between
		}
		if err != nil {
			return err
		}
		if err := unix.Lsetxattr(to, name, val, 0); err != nil {
			if errors.Is(err, unix.EOPNOTSUPP) && !MustCopyXattr(name) {
				continue
			}
			return fmt.Errorf("copying attribute %s: %w", name, err)
		}
	}
	for name, val := range opt.ExtraXattrs {
		if err := unix.Lsetxattr(to, name, val, 0); err != nil {
			return err
		}
	}
	return nil
}

// MustCopyXattr reports whether a copy-up fails when attribute name cannot be copied: POSIX
// ACLs and security.* (capabilities, IMA/EVM, labels), as the kernel's ovl_must_copy_xattr.
func MustCopyXattr(name string) bool {
	return name == "system.posix_acl_access" || name == "system.posix_acl_default" ||
		strings.HasPrefix(name, "security.")
}

// setOwnerMode gives entry name of directory dirfd the owner and mode of st, in that order:
// chown clears set-id bits (and capabilities, which is why attributes come after).
func setOwnerMode(dirfd int, name string, st *unix.Stat_t) error {
	if err := unix.Fchownat(dirfd, name, int(st.Uid), int(st.Gid), unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFLNK {
		return unix.Fchmodat(dirfd, name, st.Mode&07777, 0)
	}
	return nil
}

// setTimes gives entry name of directory dirfd the times of st; last, since every other change
// moves ctime and some mtime. Nothing is flushed here: as the kernel's overlayfs, a copy-up
// syncs a file's data only (copyFile).
func setTimes(dirfd int, name string, st *unix.Stat_t) error {
	ts := []unix.Timespec{st.Atim, st.Mtim}
	return unix.UtimesNanoAt(dirfd, name, ts, unix.AT_SYMLINK_NOFOLLOW)
}
