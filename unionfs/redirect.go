package unionfs

import (
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
// is done only for the copy-up of a hard link (linkUpOthers) and kept until a directory
// moves: only a rename makes a redirect or moves one.
type redirectedDirs struct {
	mu    sync.Mutex
	paths []string
	// moves counts directory renames; gen is its value when paths was walked.
	moves atomic.Uint64
	gen   uint64
	valid bool
}

// dirMoved is told of every directory rename, before it is made.
func (r *redirectedDirs) dirMoved() { r.moves.Add(1) }

// redirected returns the merged paths of the upper directories that carry a redirect.
func (u *unionFS) redirected() ([]string, error) {
	r := &u.redirects
	r.mu.Lock()
	defer r.mu.Unlock()
	gen := r.moves.Load()
	if r.valid && r.gen == gen {
		return r.paths, nil
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
	// A rename during the walk may have moved what it found: use the result, keep it only
	// if nothing moved.
	r.paths, r.gen, r.valid = paths, gen, r.moves.Load() == gen
	return paths, nil
}
