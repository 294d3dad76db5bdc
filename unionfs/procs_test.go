package unionfs

import (
	"runtime"
	"runtime/debug"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// waitFor polls cond until it holds or a generous deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestAdaptProcs: overlapping requests turn every processor on, a quiet spell turns them off,
// and the controller ends with the server.
func TestAdaptProcs(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	s := &Server{u: &unionFS{}, raw: &hookedFS{load: load{wake: make(chan struct{}, 1)}}, done: make(chan struct{})}
	s.AdaptProcs(3)
	if got := runtime.GOMAXPROCS(0); got != 1 {
		t.Fatalf("GOMAXPROCS %d at the start, want 1", got)
	}
	l := &s.raw.load
	// One request at a time: no overlap, however many.
	for range 1000 {
		l.enter()
		l.leave()
	}
	if l.overlaps.Load() != 0 {
		t.Fatalf("%d overlaps counted for requests one at a time", l.overlaps.Load())
	}
	// Two at once, again and again.
	stop := make(chan struct{})
	go func() {
		l.enter()
		defer l.leave()
		for {
			select {
			case <-stop:
				return
			default:
				l.enter()
				l.leave()
				time.Sleep(100 * time.Microsecond)
			}
		}
	}()
	waitFor(t, "GOMAXPROCS 3 under overlapping requests", func() bool { return runtime.GOMAXPROCS(0) == 3 })
	close(stop)
	waitFor(t, "GOMAXPROCS 1 once quiet", func() bool { return runtime.GOMAXPROCS(0) == 1 })
	close(s.done)
}

// TestReturnMemoryWhenIdle: memory is returned once after requests stop, not while they come
// and not again while the server stays idle.
func TestReturnMemoryWhenIdle(t *testing.T) {
	var returns atomic.Int32
	freeOSMemory = func() { returns.Add(1) }
	defer func() { freeOSMemory = debug.FreeOSMemory }()
	s := &Server{u: &unionFS{}, raw: &hookedFS{}, done: make(chan struct{})}
	defer close(s.done)
	s.ReturnMemoryWhenIdle(20*time.Millisecond, 0)
	l := &s.raw.load
	// Busy for 100 ms: requests back to back.
	for start := time.Now(); time.Since(start) < 100*time.Millisecond; {
		l.enter()
		l.leave()
		runtime.Gosched()
	}
	if n := returns.Load(); n != 0 {
		t.Fatalf("memory returned %d times while requests came", n)
	}
	waitFor(t, "memory returned once the requests stopped", func() bool { return returns.Load() == 1 })
	time.Sleep(200 * time.Millisecond) // ten idle periods: no second return
	if n := returns.Load(); n != 1 {
		t.Fatalf("memory returned %d times over one idle spell, want 1", n)
	}
}

// TestPruneWhenIdle: an idle server prunes once per idle spell, once pruneAfter has passed,
// and returns the memory after it; a kernel without FUSE_NOTIFY_PRUNE is not asked again.
func TestPruneWhenIdle(t *testing.T) {
	var returns, prunes, result atomic.Int32
	freeOSMemory = func() { returns.Add(1) }
	pruneNodes = func(*Server) (int, syscall.Errno) { prunes.Add(1); return 1, syscall.Errno(result.Load()) }
	defer func() { freeOSMemory, pruneNodes = debug.FreeOSMemory, (*Server).prune }()
	s := &Server{u: &unionFS{}, raw: &hookedFS{}, done: make(chan struct{})}
	defer close(s.done)
	s.ReturnMemoryWhenIdle(20*time.Millisecond, 60*time.Millisecond)
	l := &s.raw.load
	busy := func() { // requests for 100 ms: the loop sees some whenever it started
		for start := time.Now(); time.Since(start) < 100*time.Millisecond; runtime.Gosched() {
			l.enter()
			l.leave()
		}
	}
	busy()
	waitFor(t, "a prune", func() bool { return prunes.Load() == 1 })
	// Returned once before the prune (20 ms idle) and once after it.
	waitFor(t, "memory returned after the prune", func() bool { return returns.Load() == 2 })
	time.Sleep(200 * time.Millisecond) // ten idle periods: nothing more
	if p, r := prunes.Load(), returns.Load(); p != 1 || r != 2 {
		t.Fatalf("over one idle spell: %d prunes, %d returns; want 1 and 2", p, r)
	}
	// A new spell, on a kernel that cannot be asked: tried once, never again.
	result.Store(int32(syscall.ENOSYS))
	busy()
	waitFor(t, "a second prune", func() bool { return prunes.Load() == 2 })
	busy()
	waitFor(t, "memory returned in the third spell", func() bool { return returns.Load() == 4 })
	time.Sleep(100 * time.Millisecond)
	if p := prunes.Load(); p != 2 {
		t.Fatalf("pruned %d times, want no more after ENOSYS", p)
	}
}
