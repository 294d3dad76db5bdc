package unionfs

import (
	"context"
	"os"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/layerfs/layerfs/whiteout"
	"golang.org/x/sys/unix"
)

// mergedEntries lists the merged directory whose layer directories are parts. The
// candidates are every name in every contributing layer directory; each is then resolved
// exactly as Lookup resolves it, so a listing never shows a name that lookup hides (or the
// other way round), and d_ino equals st_ino. With limit > 0 it stops after that many entries.
func (u *unionFS) mergedEntries(parts []part, limit int) ([]fuse.DirEntry, syscall.Errno) {
	var candidates []string
	seen := map[string]bool{}
	for _, p := range parts {
		names, err := u.layers[p.layer].readNames(p.path)
		if err != nil {
			if missing(err) {
				continue
			}
			return nil, toErrno(err)
		}
		for _, name := range names {
			if seen[name] || whiteout.IsMarkerName(name) {
				continue
			}
			seen[name] = true
			candidates = append(candidates, name)
		}
	}
	dirs := u.newParentDirs(parts)
	defer dirs.release()
	var entries []fuse.DirEntry
	for _, name := range candidates {
		res, errno := u.resolve(dirs, name)
		if errno == syscall.ENOENT {
			continue
		}
		if errno != 0 {
			return nil, errno
		}
		entries = append(entries, fuse.DirEntry{Name: name, Mode: res.st.Mode & unix.S_IFMT, Ino: res.ino})
		if limit > 0 && len(entries) >= limit {
			break
		}
	}
	return entries, 0
}

// Readdir lists the merged directory, with "." and "..".
func (n *node) Readdir(ctx context.Context) (fs.DirStream, syscall.Errno) {
	list, errno := n.u.mergedEntries(n.parts(), 0)
	if errno != 0 {
		return nil, errno
	}
	self := n.StableAttr().Ino
	parentIno := self
	if _, p := n.Parent(); p != nil {
		parentIno = p.StableAttr().Ino
	}
	entries := make([]fuse.DirEntry, 0, len(list)+2)
	entries = append(entries,
		fuse.DirEntry{Name: ".", Mode: syscall.S_IFDIR, Ino: self},
		fuse.DirEntry{Name: "..", Mode: syscall.S_IFDIR, Ino: parentIno})
	return fs.NewListDirStream(append(entries, list...)), 0
}

// readNames lists directory rel of the layer, without "." and "..".
func (l *layer) readNames(rel string) ([]string, error) {
	fd, err := l.open(rel, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), rel)
	defer f.Close()
	return f.Readdirnames(-1)
}
