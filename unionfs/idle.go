package unionfs

import (
	"runtime/debug"
	"time"
)

// An idle server gives back what its heap no longer uses. Go returns freed memory to the
// system slowly on its own (its scavenger keeps some above the heap's goal), and a server that
// walked a tree and went quiet, as most container mounts do most of the time, kept that
// until the next collection, which an idle server may not run for a long time. On a host with
// a mount per container this is what adds up.

// freeOSMemory is debug.FreeOSMemory; a test replaces it.
var freeOSMemory = debug.FreeOSMemory

// ReturnMemoryWhenIdle collects and returns the heap's free memory to the system once no
// request has come for idle after some did, until the server is unmounted. It looks once per
// idle period, however long the server stays idle.
func (s *Server) ReturnMemoryWhenIdle(idle time.Duration) {
	l := &s.raw.load
	go func() {
		t := time.NewTicker(idle)
		defer t.Stop()
		last, returned := l.served.Load(), true
		for {
			select {
			case <-t.C:
			case <-s.done:
				return
			}
			n := l.served.Load()
			switch {
			case n != last:
				returned = false
			case !returned:
				freeOSMemory()
				s.debugf("layerfs: idle: memory returned")
				returned = true
			}
			last = n
		}
	}()
}
