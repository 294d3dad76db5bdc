package unionfs

import (
	"syscall"
	"unsafe"

	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/layerfs/layerfs/whiteout"
	"golang.org/x/sys/unix"
)

// dirent is one entry of one layer directory, as getdents gives it.
type dirent struct {
	name string
	ino  uint64
	typ  uint8
}

// readDirents lists directory rel of the layer with getdents64, keeping d_ino and d_type so
// that a listing needs no stat per entry.
func (l *layer) readDirents(rel string) ([]dirent, error) {
	fd, err := l.openNoatime(rel, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	var out []dirent
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
				out = append(out, dirent{name: s, ino: d.Ino, typ: d.Type})
			}
			off += int(d.Reclen)
		}
	}
}

// readNames lists directory rel of the layer, without "." and "..".
func (l *layer) readNames(rel string) ([]string, error) {
	ents, err := l.readDirents(rel)
	names := make([]string, len(ents))
	for i, e := range ents {
		names[i] = e.name
	}
	return names, err
}

// mergedEntries lists the merged directory whose layer directories are parts, applying the
// lookup rules to the layer listings themselves: the topmost entry of a name decides, a
// whiteout (char 0/0, ".wh.<name>" in a layer above, or an xattr whiteout in a directory marked
// opaque=x, as the kernel lists them) hides it, and d_ino is what stat gives. Only entries
// that need it are stat'ed (character devices, candidate xattr whiteouts); an upper directory
// is resolved in full for its number (a merge or a redirect may give it a lower one). With
// limit > 0 it stops after that many entries.
func (u *unionFS) mergedEntries(parts []part, limit int) ([]fuse.DirEntry, syscall.Errno) {
	out, _, errno := u.mergedEntriesFrom(parts, limit)
	return out, errno
}

// mergedEntriesFrom is mergedEntries that also says, for each entry, which of parts holds
// its topmost object.
func (u *unionFS) mergedEntriesFrom(parts []part, limit int) ([]fuse.DirEntry, []int, syscall.Errno) {
	decided := map[string]bool{} // names already shown or hidden by a higher layer
	hiddenBelow := map[string]bool{}
	var out []fuse.DirEntry
	var from []int
	var fullResolve []int // indexes into out of upper directories in a merged directory
	merged := len(parts) > 1
	for pi, p := range parts {
		l := u.layers[p.layer]
		ents, err := l.readDirents(p.path)
		if err != nil {
			if missing(err) {
				continue
			}
			return nil, nil, toErrno(err)
		}
		var d dirFD
		opened := false
		dir := func() (int, error) {
			if !opened {
				var err error
				if d, err = l.openDir(p.path); err != nil {
					return -1, err
				}
				opened = true
			}
			return d.fd, nil
		}
		xwhiteouts := false
		if !l.upper {
			if fd, err := dir(); err == nil {
				info, _ := whiteout.ReadDirInfo(fd, "")
				xwhiteouts = info.XWhiteouts
			}
		}
		var aufs []string
		for _, e := range ents {
			if whiteout.IsMarkerName(e.name) {
				if hidden, ok := whiteout.HiddenName(e.name); ok {
					aufs = append(aufs, hidden)
				}
				continue
			}
			if decided[e.name] {
				continue
			}
			decided[e.name] = true
			if hiddenBelow[e.name] {
				continue
			}
			typ := uint32(e.typ) << 12 // DT_* are the S_IF* type bits shifted down
			var st unix.Stat_t
			needStat := e.typ == unix.DT_UNKNOWN || e.typ == unix.DT_CHR ||
				(xwhiteouts && e.typ == unix.DT_REG)
			if needStat {
				fd, err := dir()
				if err != nil {
					return nil, nil, toErrno(err)
				}
				if err := unix.Fstatat(fd, e.name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
					if missing(err) {
						continue
					}
					return nil, nil, toErrno(err)
				}
				typ = st.Mode & unix.S_IFMT
				// An attribute that cannot be read leaves the entry shown.
				if c, _ := whiteout.ClassifyStat(fd, e.name, &st, whiteout.ListingRule(l.upper, xwhiteouts)); c.Kind == whiteout.Whiteout {
					continue
				}
			}
			if typ == unix.S_IFREG && l.overrideXattr != "" {
				if fd, err := dir(); err == nil {
					if t, ok := u.overrideType(l, fd, e.name); ok {
						typ = t // a file standing in for a device, fifo or socket
					}
				}
			}
			ino := u.inoOf(l, e.ino)
			if l.upper && typ != unix.S_IFDIR {
				if fd, err := dir(); err == nil {
					if o, ok := u.readOriginAny(fd, e.name); ok {
						ino = o
					}
				}
			}
			if l.upper && typ == unix.S_IFDIR && (merged || u.cfg.RedirectDir != RedirectNoFollow) {
				// Its number is its lower part's, which a merge or a redirect may give it.
				fullResolve = append(fullResolve, len(out))
			}
			out = append(out, fuse.DirEntry{Name: e.name, Mode: typ, Ino: ino})
			from = append(from, pi)
			if limit > 0 && len(out) >= limit {
				break
			}
		}
		if opened {
			d.release()
		}
		for _, name := range aufs {
			hiddenBelow[name] = true
		}
		if limit > 0 && len(out) >= limit {
			break
		}
	}
	if len(fullResolve) > 0 {
		dirs := u.newParentDirs(parts)
		defer dirs.release()
		for _, i := range fullResolve {
			res, errno := u.resolve(dirs, out[i].Name)
			if errno == 0 {
				out[i].Ino = res.ino
			}
		}
	}
	return out, from, 0
}
