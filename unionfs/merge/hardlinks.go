package merge

import (
	"errors"
	"sync"

	"github.com/layerfs/layerfs/whiteout"

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

// HardlinkPaths are the paths in the layer of the object numbered ino, if it has more than
// one name.
func (l *Layer) HardlinkPaths(ino uint64) ([]string, error) {
	l.links.once.Do(func() {
		l.links.paths = map[uint64][]string{}
		l.links.err = l.Walk("", func(path string, _ int, _ string, st *unix.Stat_t) {
			if st.Mode&unix.S_IFMT != unix.S_IFDIR && st.Nlink > 1 {
				l.links.paths[st.Ino] = append(l.links.paths[st.Ino], path)
			}
		})
	})
	return l.links.paths[ino], l.links.err
}

// lowerRedirects lists the directories of a lower layer that carry a redirect. Lowers do not
// change while mounted, so it is found once, on the first copy-up of a hard link below it.
type lowerRedirects struct {
	once  sync.Once
	paths []string
	err   error
}

// RedirectedDirs are the paths of the directories in the layer that carry a redirect; for a
// lower layer only (an upper changes: package unionfs walks it itself).
func (l *Layer) RedirectedDirs() ([]string, error) {
	l.redirects.once.Do(func() {
		l.redirects.err = l.Walk("", func(path string, dirfd int, name string, st *unix.Stat_t) {
			if st.Mode&unix.S_IFMT != unix.S_IFDIR {
				return
			}
			if info, err := whiteout.ReadDirInfo(dirfd, name); err == nil && info.HasRedirect {
				l.redirects.paths = append(l.redirects.paths, path)
			}
		})
	})
	return l.redirects.paths, l.redirects.err
}

// Walk calls fn for every object below directory rel of the layer, with its path, the
// descriptor of its directory (valid during the call) and its name there. A directory below
// rel that goes away during the walk (the upper changes while mounted) is skipped.
func (l *Layer) Walk(rel string, fn func(path string, dirfd int, name string, st *unix.Stat_t)) error {
	names, err := l.ReadNames(rel)
	if err != nil {
		return err
	}
	d, err := l.OpenDir(rel)
	if err != nil {
		return err
	}
	defer d.Release()
	for _, name := range names {
		var st unix.Stat_t
		if err := unix.Fstatat(d.FD, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			continue
		}
		p := JoinPath(rel, name)
		fn(p, d.FD, name, &st)
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			if err := l.Walk(p, fn); err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.ENOTDIR) {
				return err
			}
		}
	}
	return nil
}
