package unionfs

import (
	"sync"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// Directories are read without OPENDIR: the first OPENDIR is answered ENOSYS, after which the
// kernel opens directories itself (FUSE's no-opendir mode), keeps their listings
// (FOPEN_CACHE_DIR, as our handles asked) and sends READDIRPLUS without a handle. Walking a
// tree whose listings are cached then costs no round trip per directory instead of two
// (OPENDIR, RELEASEDIR). An error opening a directory's layers surfaces at the first read, as
// it did already (dirhandle.go loads on first read).
//
// go-fuse serves reads of a directory only through a handle, so the hooks open one per
// directory being read (dirStreams), through the bridge as the kernel would have: a read at
// offset 0 starts a new listing, later offsets continue it (or seek in a new one), and the
// handle is released at the end of the listing, when the kernel forgets the directory, or
// when too many are open.

// maxDirStreams bounds the handles kept for listings read part-way (a reader that stopped);
// each holds the directory's listing and its layer directories.
const maxDirStreams = 64

// dirStream is a handle of the bridge's, read for one directory at a time.
type dirStream struct {
	mu sync.Mutex
	fh uint64
	// gone is set when the handle was released while a read waited for it.
	gone bool
}

// dirStreams are the open handles, by node id.
type dirStreams struct {
	mu    sync.Mutex
	byID  map[uint64]*dirStream
	order []uint64 // node ids, oldest first, for eviction
}

// OpenDir says once that directories need no opening.
func (h *hookedFS) OpenDir(cancel <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	return fuse.ENOSYS
}

// ReadDirPlus reads a directory through a handle of its own; see dirStreams. An entry whose
// birth time the kernel holds stale is not cached (statx.go).
func (h *hookedFS) ReadDirPlus(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	before := len(out.Bytes())
	st := h.readDir(cancel, in, out, h.RawFileSystem.ReadDirPlus)
	if h.births != nil && h.births.any() {
		noCacheEntries(out.Bytes()[before:])
	}
	return st
}

// ReadDir reads a directory through a handle of its own; see dirStreams.
func (h *hookedFS) ReadDir(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	return h.readDir(cancel, in, out, h.RawFileSystem.ReadDir)
}

// Forget releases the handle of a directory the kernel forgets: go-fuse expects a node's
// handles to be closed by then.
func (h *hookedFS) Forget(nodeid, nlookup uint64) {
	h.streams.mu.Lock()
	s := h.streams.takeLocked(nodeid)
	h.streams.mu.Unlock()
	if s != nil {
		h.releaseStream(nodeid, s)
	}
	h.RawFileSystem.Forget(nodeid, nlookup)
}

type readDirFunc func(<-chan struct{}, *fuse.ReadIn, *fuse.DirEntryList) fuse.Status

func (h *hookedFS) readDir(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList, read readDirFunc) fuse.Status {
	h.load.enter()
	defer h.load.leave()
	if in.Fh != 0 {
		return read(cancel, in, out)
	}
	for {
		s, st := h.stream(cancel, in)
		if st != fuse.OK {
			return st
		}
		s.mu.Lock()
		if s.gone {
			s.mu.Unlock()
			continue
		}
		fin := *in
		fin.Fh = s.fh
		before := len(out.Bytes())
		st = read(cancel, &fin, out)
		s.mu.Unlock()
		if st == fuse.OK && len(out.Bytes()) == before {
			// The end of the listing: the kernel has it all.
			h.dropStream(in.NodeId, s)
		}
		return st
	}
}

// stream returns the directory's handle, opening one when there is none or when the read
// starts the listing over.
func (h *hookedFS) stream(cancel <-chan struct{}, in *fuse.ReadIn) (*dirStream, fuse.Status) {
	ss := &h.streams
	ss.mu.Lock()
	if s := ss.byID[in.NodeId]; s != nil && in.Offset != 0 {
		ss.mu.Unlock()
		return s, fuse.OK
	}
	ss.mu.Unlock()

	var oo fuse.OpenOut
	oin := fuse.OpenIn{InHeader: in.InHeader, Flags: syscall.O_RDONLY | syscall.O_DIRECTORY}
	if st := h.RawFileSystem.OpenDir(cancel, &oin, &oo); st != fuse.OK {
		return nil, st
	}
	s := &dirStream{fh: oo.Fh}
	var evict []uint64
	var evicted []*dirStream
	ss.mu.Lock()
	if ss.byID == nil {
		ss.byID = map[uint64]*dirStream{}
	}
	if old := ss.takeLocked(in.NodeId); old != nil {
		evict, evicted = append(evict, in.NodeId), append(evicted, old)
	}
	for len(ss.order) >= maxDirStreams {
		id := ss.order[0]
		evict, evicted = append(evict, id), append(evicted, ss.takeLocked(id))
	}
	ss.byID[in.NodeId] = s
	ss.order = append(ss.order, in.NodeId)
	ss.mu.Unlock()
	for i, old := range evicted {
		h.releaseStream(evict[i], old)
	}
	return s, fuse.OK
}

// takeLocked removes the node's handle from the table and returns it; mu must be held.
func (ss *dirStreams) takeLocked(id uint64) *dirStream {
	s := ss.byID[id]
	if s == nil {
		return nil
	}
	delete(ss.byID, id)
	for i, o := range ss.order {
		if o == id {
			ss.order = append(ss.order[:i], ss.order[i+1:]...)
			break
		}
	}
	return s
}

// dropStream releases the node's handle if it is still s.
func (h *hookedFS) dropStream(id uint64, s *dirStream) {
	h.streams.mu.Lock()
	if h.streams.byID[id] != s {
		h.streams.mu.Unlock()
		return
	}
	h.streams.takeLocked(id)
	h.streams.mu.Unlock()
	h.releaseStream(id, s)
}

// releaseStream closes a handle taken from the table, once no read uses it.
func (h *hookedFS) releaseStream(id uint64, s *dirStream) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gone {
		return
	}
	s.gone = true
	h.RawFileSystem.ReleaseDir(&fuse.ReleaseIn{InHeader: fuse.InHeader{NodeId: id}, Fh: s.fh})
}
