// Package copyup copies one object (regular file, directory, symlink, fifo, socket or device)
// from a lower layer into the upper layer, atomically: the copy is built under a temporary name
// in the work directory, which is on the upper's filesystem, with data, extended attributes,
// owner, mode, inode flags and times, and only then renamed into place. A crash leaves either no copy or a
// whole one. Directories are copied without their entries. Nothing here imports FUSE.
package copyup

import (
	"fmt"
	"sync/atomic"

	"github.com/layerfs/layerfs/unionfs/workdir"
	"golang.org/x/sys/unix"
)

// Source is the object to copy: the entry Name of the directory open as DirFd, whose lstat is
// Stat.
type Source struct {
	DirFd int
	Name  string
	Stat  unix.Stat_t
}

// Options say how to copy.
type Options struct {
	// WorkFd is the work directory (O_PATH is enough) on the destination's filesystem.
	WorkFd int
	// SkipData leaves a regular file empty (for an open with O_TRUNC).
	SkipData bool
	// NoSync skips fsync of the copy before it becomes visible (the volatile option).
	NoSync bool
	// SkipXattr reports attributes not to copy (the overlay's private ones).
	SkipXattr func(name string) bool
	// ExtraXattrs are set on the copy besides the source's, before it becomes visible.
	ExtraXattrs map[string][]byte
	// ProtAttr names the attribute that records the source's immutable and append-only
	// flags on the copy (overlay.protattr, copyFileattr); "" leaves them out.
	ProtAttr string
	// NoClone, shared by the copies into one file system, is set once that file system has
	// refused a reflink for want of support, so that later copies do not ask (nil: always
	// ask).
	NoClone *atomic.Bool
}

// Object copies src into directory dstDirFd as dstName, which must not exist. On failure
// nothing is left behind, in the work directory or at the destination.
func Object(src Source, dstDirFd int, dstName string, opt Options) error {
	tmp, err := buildTemp(src, opt)
	if err != nil {
		return err
	}
	if err := unix.Renameat2(opt.WorkFd, tmp, dstDirFd, dstName, unix.RENAME_NOREPLACE); err != nil {
		discard(opt.WorkFd, tmp)
		return fmt.Errorf("copy-up: rename into place: %w", err)
	}
	return nil
}

// buildTemp makes a complete copy of src in the work directory and returns its temporary name;
// the caller renames it into place (or discards it).
func buildTemp(src Source, opt Options) (string, error) {
	tmp := workdir.TempName()
	if err := build(src, tmp, opt); err != nil {
		discard(opt.WorkFd, tmp)
		return "", fmt.Errorf("copy-up of %s: %w", src.Name, err)
	}
	return tmp, nil
}

func build(src Source, tmp string, opt Options) error {
	st := &src.Stat
	w := opt.WorkFd
	var sf sourceFlags
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		var err error
		if sf, err = copyFile(src, w, tmp, opt); err != nil {
			return err
		}
	case unix.S_IFDIR:
		if err := unix.Mkdirat(w, tmp, 0o700); err != nil {
			return err
		}
	case unix.S_IFLNK:
		buf := make([]byte, unix.PathMax)
		n, err := unix.Readlinkat(src.DirFd, src.Name, buf)
		if err != nil {
			return err
		}
		if err := unix.Symlinkat(string(buf[:n]), w, tmp); err != nil {
			return err
		}
	case unix.S_IFIFO, unix.S_IFSOCK, unix.S_IFCHR, unix.S_IFBLK:
		if err := unix.Mknodat(w, tmp, st.Mode&unix.S_IFMT|0o600, int(st.Rdev)); err != nil {
			return err
		}
	default:
		return fmt.Errorf("unknown file type %o", st.Mode&unix.S_IFMT)
	}
	// The kernel's order (ovl_copy_up_metadata), with one difference it does not need: chown(2)
	// from user space always drops security.capability, so the owner is set before the
	// attributes rather than after.
	if err := setOwnerMode(w, tmp, st); err != nil {
		return err
	}
	if err := copyXattrs(src, w, tmp, opt); err != nil {
		return err
	}
	if t := st.Mode & unix.S_IFMT; t == unix.S_IFREG || t == unix.S_IFDIR {
		if err := copyFileattr(src, w, tmp, opt, sf); err != nil {
			return fmt.Errorf("copying inode flags: %w", err)
		}
	}
	return setTimes(w, tmp, st)
}

// discard removes an object under construction, a directory with everything in it.
func discard(workFd int, name string) {
	if unix.Unlinkat(workFd, name, 0) == nil {
		return
	}
	workdir.RemoveAll(workFd, name)
}
