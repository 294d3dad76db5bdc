package unionfs

import (
	"errors"
	"syscall"

	"github.com/layerfs/layerfs/whiteout"
	"golang.org/x/sys/unix"
)

// resolution is where a merged name lives: the topmost object and, for a directory, every
// layer whose directory of that name takes part in the merge.
type resolution struct {
	top       int         // layer index of the topmost object
	st        unix.Stat_t // its stat
	dirLayers []int       // directories only: contributing layers, topmost first
	ino       uint64      // merged st_ino
}

// parentDirs opens a merged directory's layer directories on demand, so a lookup answered by
// the top layer opens only that one.
type parentDirs struct {
	u      *unionFS
	path   string
	layers []int
	fds    []dirFD
	opened []bool
}

func (u *unionFS) newParentDirs(path string, layers []int) *parentDirs {
	return &parentDirs{u: u, path: path, layers: layers, fds: make([]dirFD, len(layers)), opened: make([]bool, len(layers))}
}

func (p *parentDirs) get(i int) (int, error) {
	if !p.opened[i] {
		d, err := p.u.layers[p.layers[i]].openDir(p.path)
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
// search; directories merge down to the first opaque one or the first non-directory.
func (u *unionFS) resolve(dirs *parentDirs, name string) (res resolution, errno syscall.Errno) {
	found := false
	lowerIno := false
	last := len(dirs.layers) - 1
	for i, li := range dirs.layers {
		l := u.layers[li]
		fd, err := dirs.get(i)
		if err != nil {
			if missing(err) {
				// The directory is gone from this layer (changed under the mount); the
				// layers below still answer.
				continue
			}
			return res, toErrno(err)
		}
		var st unix.Stat_t
		err = unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW)
		if err != nil {
			if !missing(err) {
				return res, toErrno(err)
			}
			if i < last {
				wh, err := whiteout.HasAufsWhiteout(fd, name)
				if err != nil {
					return res, toErrno(err)
				}
				if wh {
					break
				}
			}
			continue
		}
		if whiteout.IsWhiteoutDev(&st) {
			break
		}
		if !l.upper && st.Mode&unix.S_IFMT == unix.S_IFREG && st.Size == 0 {
			wh, err := whiteout.IsXWhiteout(fd, name, &st)
			if err != nil {
				return res, toErrno(err)
			}
			if wh {
				break
			}
		}
		isDir := st.Mode&unix.S_IFMT == unix.S_IFDIR
		if !found {
			found = true
			res.top, res.st = li, st
			res.ino = u.inoOf(l, st.Ino)
			if !isDir {
				if l.upper {
					if ino, ok := u.readOrigin(fd, name); ok {
						res.ino = ino
					} else if ino, ok := u.kernelOrigin(fd, name); ok {
						res.ino = ino
					}
					res.st.Nlink = u.mergedNlink(fd, name, &res.st)
				}
				return res, 0
			}
			res.dirLayers = []int{li}
		} else {
			if !isDir {
				break
			}
			res.dirLayers = append(res.dirLayers, li)
		}
		if isDir && !l.upper && !lowerIno {
			// A merged directory keeps the number of its topmost lower part, which is the
			// origin it is copied up from: the number does not change on copy-up.
			res.ino = u.inoOf(l, st.Ino)
			lowerIno = true
		}
		if i == last {
			break
		}
		info, err := whiteout.ReadDirInfo(fd, name)
		if err != nil {
			return res, toErrno(err)
		}
		if info.Opaque {
			break
		}
	}
	if !found {
		return res, syscall.ENOENT
	}
	return res, 0
}
