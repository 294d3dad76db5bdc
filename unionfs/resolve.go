package unionfs

import (
	"errors"
	"strings"
	"syscall"

	"github.com/layerfs/layerfs/whiteout"
	"golang.org/x/sys/unix"
)

// part is where a merged object lives in one layer.
type part struct {
	layer int
	// path is the object's path in that layer. For the upper it is the merged path, which
	// nodes do not store (an ancestor's rename changes it): node.parts fills it in. For a lower
	// layer it is where lookup found the object, which a redirect may have moved.
	path string
}

// resolution is where a merged name lives: the topmost object and, for a directory, every
// layer directory that takes part in the merge.
type resolution struct {
	parts []part      // topmost first; a non-directory has one
	st    unix.Stat_t // stat of the topmost object
	ino   uint64      // merged st_ino
}

func (r *resolution) top() int { return r.parts[0].layer }

// parentDirs opens a merged directory's layer directories on demand, so a lookup answered by
// the top layer opens only that one.
type parentDirs struct {
	u      *unionFS
	parts  []part
	fds    []dirFD
	opened []bool
}

func (u *unionFS) newParentDirs(parts []part) *parentDirs {
	return &parentDirs{u: u, parts: parts, fds: make([]dirFD, len(parts)), opened: make([]bool, len(parts))}
}

func (p *parentDirs) get(i int) (int, error) {
	if !p.opened[i] {
		d, err := p.u.layers[p.parts[i].layer].openDir(p.parts[i].path)
		if err != nil {
			return -1, err
		}
		p.fds[i], p.opened[i] = d, true
	}
	return p.fds[i].fd, nil
}

func (p *parentDirs) release() {
	for i, ok := range p.opened {
		if ok {
			p.fds[i].release()
		}
	}
}

// missing reports errors that mean "this layer has no such entry here".
func missing(err error) bool {
	return errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR)
}

// resolve applies the lookup rules to name in the merged directory whose layer directories
// are dirs: search top to bottom; a whiteout hides everything below; a non-directory ends the
// search; directories merge down to the first opaque one or the first non-directory. A
// directory with a redirect continues the search below it at the path the redirect names,
// from the layer roots when it is absolute.
func (u *unionFS) resolve(dirs *parentDirs, name string) (res resolution, errno syscall.Errno) {
	found := false
	lowerIno := false
	cand, lookName := dirs, name
	defer func() {
		if cand != dirs { // the layer directories a redirect led to
			cand.release()
		}
	}()
	for i := 0; i < len(cand.parts); i++ {
		p := cand.parts[i]
		l := u.layers[p.layer]
		last := i == len(cand.parts)-1 // no further directory of the parent to look in
		fd, err := cand.get(i)
		if err != nil {
			if missing(err) {
				// The directory is gone from this layer (changed under the mount); the
				// layers below still answer.
				continue
			}
			return res, toErrno(err)
		}
		e, err := whiteout.Classify(fd, lookName, whiteout.LookupRule(l.upper, !last))
		if err != nil {
			return res, toErrno(err)
		}
		if e.Kind == whiteout.Whiteout {
			break // hides the name in every layer below
		}
		if e.Kind == whiteout.Absent {
			continue
		}
		st := e.Stat
		isDir := st.Mode&unix.S_IFMT == unix.S_IFDIR
		here := part{layer: p.layer, path: joinPath(p.path, lookName)}
		if !found {
			found = true
			res.st = st
			res.parts = []part{here}
			res.ino = u.inoOf(l, st.Ino)
			if !isDir {
				if l.upper {
					if ino, ok := u.readOriginAny(fd, lookName); ok {
						res.ino = ino
					}
					res.st.Nlink = u.mergedNlink(fd, lookName, &res.st)
				}
				return res, 0
			}
		} else {
			if !isDir {
				break
			}
			res.parts = append(res.parts, here)
		}
		if !l.upper && !lowerIno {
			// A merged directory keeps the number of its topmost lower part, which is the
			// origin it is copied up from: the number does not change on copy-up.
			res.ino = u.inoOf(l, st.Ino)
			lowerIno = true
		}
		if p.layer == len(u.layers)-1 {
			break // nothing below to merge with
		}
		info, err := whiteout.ReadDirInfo(fd, lookName)
		if err != nil {
			return res, toErrno(err)
		}
		if info.Opaque {
			break
		}
		redirect, ok, errno := u.followRedirect(info)
		if errno != 0 {
			return res, errno
		}
		if !ok {
			if last {
				break
			}
			continue
		}
		if !strings.HasPrefix(redirect, "/") {
			lookName = redirect // another name in the same parent directories
			continue
		}
		// An absolute redirect: the layers below this one, from their roots.
		target := strings.Trim(redirect, "/")
		dir, base := splitPath(target)
		var below []part
		for li := p.layer + 1; li < len(u.layers); li++ {
			below = append(below, part{layer: li, path: dir})
		}
		if cand != dirs {
			cand.release()
		}
		cand, lookName, i = u.newParentDirs(below), base, -1
	}
	if !found {
		return res, syscall.ENOENT
	}
	return res, 0
}
