package unionfs

import (
	"context"
	"sync"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/layerfs/layerfs/unionfs/merge"
	"github.com/layerfs/layerfs/whiteout"
	"golang.org/x/sys/unix"
)

var (
	_ fs.NodeOpendirHandler = (*node)(nil)
	_ fs.FileReaddirenter   = (*dirHandle)(nil)
	_ fs.FileSeekdirer      = (*dirHandle)(nil)
	_ fs.FileLookuper       = (*dirHandle)(nil)
	_ fs.FileReleasedirer   = (*dirHandle)(nil)
	_ fs.FileFsyncdirer     = (*dirHandle)(nil)
)

// dirHandle is an open merged directory. Its listing is made once per open, and the kernel
// may keep it (FOPEN_CACHE_DIR): every change to the directory goes through this mount, which
// makes the kernel drop it. READDIRPLUS looks entries up through the handle, which knows from
// the listing which layer holds each name: a non-directory costs one stat there instead of a
// walk down the layers.
type dirHandle struct {
	n *node

	// mu guards the fields below (one request at a time reads a handle's listing); node.mu
	// may be taken under it.
	mu      sync.Mutex
	loaded  bool
	parts   []merge.Part
	merged  string          // the directory's merged path when listed
	entries []fuse.DirEntry // with "." and ".."; Off is the index of the next entry
	from    map[string]int  // name -> index in parts of its topmost object
	pos     int
	dirs    *merge.Dirs // the layer directories, opened on demand for READDIRPLUS
}

// OpendirHandle opens the merged directory.
func (n *node) OpendirHandle(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	return &dirHandle{n: n}, fuse.FOPEN_CACHE_DIR | fuse.FOPEN_KEEP_CACHE, 0
}

func (h *dirHandle) load() syscall.Errno {
	if h.loaded {
		return 0
	}
	h.parts = h.n.parts()
	h.merged = h.n.path()
	if h.dirs != nil {
		h.dirs.Release()
	}
	h.dirs = h.n.u.NewDirs(h.parts)
	list, from, errno := h.n.u.mergedEntriesFrom(h.parts, 0)
	if errno != 0 {
		return errno
	}
	self := h.n.StableAttr().Ino
	parentIno := self
	if _, p := h.n.Parent(); p != nil {
		parentIno = p.StableAttr().Ino
	}
	h.entries = make([]fuse.DirEntry, 0, len(list)+2)
	h.entries = append(h.entries,
		fuse.DirEntry{Name: ".", Mode: syscall.S_IFDIR, Ino: self},
		fuse.DirEntry{Name: "..", Mode: syscall.S_IFDIR, Ino: parentIno})
	h.entries = append(h.entries, list...)
	h.from = make(map[string]int, len(list))
	for i, e := range list {
		h.from[e.Name] = from[i]
	}
	for i := range h.entries {
		h.entries[i].Off = uint64(i + 1)
	}
	h.loaded = true
	return 0
}

// Readdirent returns the next entry, nil at the end.
func (h *dirHandle) Readdirent(ctx context.Context) (*fuse.DirEntry, syscall.Errno) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if errno := h.load(); errno != 0 {
		return nil, errno
	}
	if h.pos >= len(h.entries) {
		return nil, 0
	}
	e := h.entries[h.pos]
	h.pos++
	return &e, 0
}

// Seekdir moves to the entry after offset off (0 is the start).
func (h *dirHandle) Seekdir(ctx context.Context, off uint64) syscall.Errno {
	h.mu.Lock()
	defer h.mu.Unlock()
	if off == 0 {
		h.loaded, h.pos = false, 0 // rewinddir sees changes since, as with any directory
		return 0
	}
	if errno := h.load(); errno != 0 {
		return errno
	}
	if off > uint64(len(h.entries)) {
		off = uint64(len(h.entries))
	}
	h.pos = int(off)
	return 0
}

// Lookup answers READDIRPLUS for name, the entry just listed.
func (h *dirHandle) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	h.mu.Lock()
	defer h.mu.Unlock()
	pi, ok := h.from[name]
	if !ok {
		return h.n.Lookup(ctx, name, out)
	}
	p := h.parts[pi]
	l := h.n.u.Layers[p.Layer]
	dirfd, err := h.dirs.Get(pi)
	if err != nil {
		return h.n.Lookup(ctx, name, out)
	}
	var st unix.Stat_t
	attrs, err := whiteout.Lstat(dirfd, name, &st)
	if err != nil || isDirStat(&st) ||
		(l.Upper && st.Nlink > 1) || (!l.Upper && st.Nlink > 1 && h.n.u.kindex != nil) {
		// Directories merge, and hard links may have state elsewhere: the full way.
		return h.n.Lookup(ctx, name, out)
	}
	res := merge.Resolution{Parts: []merge.Part{{Layer: p.Layer, Path: merge.JoinPath(p.Path, name)}}, St: st, Ino: h.n.u.InoOf(l, st.Ino), Attrs: attrs}
	if l.Upper {
		ino, ok, facts := h.n.u.OriginIno(dirfd, name)
		if ok {
			res.Ino = ino
		}
		res.Xattrs = facts
	}
	return h.n.newChild(ctx, &res, merge.JoinPath(h.merged, name), out)
}

// Releasedir drops the listing and the layer directories.
func (h *dirHandle) Releasedir(ctx context.Context, releaseFlags uint32) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.dirs != nil {
		h.dirs.Release()
		h.dirs = nil
	}
}

// Fsyncdir flushes the upper part of the directory.
func (h *dirHandle) Fsyncdir(ctx context.Context, flags uint32) syscall.Errno {
	if !h.n.topLayer().Upper {
		return 0
	}
	fd, err := h.n.u.upper().Open(h.n.path(), unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return toErrno(err)
	}
	defer unix.Close(fd)
	return toErrno(unix.Fsync(fd))
}
