package unionfs

import (
	"context"
	"errors"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// hardlinks maps, for one lower layer, the inode number of every object with more than one
// name to those names. Lowers do not change while mounted, so it is built once, on the first
// copy-up of a hard link from that layer, and holds only hard-linked objects.
type hardlinks struct {
	once  sync.Once
	paths map[uint64][]string
	err   error
}

func (l *layer) hardlinkPaths(ino uint64) ([]string, error) {
	l.links.once.Do(func() {
		l.links.paths = map[uint64][]string{}
		l.links.err = l.walk("", func(path string, st *unix.Stat_t) {
			if st.Mode&unix.S_IFMT != unix.S_IFDIR && st.Nlink > 1 {
				l.links.paths[st.Ino] = append(l.links.paths[st.Ino], path)
			}
		})
	})
	return l.links.paths[ino], l.links.err
}

// walk calls fn for every object below directory rel of the layer.
func (l *layer) walk(rel string, fn func(string, *unix.Stat_t)) error {
	names, err := l.readNames(rel)
	if err != nil {
		return err
	}
	d, err := l.openDir(rel)
	if err != nil {
		return err
	}
	defer d.release()
	for _, name := range names {
		var st unix.Stat_t
		if err := unix.Fstatat(d.fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			continue
		}
		p := joinPath(rel, name)
		fn(p, &st)
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			if err := l.walk(p, fn); err != nil {
				return err
			}
		}
	}
	return nil
}

// linkUpOthers links the upper copy at donePath under every other name by which the merged
// view shows the same lower object (real inode realIno, found at src).
func (u *unionFS) linkUpOthers(ctx context.Context, root *node, src part, realIno uint64, donePath string) error {
	l := u.layers[src.layer]
	paths, err := l.hardlinkPaths(realIno)
	if err != nil {
		return err
	}
	doneDir, doneName := splitPath(donePath)
	for _, p := range paths {
		if p == donePath {
			continue
		}
		res, errno := u.resolvePath(p)
		if errno != 0 || res.top() != l.index || res.st.Ino != realIno {
			continue // hidden, or shadowed by something else
		}
		dir, name := splitPath(p)
		if err := u.ensureUpperDir(ctx, root, dir); err != nil {
			return err
		}
		if err := u.linkInUpper(doneDir, doneName, dir, name); err != nil {
			return err
		}
		u.trace(Event{Kind: "link-up", Path: p, Layer: src.layer})
	}
	return nil
}

// linkInUpper hard-links upper object fromDir/fromName as toDir/toName, keeping toDir's times.
func (u *unionFS) linkInUpper(fromDir, fromName, toDir, toName string) error {
	fd, err := u.upper().openDir(fromDir)
	if err != nil {
		return err
	}
	defer fd.release()
	td, err := u.upper().openDir(toDir)
	if err != nil {
		return err
	}
	defer td.release()
	var st unix.Stat_t
	if err := unix.Fstat(td.fd, &st); err != nil {
		return err
	}
	if err := unix.Linkat(fd.fd, fromName, td.fd, toName, 0); err != nil && !errors.Is(err, unix.EEXIST) {
		return err
	}
	restoreTimes(td.fd, &st)
	return nil
}

// resolvePath resolves a whole merged path from the root.
func (u *unionFS) resolvePath(path string) (resolution, syscall.Errno) {
	parts := make([]part, len(u.layers))
	for i := range parts {
		parts[i] = part{layer: i}
	}
	var res resolution
	for _, c := range splitAll(path) {
		dirs := u.newParentDirs(parts)
		r, errno := u.resolve(dirs, c)
		dirs.release()
		if errno != 0 {
			return r, errno
		}
		res, parts = r, r.parts
	}
	return res, 0
}
