package unionfs

import (
	"fmt"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// Over /dev/fuse the server runs Go code on one processor while requests come one at a time,
// which is what makes a round trip cheap (cmd/layerfs, serve.go), and on every processor while
// callers make requests at once (parallel walkers, a parallel build), which then need not
// wait for one another's system calls on the one processor. The signal is requests served at
// the same time: the hooks below count the requests that start while another is being served.
// READ, RELEASE and FORGET are not counted: one reader's read-ahead and a closing file's
// RELEASE overlap the next request without a second caller.

// load counts the requests being served and the overlaps between them, and the requests
// served, READs and WRITEs too (idle.go).
type load struct {
	inFlight atomic.Int32
	overlaps atomic.Uint32
	served   atomic.Uint64
	// wake tells AdaptProcs's controller an overlap came; made with the hooks, buffered (a
	// send to a nil one, in a test, goes nowhere).
	wake chan struct{}
}

// enter starts counting a request; leave must follow.
func (l *load) enter() {
	l.served.Add(1)
	if l.inFlight.Add(1) > 1 {
		if l.overlaps.Add(1) == 1 {
			select {
			case l.wake <- struct{}{}:
			default:
			}
		}
	}
}

// leave ends counting a request.
func (l *load) leave() { l.inFlight.Add(-1) }

const (
	// procsTick is how often the controller looks at the overlaps while it is awake.
	procsTick = 10 * time.Millisecond
	// overlapsUp in one tick turn every processor on.
	overlapsUp = 4
	// quietTicks in a row with fewer than overlapsUp turn them off again.
	quietTicks = 20
)

// AdaptProcs runs the server's Go code on one processor while requests come one at a time
// and on max processors while they overlap, until the server is unmounted. It sleeps while
// the server is idle.
func (s *Server) AdaptProcs(max int) {
	l := &s.raw.load
	runtime.GOMAXPROCS(1)
	if max <= 1 {
		return
	}
	go func() {
		for {
			select {
			case <-l.wake:
			case <-s.done:
				return
			}
			procs, quiet := 1, 0
			t := time.NewTicker(procsTick)
			for quiet < quietTicks {
				select {
				case <-t.C:
				case <-s.done:
					t.Stop()
					return
				}
				busy := l.overlaps.Swap(0) >= overlapsUp
				switch {
				case busy && procs == 1:
					procs = max
					runtime.GOMAXPROCS(procs)
					s.debugf("layerfs: Go processors: %d (requests overlap)", procs)
					quiet = 0
				case busy:
					quiet = 0
				default:
					quiet++
				}
			}
			t.Stop()
			if procs != 1 {
				runtime.GOMAXPROCS(1)
				s.debugf("layerfs: Go processors: 1 (requests one at a time)")
			}
			l.overlaps.Store(0)
		}
	}()
}

// debugf writes a line to the --debug trace, if there is one.
func (s *Server) debugf(format string, args ...any) {
	if s.u.cfg.Debug && s.u.cfg.DebugLog != nil {
		fmt.Fprintf(s.u.cfg.DebugLog, format+"\n", args...)
	}
}

// Lookup is counted in the server's load; an object whose birth time the kernel holds stale
// is not cached (statx.go).
func (h *hookedFS) Lookup(cancel <-chan struct{}, header *fuse.InHeader, name string, out *fuse.EntryOut) fuse.Status {
	h.load.enter()
	defer h.load.leave()
	st := h.RawFileSystem.Lookup(cancel, header, name, out)
	noCache(&out.AttrValid, &out.AttrValidNsec)
	return st
}

// Open is counted in the server's load.
func (h *hookedFS) Open(cancel <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	h.load.enter()
	defer h.load.leave()
	return h.RawFileSystem.Open(cancel, in, out)
}

// Read is counted as activity only (idle.go): one reader's read-ahead overlaps itself.
func (h *hookedFS) Read(cancel <-chan struct{}, in *fuse.ReadIn, buf []byte) (fuse.ReadResult, fuse.Status) {
	h.load.served.Add(1)
	return h.RawFileSystem.Read(cancel, in, buf)
}

// GetXAttr is counted in the server's load.
func (h *hookedFS) GetXAttr(cancel <-chan struct{}, header *fuse.InHeader, attr string, dest []byte) (uint32, fuse.Status) {
	h.load.enter()
	defer h.load.leave()
	return h.RawFileSystem.GetXAttr(cancel, header, attr, dest)
}
