package unionfs

import (
	"strings"
	"sync"
	"sync/atomic"

	"github.com/layerfs/layerfs/unionfs/xattrs"
	"github.com/layerfs/layerfs/whiteout"
	"golang.org/x/sys/unix"
)

// setRedirect records on the upper directory entry name of dirfd that its lower parts are at
// lowerPath (relative to the layer roots).
func (u *unionFS) setRedirect(dirfd int, name, lowerPath string) error {
	return unix.Lsetxattr(xattrs.Path(dirfd, name), u.xattrPrefix()+whiteout.RedirectAttr, []byte("/"+lowerPath), 0)
}

// redirectedDirs are the directories of the upper that carry a redirect, by merged path
// (an upper directory's path is its merged path). They are found by walking the upper, which
// is done only for the copy-up of a hard link (linkUpOthers), and kept until a rename makes a
// redirect or moves one: only a rename can. Most renames do neither, so an upper without
// redirects is walked once per mount.
type redirectedDirs struct {
	// mu serialises walks; renames never wait for it.
	mu sync.Mutex
	// found is the last walk's result, nil before the first.
	found atomic.Pointer[redirectWalk]
	// moves counts the renames that may have changed what a walk finds.
	moves atomic.Uint64
}

// redirectWalk is one walk's result, good while moves is still gen.
type redirectWalk struct {
	paths []string
	gen   uint64
}

// dirMoved is told of every directory rename, before and after it is made (so that no walk
// made in between is kept): of the merged paths of the directories it moves, and whether it
// may give one of them a redirect. Only a rename that does, or that moves a directory the
// last walk found or one holding such a directory, makes the next copy-up walk again.
func (r *redirectedDirs) dirMoved(setsRedirect bool, moved ...string) {
	w := r.found.Load()
	if setsRedirect || w == nil || w.gen != r.moves.Load() || holdsAny(moved, w.paths) {
		r.moves.Add(1)
	}
}

// holdsAny reports whether some path in paths is one of dirs or below one.
func holdsAny(dirs, paths []string) bool {
	for _, p := range paths {
		for _, d := range dirs {
			if p == d || strings.HasPrefix(p, d+"/") {
				return true
			}
		}
	}
	return false
}

// redirected returns the merged paths of the upper directories that carry a redirect.
func (u *unionFS) redirected() ([]string, error) {
	r := &u.redirects
	r.mu.Lock()
	defer r.mu.Unlock()
	gen := r.moves.Load()
	if w := r.found.Load(); w != nil && w.gen == gen {
		return w.paths, nil
	}
	var paths []string
	err := u.upper().Walk("", func(path string, dirfd int, name string, st *unix.Stat_t) {
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			return
		}
		if info, err := whiteout.ReadDirInfo(dirfd, name); err == nil && info.HasRedirect {
			paths = append(paths, path)
		}
	})
	if err != nil {
		return nil, err
	}
	// A rename during the walk may have moved what it found: the result is used, and kept
	// under the count from before the walk, which that rename has moved on.
	r.found.Store(&redirectWalk{paths: paths, gen: gen})
	return paths, nil
}
