package unionfs

import (
	"testing"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// TestNoCacheEntries: in a READDIRPLUS reply as go-fuse lays it out, every entry marked
// uncached, and only those, gets a zero attribute timeout, whatever its name's length.
func TestNoCacheEntries(t *testing.T) {
	l := fuse.NewDirEntryList(make([]byte, 4096), 0)
	var outs []*fuse.EntryOut
	for i, name := range []string{"a", "bcdefgh", "12345678", "a-longer-name-of-17", ".", "x"} {
		out := l.AddDirLookupEntry(fuse.DirEntry{Name: name, Mode: fuse.S_IFREG, Ino: uint64(i + 1)})
		if out == nil {
			t.Fatal("list full")
		}
		out.NodeId = uint64(i + 10)
		if i%2 == 0 {
			out.SetAttrTimeout(volatileTimeout)
		} else {
			out.SetAttrTimeout(cacheTimeout)
		}
		outs = append(outs, out)
	}
	noCacheEntries(l.Bytes())
	for i, out := range outs {
		if out.NodeId != uint64(i+10) {
			t.Fatalf("entry %d: node %d: the walk lost its place", i, out.NodeId)
		}
		want := cacheTimeout
		if i%2 == 0 {
			want = 0
		}
		if got := out.AttrTimeout(); got != want {
			t.Errorf("entry %d: attribute timeout %v, want %v", i, got, want)
		}
	}
}

// TestStaleBirths: marks count per object, and the set is empty again once each is cleared.
func TestStaleBirths(t *testing.T) {
	var s staleBirths
	if s.any() || s.has(7) {
		t.Fatal("new set not empty")
	}
	s.mark(7)
	s.mark(7)
	s.mark(9)
	s.clear(8) // never marked: nothing
	if !s.has(7) || !s.has(9) || s.has(8) {
		t.Fatalf("marks: 7 %v, 9 %v, 8 %v", s.has(7), s.has(9), s.has(8))
	}
	s.clear(7)
	s.clear(9)
	if !s.has(7) || s.has(9) {
		t.Fatalf("after one clear: 7 %v, 9 %v", s.has(7), s.has(9))
	}
	s.clear(7)
	if s.any() {
		t.Fatal("set not empty after every mark was cleared")
	}
}
