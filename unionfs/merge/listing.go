package merge

import (
	"syscall"
	"unsafe"

	"github.com/layerfs/layerfs/whiteout"
	"golang.org/x/sys/unix"
)

// Dirent is one entry of one layer directory, as getdents gives it.
type Dirent struct {
	Name string
	Ino  uint64
	Type uint8
}

// ReadDirents lists directory rel of the layer with getdents64, keeping d_ino and d_type so
// that a listing needs no stat per entry.
func (l *Layer) ReadDirents(rel string) ([]Dirent, error) {
	fd, err := l.OpenNoatime(rel, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	var out []Dirent
	buf := make([]byte, 32<<10)
	for {
		n, err := unix.Getdents(fd, buf)
		if err != nil {
			return nil, err
		}
		if n == 0 {
			return out, nil
		}
		for off := 0; off < n; {
			d := (*unix.Dirent)(unsafe.Pointer(&buf[off]))
			name := unsafe.Slice((*byte)(unsafe.Pointer(&d.Name[0])), int(d.Reclen)-int(unsafe.Offsetof(d.Name)))
			l := 0
			for l < len(name) && name[l] != 0 {
				l++
			}
			if s := string(name[:l]); s != "." && s != ".." {
				out = append(out, Dirent{Name: s, Ino: d.Ino, Type: d.Type})
			}
			off += int(d.Reclen)
		}
	}
}

// ReadNames lists directory rel of the layer, without "." and "..".
func (l *Layer) ReadNames(rel string) ([]string, error) {
	ents, err := l.ReadDirents(rel)
	names := make([]string, len(ents))
	for i, e := range ents {
		names[i] = e.Name
	}
	return names, err
}

// Entries lists the merged directory whose layer directories are parts, applying the
// lookup rules to the layer listings themselves: the topmost entry of a name decides, a
// whiteout (char 0/0, ".wh.<name>" in a layer above, or an xattr whiteout in a directory marked
// opaque=x, as the kernel lists them) hides it, and Ino is what stat gives. Only entries
// that need it are stat'ed (character devices, candidate xattr whiteouts); an upper directory
// is resolved in full for its number (a merge or a redirect may give it a lower one). With
// limit > 0 it stops after that many entries. It also says, for each entry, which of parts
// holds its topmost object.
func (s *Stack) Entries(parts []Part, limit int) ([]Entry, []int, syscall.Errno) {
	decided := map[string]bool{} // names already shown or hidden by a higher layer
	hiddenBelow := map[string]bool{}
	var out []Entry
	var from []int
	var fullResolve []int // indexes into out of upper directories in a merged directory
	merged := len(parts) > 1
	for pi, p := range parts {
		l := s.Layers[p.Layer]
		ents, err := l.ReadDirents(p.Path)
		if err != nil {
			if Missing(err) {
				continue
			}
			return nil, nil, Errno(err)
		}
		var d DirFD
		opened := false
		dir := func() (int, error) {
			if !opened {
				var err error
				if d, err = l.OpenDir(p.Path); err != nil {
					return -1, err
				}
				opened = true
			}
			return d.FD, nil
		}
		xwhiteouts := false
		if !l.Upper {
			if fd, err := dir(); err == nil {
				info, _ := whiteout.ReadDirInfo(fd, "")
				xwhiteouts = info.XWhiteouts
			}
		}
		var aufs []string
		for _, e := range ents {
			if whiteout.IsMarkerName(e.Name) {
				if hidden, ok := whiteout.HiddenName(e.Name); ok {
					aufs = append(aufs, hidden)
				}
				continue
			}
			if decided[e.Name] {
				continue
			}
			decided[e.Name] = true
			if hiddenBelow[e.Name] {
				continue
			}
			typ := uint32(e.Type) << 12 // DT_* are the S_IF* type bits shifted down
			var st unix.Stat_t
			needStat := e.Type == unix.DT_UNKNOWN || e.Type == unix.DT_CHR ||
				(xwhiteouts && e.Type == unix.DT_REG)
			if needStat {
				fd, err := dir()
				if err != nil {
					return nil, nil, Errno(err)
				}
				if err := unix.Fstatat(fd, e.Name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
					if Missing(err) {
						continue
					}
					return nil, nil, Errno(err)
				}
				typ = st.Mode & unix.S_IFMT
				// An attribute that cannot be read leaves the entry shown.
				if c, _ := whiteout.ClassifyStat(fd, e.Name, &st, whiteout.ListingRule(l.Upper, xwhiteouts)); c.Kind == whiteout.Whiteout {
					continue
				}
			}
			if typ == unix.S_IFREG && l.OverrideXattr != "" {
				if fd, err := dir(); err == nil {
					if t, ok := s.Identity.OverrideType(l, fd, e.Name); ok {
						typ = t // a file standing in for a device, fifo or socket
					}
				}
			}
			ino := s.Identity.InoOf(l, e.Ino)
			if l.Upper && typ != unix.S_IFDIR {
				if fd, err := dir(); err == nil {
					if o, ok, _ := s.Identity.OriginIno(fd, e.Name); ok {
						ino = o
					}
				}
			}
			if l.Upper && typ == unix.S_IFDIR && (merged || s.FollowRedirects) {
				// Its number is its lower part's, which a merge or a redirect may give it.
				fullResolve = append(fullResolve, len(out))
			}
			out = append(out, Entry{Name: e.Name, Mode: typ, Ino: ino})
			from = append(from, pi)
			if limit > 0 && len(out) >= limit {
				break
			}
		}
		if opened {
			d.Release()
		}
		for _, name := range aufs {
			hiddenBelow[name] = true
		}
		if limit > 0 && len(out) >= limit {
			break
		}
	}
	if len(fullResolve) > 0 {
		dirs := s.NewDirs(parts)
		defer dirs.Release()
		for _, i := range fullResolve {
			res, errno := s.Resolve(dirs, out[i].Name)
			if errno == 0 {
				out[i].Ino = res.Ino
			}
		}
	}
	return out, from, 0
}
