package unionfs

import (
	"context"
	"errors"
	"syscall"

	"github.com/layerfs/layerfs/unionfs/merge"
	"github.com/layerfs/layerfs/unionfs/workdir"
	"github.com/layerfs/layerfs/whiteout"
	"golang.org/x/sys/unix"
)

// resolveChild resolves name in directory n.
func (n *node) resolveChild(name string) (merge.Resolution, syscall.Errno) {
	if len(name) > 255 {
		return merge.Resolution{}, syscall.ENAMETOOLONG
	}
	if whiteout.IsMarkerName(name) {
		return merge.Resolution{}, syscall.ENOENT
	}
	dirs := n.u.NewDirs(n.parts())
	defer dirs.Release()
	return n.u.Resolve(dirs, name)
}

// removalTarget resolves name in directory n for its removal: where it lives, not its merged
// number, which a removal does not need and which costs an upper file a listxattr. The
// directories stay open for remove, which acts in the same upper one; the caller releases them.
func (n *node) removalTarget(name string) (*merge.Dirs, merge.Resolution, syscall.Errno) {
	dirs := n.u.NewDirs(n.parts())
	if len(name) > 255 {
		return dirs, merge.Resolution{}, syscall.ENAMETOOLONG
	}
	if whiteout.IsMarkerName(name) {
		return dirs, merge.Resolution{}, syscall.ENOENT
	}
	res, errno := n.u.ResolvePlace(dirs, name)
	return dirs, res, errno
}

// lowerOf returns the topmost lower layer of directory n that shows name, -1 if none: when
// there is one, removing name from the upper (or moving it away) must leave a whiteout.
func (n *node) lowerOf(name string) (int, syscall.Errno) {
	lowers := n.lowerParts()
	if len(lowers) == 0 {
		return -1, 0
	}
	dirs := n.u.NewDirs(lowers)
	defer dirs.Release()
	res, errno := n.u.Resolve(dirs, name)
	switch errno {
	case 0:
		return res.Top(), 0
	case syscall.ENOENT:
		return -1, 0
	}
	return -1, errno
}

func isDirStat(st *unix.Stat_t) bool { return st.Mode&unix.S_IFMT == unix.S_IFDIR }

// hasLowerParts reports whether a resolved object has anything in a lower layer.
func (u *unionFS) hasLowerParts(res *merge.Resolution) bool {
	return !u.Layers[res.Top()].Upper || len(res.Parts) > 1
}

// Unlink removes a non-directory; a name that a lower layer holds is replaced by a whiteout.
func (n *node) Unlink(ctx context.Context, name string) syscall.Errno {
	if errno := n.mayRemove(name); errno != 0 {
		return errno
	}
	dirs, res, errno := n.removalTarget(name)
	defer dirs.Release()
	if errno != 0 {
		return errno
	}
	if isDirStat(&res.St) {
		return syscall.EISDIR
	}
	return n.remove(ctx, name, &res, false, dirs)
}

// Rmdir removes a directory whose merged view is empty (its upper part may still hold
// whiteouts, which go with it); a name that a lower layer holds is replaced by a whiteout.
func (n *node) Rmdir(ctx context.Context, name string) syscall.Errno {
	if errno := n.mayRemove(name); errno != 0 {
		return errno
	}
	dirs, res, errno := n.removalTarget(name)
	defer dirs.Release()
	if errno != 0 {
		return errno
	}
	if !isDirStat(&res.St) {
		return syscall.ENOTDIR
	}
	if errno := n.u.checkEmpty(res.Parts); errno != 0 {
		return errno
	}
	return n.remove(ctx, name, &res, true, dirs)
}

// checkEmpty answers ENOTEMPTY unless the merged directory of parts can be removed: it shows
// no entry, and, as the kernel requires, no lower part of it holds an xattr whiteout (the
// kernel's emptiness check counts those as entries, though its listing hides them).
func (u *unionFS) checkEmpty(parts []merge.Part) syscall.Errno {
	entries, errno := u.mergedEntries(parts, 1)
	if errno != 0 {
		return errno
	}
	if len(entries) > 0 {
		return syscall.ENOTEMPTY
	}
	for _, p := range parts {
		l := u.Layers[p.Layer]
		if l.Upper {
			continue
		}
		names, err := l.ReadNames(p.Path)
		if err != nil {
			continue
		}
		d, err := l.OpenDir(p.Path)
		if err != nil {
			continue
		}
		for _, name := range names {
			var st unix.Stat_t
			if unix.Fstatat(d.FD, name, &st, unix.AT_SYMLINK_NOFOLLOW) != nil {
				continue
			}
			// As a lookup in a lower layer reads it: an xattr whiteout anywhere counts.
			if e, _ := whiteout.ClassifyStat(d.FD, name, &st, whiteout.LookupRule(false, false)); e.Format == whiteout.Xattr {
				d.Release()
				return syscall.ENOTEMPTY
			}
		}
		d.Release()
	}
	return 0
}

// remove removes name, resolved in dirs (removalTarget) as res, from directory n.
func (n *node) remove(ctx context.Context, name string, res *merge.Resolution, isDir bool, dirs *merge.Dirs) syscall.Errno {
	if !n.u.hasUpper {
		return syscall.EROFS
	}
	// Whether the upper directory was there when name was resolved: then it is the
	// directory to act in, and the copy-up below does nothing.
	upperResolved := n.u.Layers[dirs.Part(0).Layer].Upper
	if errno := n.copyUp(ctx, true); errno != 0 {
		return errno
	}
	inUpper := n.u.Layers[res.Top()].Upper
	below := res.Top() // an object found in a lower layer: that layer shows it
	if inUpper {
		var errno syscall.Errno
		if below, errno = n.lowerOf(name); errno != 0 {
			return errno
		}
	}
	needWhiteout := below >= 0
	var d merge.DirFD
	var err error
	if upperResolved {
		if d.FD, err = dirs.Get(0); err != nil { // dirs releases it
			return toErrno(err)
		}
	} else {
		if d, err = n.u.upper().OpenDir(n.path()); err != nil {
			return toErrno(err)
		}
		defer d.Release()
	}
	if !inUpper && !isDir && res.St.Nlink > 1 {
		// Removing one name of a lower hard link: the other names stay one object, one link
		// fewer, so the object is copied up (linking all its names) before this one goes.
		ch, errno := n.childNode(ctx, name)
		if errno != 0 {
			return errno
		}
		if errno := ch.copyUp(ctx, true); errno != 0 {
			return errno
		}
		inUpper = true
	}
	undo := func() {}
	if !isDir {
		var errno syscall.Errno
		if undo, errno = n.detachChild(name, d.FD); errno != 0 {
			return errno
		}
	}
	switch {
	case !inUpper:
		_, err = whiteout.Create(d.FD, name)
	case needWhiteout:
		err = n.replaceWithWhiteout(d.FD, name, isDir)
	case isDir:
		err = n.removeDir(d.FD, name)
	default:
		err = unix.Unlinkat(d.FD, name, 0)
	}
	if err != nil {
		undo()
	}
	if err == nil && (!inUpper || needWhiteout) {
		n.u.trace(Event{Kind: "whiteout", Path: merge.JoinPath(n.path(), name), Layer: below})
	}
	return toErrno(err)
}

// replaceWithWhiteout swaps the upper object at name for a whiteout in one step, so the lower
// object never shows through, then removes the old object from the work directory.
func (n *node) replaceWithWhiteout(dirfd int, name string, isDir bool) error {
	w := n.u.work.FD
	tmp := workdir.TempName()
	if err := whiteout.MakeWhiteoutAt(w, tmp); err != nil {
		if !errors.Is(err, unix.EPERM) {
			return err
		}
		// No mknod here: remove, then leave an AUFS whiteout.
		if isDir {
			err = n.removeDir(dirfd, name)
		} else {
			err = unix.Unlinkat(dirfd, name, 0)
		}
		if err != nil {
			return err
		}
		_, err = whiteout.Create(dirfd, name)
		return err
	}
	flags := uint(0)
	if isDir {
		flags = unix.RENAME_EXCHANGE
	}
	if err := unix.Renameat2(w, tmp, dirfd, name, flags); err != nil {
		unix.Unlinkat(w, tmp, 0)
		return err
	}
	if isDir {
		return workdir.RemoveAll(w, tmp)
	}
	return nil
}

// removeDir removes an upper directory that may still hold whiteouts: it is moved to the work
// directory first, so it disappears at once, and emptied there.
func (n *node) removeDir(dirfd int, name string) error {
	err := unix.Unlinkat(dirfd, name, unix.AT_REMOVEDIR)
	if !errors.Is(err, unix.ENOTEMPTY) && !errors.Is(err, unix.EEXIST) {
		return err
	}
	return n.u.work.Discard(dirfd, name)
}
