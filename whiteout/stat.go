package whiteout

import (
	"errors"

	"golang.org/x/sys/unix"
)

// Lstat is fstatat(dirfd, name, AT_SYMLINK_NOFOLLOW) that also returns the object's
// attributes (statx's stx_attributes, of those its file system reports: STATX_ATTR_IMMUTABLE,
// STATX_ATTR_APPEND …), which a lookup gets for the same cost.
func Lstat(dirfd int, name string, st *unix.Stat_t) (uint64, error) {
	var x unix.Statx_t
	if err := unix.Statx(dirfd, name, unix.AT_SYMLINK_NOFOLLOW, unix.STATX_BASIC_STATS, &x); err != nil {
		if errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EPERM) {
			// A kernel before 4.11, or a seccomp profile that predates statx: stat, and
			// no attributes.
			return 0, unix.Fstatat(dirfd, name, st, unix.AT_SYMLINK_NOFOLLOW)
		}
		return 0, err
	}
	if x.Mask&unix.STATX_BASIC_STATS != unix.STATX_BASIC_STATS {
		// A file system that leaves out some of what stat gives: ask stat.
		return x.Attributes & x.Attributes_mask, unix.Fstatat(dirfd, name, st, unix.AT_SYMLINK_NOFOLLOW)
	}
	*st = unix.Stat_t{
		Dev:     unix.Mkdev(x.Dev_major, x.Dev_minor),
		Ino:     x.Ino,
		Nlink:   uint64(x.Nlink),
		Mode:    uint32(x.Mode),
		Uid:     x.Uid,
		Gid:     x.Gid,
		Rdev:    unix.Mkdev(x.Rdev_major, x.Rdev_minor),
		Size:    int64(x.Size),
		Blksize: int64(x.Blksize),
		Blocks:  int64(x.Blocks),
		Atim:    unix.Timespec{Sec: x.Atime.Sec, Nsec: int64(x.Atime.Nsec)},
		Mtim:    unix.Timespec{Sec: x.Mtime.Sec, Nsec: int64(x.Mtime.Nsec)},
		Ctim:    unix.Timespec{Sec: x.Ctime.Sec, Nsec: int64(x.Ctime.Nsec)},
	}
	return x.Attributes & x.Attributes_mask, nil
}
