package unionfs

import (
	"runtime"
	"runtime/debug"
	"sync/atomic"
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
	s.ReturnMemoryWhenIdle(5 * time.Millisecond)
	l := &s.raw.load
	// Busy for 50 ms: requests back to back.
	for start := time.Now(); time.Since(start) < 50*time.Millisecond; {
		l.enter()
		l.leave()
		runtime.Gosched()
	}
	if n := returns.Load(); n != 0 {
		t.Fatalf("memory returned %d times while requests came", n)
	}
	waitFor(t, "memory returned once the requests stopped", func() bool { return returns.Load() == 1 })
	time.Sleep(50 * time.Millisecond) // ten idle periods: no second return
	if n := returns.Load(); n != 1 {
		t.Fatalf("memory returned %d times over one idle spell, want 1", n)
	}
}
