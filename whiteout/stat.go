package whiteout

import (
	"errors"

	"golang.org/x/sys/unix"
)

// Lstat is fstatat(dirfd, name, AT_SYMLINK_NOFOLLOW) that also returns the object's
// attributes (statx's stx_attributes, of those its file system reports: STATX_ATTR_IMMUTABLE,
// STATX_ATTR_APPEND …), which a lookup gets for the same cost.
func Lstat(dirfd int, name string, st *unix.Stat_t) (uint64, error) {
	x, err := statx(dirfd, name, unix.AT_SYMLINK_NOFOLLOW, unix.STATX_BASIC_STATS, st)
	if x == nil {
		return 0, err
	}
	return x.Attributes & x.Attributes_mask, err
}

// Birth is an object's birth time, where its file system records one (statx's stx_btime).
type Birth struct {
	Time unix.StatxTimestamp
	// Known is false where the file system gives none (tmpfs before 6.x, NFS …).
	Known bool
}

// StatBirth is fstatat(dirfd, name, flags) that also returns the object's birth time. flags
// may hold AT_SYMLINK_NOFOLLOW and AT_EMPTY_PATH (name "" for dirfd itself).
func StatBirth(dirfd int, name string, flags int, st *unix.Stat_t) (Birth, error) {
	x, err := statx(dirfd, name, flags, unix.STATX_BASIC_STATS|unix.STATX_BTIME, st)
	if x == nil || x.Mask&unix.STATX_BTIME == 0 {
		return Birth{}, err
	}
	return Birth{Time: x.Btime, Known: true}, err
}

// statx fills st as fstatat(dirfd, name, flags) would, by statx asking for mask, and returns
// what statx gave (nil where it could not be used).
func statx(dirfd int, name string, flags, mask int, st *unix.Stat_t) (*unix.Statx_t, error) {
	var x unix.Statx_t
	if err := unix.Statx(dirfd, name, flags, mask, &x); err != nil {
		if errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EPERM) {
			// A kernel before 4.11, or a seccomp profile that predates statx: stat, and
			// nothing more.
			return nil, unix.Fstatat(dirfd, name, st, flags)
		}
		return nil, err
	}
	if x.Mask&unix.STATX_BASIC_STATS != unix.STATX_BASIC_STATS {
		// A file system that leaves out some of what stat gives: ask stat.
		return &x, unix.Fstatat(dirfd, name, st, flags)
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
	return &x, nil
}
