package uring

import (
	"encoding/binary"
	"errors"
	"runtime"
	"testing"
)

func TestParseCPUList(t *testing.T) {
	for in, want := range map[string]int{"0": 1, "0-1\n": 2, "0-3,8": 9, "0,2-5": 6} {
		if got, err := parseCPUList(in); err != nil || got != want {
			t.Errorf("parseCPUList(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "a", "0-x"} {
		if _, err := parseCPUList(bad); err == nil {
			t.Errorf("parseCPUList(%q) accepted", bad)
		}
	}
}

// TestRingRoundTrip submits no-op entries and reaps their completions: the mapping of both
// rings, the tail and head handling and the 128-byte entries; both kinds of ring.
func TestRingRoundTrip(t *testing.T) {
	t.Run("shared", func(t *testing.T) { ringRoundTrip(t, false) })
	t.Run("single-issuer", func(t *testing.T) {
		runtime.LockOSThread() // such a ring answers only the thread that made it
		defer runtime.UnlockOSThread()
		ringRoundTrip(t, true)
	})
}

func ringRoundTrip(t *testing.T, single bool) {
	r, err := newRing(4, single)
	if errors.Is(err, errNoRing) {
		t.Skipf("no io_uring here: %v", err) // a seccomp profile or kernel.io_uring_disabled
	}
	if err != nil {
		t.Fatal(err)
	}
	defer r.close()
	for round := range 3 {
		for i := range 4 {
			sqe := r.nextSQE()
			if sqe == nil {
				t.Fatalf("round %d: ring full after %d entries", round, i)
			}
			sqe[0] = 0 // IORING_OP_NOP
			binary.LittleEndian.PutUint64(sqe[32:], uint64(100*round+i))
		}
		if r.nextSQE() != nil {
			t.Fatalf("round %d: a fifth entry in a ring of 4", round)
		}
		var got []cqe
		for len(got) < 4 {
			if err := r.enter(true); err != nil {
				t.Fatal(err)
			}
			got = r.reap(got)
		}
		seen := map[uint64]bool{}
		for _, c := range got {
			if c.res != 0 {
				t.Errorf("round %d: no-op %d completed with %d", round, c.userData, c.res)
			}
			seen[c.userData] = true
		}
		for i := range 4 {
			if !seen[uint64(100*round+i)] {
				t.Errorf("round %d: no completion for entry %d (got %v)", round, i, got)
			}
		}
	}
}
