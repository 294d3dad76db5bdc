package merge

import (
	"errors"
	"strings"
	"syscall"

	"github.com/layerfs/layerfs/whiteout"
	"golang.org/x/sys/unix"
)

// Part is where a merged object lives in one layer.
type Part struct {
	Layer int
	// Path is the object's path in that layer. For the upper it is the merged path, which
	// nodes do not store (an ancestor's rename changes it): node.parts fills it in. For a lower
	// layer it is where lookup found the object, which a redirect may have moved.
	Path string
}

// Resolution is where a merged name lives: the topmost object and, for a directory, every
// layer directory that takes part in the merge.
type Resolution struct {
	Parts []Part      // topmost first; a non-directory has one
	St    unix.Stat_t // stat of the topmost object
	Ino   uint64      // merged st_ino
	// Attrs are the topmost object's statx attributes (immutable, append-only …), read
	// with St.
	Attrs uint64
	// Xattrs is what the lookup learnt of an upper non-directory's extended attributes.
	Xattrs XattrFacts
}

// Top is the layer of the topmost object.
func (r *Resolution) Top() int { return r.Parts[0].Layer }

// Dirs opens a merged directory's layer directories on demand, so a lookup answered by
// the top layer opens only that one.
type Dirs struct {
	layers []*Layer
	parts  []Part
	fds    []DirFD
	opened []bool
}

// NewDirs is the layer directories of the merged directory whose parts are parts, none
// opened yet. Release them when done.
func (s *Stack) NewDirs(parts []Part) *Dirs {
	return &Dirs{layers: s.Layers, parts: parts, fds: make([]DirFD, len(parts)), opened: make([]bool, len(parts))}
}

// Get is a descriptor of the i-th layer directory, opened at the first call.
func (p *Dirs) Get(i int) (int, error) {
	if !p.opened[i] {
		d, err := p.layers[p.parts[i].Layer].OpenDir(p.parts[i].Path)
		if err != nil {
			return -1, err
		}
		p.fds[i], p.opened[i] = d, true
	}
	return p.fds[i].FD, nil
}

// Part is the i-th layer directory's place.
func (p *Dirs) Part(i int) Part { return p.parts[i] }

// Release closes the directories Get opened.
func (p *Dirs) Release() {
	for i, ok := range p.opened {
		if ok {
			p.fds[i].Release()
		}
	}
}

// Missing reports errors that mean "this layer has no such entry here".
func Missing(err error) bool {
	return errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR)
}

// Resolve applies the lookup rules to name in the merged directory whose layer directories
// are dirs: search top to bottom; a whiteout hides everything below; a non-directory ends the
// search; directories merge down to the first opaque one or the first non-directory. A
// directory with a redirect continues the search below it at the path the redirect names,
// from the layer roots when it is absolute.
func (s *Stack) Resolve(dirs *Dirs, name string) (res Resolution, errno syscall.Errno) {
	return s.resolve(dirs, name, true)
}

// ResolvePlace is Resolve without the merged identity of an upper non-directory: its Ino is
// the upper object's own number, its St.Nlink the upper count, and Xattrs is empty. What
// only asks where a name lives (a removal) spares the listxattr and getxattr that cost.
func (s *Stack) ResolvePlace(dirs *Dirs, name string) (Resolution, syscall.Errno) {
	return s.resolve(dirs, name, false)
}

func (s *Stack) resolve(dirs *Dirs, name string, identity bool) (res Resolution, errno syscall.Errno) {
	found := false
	lowerIno := false
	cand, lookName := dirs, name
	defer func() {
		if cand != dirs { // the layer directories a redirect led to
			cand.Release()
		}
	}()
	for i := 0; i < len(cand.parts); i++ {
		p := cand.parts[i]
		l := s.Layers[p.Layer]
		last := i == len(cand.parts)-1 // no further directory of the parent to look in
		fd, err := cand.Get(i)
		if err != nil {
			if Missing(err) {
				// The directory is gone from this layer (changed under the mount); the
				// layers below still answer.
				continue
			}
			return res, Errno(err)
		}
		e, err := whiteout.Classify(fd, lookName, whiteout.LookupRule(l.Upper, !last))
		if err != nil {
			return res, Errno(err)
		}
		if e.Kind == whiteout.Whiteout {
			break // hides the name in every layer below
		}
		if e.Kind == whiteout.Absent {
			continue
		}
		st := e.Stat
		isDir := st.Mode&unix.S_IFMT == unix.S_IFDIR
		here := Part{Layer: p.Layer, Path: JoinPath(p.Path, lookName)}
		if !found {
			found = true
			res.St, res.Attrs = st, e.Attrs
			res.Parts = []Part{here}
			res.Ino = s.Identity.InoOf(l, st.Ino)
			if !isDir {
				if l.Upper && identity {
					ino, ok, facts := s.Identity.OriginIno(fd, lookName)
					if ok {
						res.Ino = ino
					}
					res.Xattrs = facts
					res.St.Nlink = s.Identity.MergedNlink(fd, lookName, &res.St)
				}
				return res, 0
			}
		} else {
			if !isDir {
				break
			}
			res.Parts = append(res.Parts, here)
		}
		if !l.Upper && !lowerIno {
			// A merged directory keeps the number of its topmost lower part, which is the
			// origin it is copied up from: the number does not change on copy-up.
			res.Ino = s.Identity.InoOf(l, st.Ino)
			lowerIno = true
		}
		if p.Layer == len(s.Layers)-1 {
			break // nothing below to merge with
		}
		info, err := whiteout.ReadDirInfo(fd, lookName)
		if err != nil {
			return res, Errno(err)
		}
		if info.Opaque {
			break
		}
		redirect, ok, errno := s.FollowRedirect(info)
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
		dir, base := SplitPath(target)
		var below []Part
		for li := p.Layer + 1; li < len(s.Layers); li++ {
			below = append(below, Part{Layer: li, Path: dir})
		}
		if cand != dirs {
			cand.Release()
		}
		cand, lookName, i = s.NewDirs(below), base, -1
	}
	if !found {
		return res, syscall.ENOENT
	}
	return res, 0
}

// ResolvePath resolves a whole merged path from the root.
func (s *Stack) ResolvePath(path string) (Resolution, syscall.Errno) {
	parts := make([]Part, len(s.Layers))
	for i := range parts {
		parts[i] = Part{Layer: i}
	}
	var res Resolution
	for _, c := range SplitAll(path) {
		dirs := s.NewDirs(parts)
		r, errno := s.Resolve(dirs, c)
		dirs.Release()
		if errno != 0 {
			return r, errno
		}
		res, parts = r, r.Parts
	}
	return res, 0
}

// SplitAll splits a relative path into its names.
func SplitAll(p string) []string {
	var out []string
	for p != "" {
		var name string
		p, name = SplitPath(p)
		out = append([]string{name}, out...)
	}
	return out
}
