package unionfs

import (
	"runtime/debug"
	"syscall"
	"time"
)

// An idle server gives back what its heap no longer uses. Go returns freed memory to the
// system slowly on its own (its scavenger keeps some above the heap's goal), and a server that
// walked a tree and went quiet, as most container mounts do most of the time, kept that
// until the next collection, which an idle server may not run for a long time. On a host with
// a mount per container this is what adds up.

// freeOSMemory is debug.FreeOSMemory and pruneNodes Server.prune; a test replaces them.
var (
	freeOSMemory = debug.FreeOSMemory
	pruneNodes   = (*Server).prune
)

// ReturnMemoryWhenIdle collects and returns the heap's free memory to the system once no
// request has come for idle after some did, until the server is unmounted; it does so once per
// idle period, however long the server stays idle. Once pruneAfter has passed without
// requests (0: never) it also asks the kernel to forget the inodes nothing uses (prune.go),
// and returns the memory their nodes held once the kernel's FORGETs have come.
func (s *Server) ReturnMemoryWhenIdle(idle, pruneAfter time.Duration) {
	l := &s.raw.load
	tick := idle
	if pruneAfter > 0 {
		tick = min(idle, pruneAfter)
	}
	go func() {
		t := time.NewTicker(tick)
		defer t.Stop()
		last, returned, pruned := l.served.Load(), true, true
		var quiet time.Duration
		for {
			select {
			case <-t.C:
			case <-s.done:
				return
			}
			if n := l.served.Load(); n != last {
				last, returned, pruned, quiet = n, false, false, 0
				continue
			}
			quiet += tick
			switch {
			case !pruned && pruneAfter > 0 && quiet >= pruneAfter:
				pruned = true
				n, errno := pruneNodes(s)
				if errno == syscall.ENOSYS {
					s.debugf("layerfs: idle: the kernel cannot be asked to forget (no FUSE_NOTIFY_PRUNE)")
					pruneAfter = 0
					break
				}
				if errno != 0 {
					s.debugf("layerfs: idle: asking the kernel to forget failed after %d inodes: %v", n, errno)
				} else {
					s.debugf("layerfs: idle: asked the kernel to forget %d inodes", n)
				}
				// What the FORGETs free is returned at the next tick.
				returned = false
			case !returned && quiet >= idle:
				freeOSMemory()
				s.debugf("layerfs: idle: memory returned")
				returned = true
			}
		}
	}()
}
