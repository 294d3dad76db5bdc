package unionfs

import "testing"

// TestRedirectWalkKept: a kept walk of the upper's redirects stays good across renames that
// neither make a redirect nor move a directory it found (or one holding such a directory),
// and no longer after one that does.
func TestRedirectWalkKept(t *testing.T) {
	var r redirectedDirs
	kept := func() bool { w := r.found.Load(); return w != nil && w.gen == r.moves.Load() }
	r.dirMoved(false, "a")
	if kept() {
		t.Fatal("kept before any walk")
	}
	r.found.Store(&redirectWalk{paths: []string{"x/moved", "y"}, gen: r.moves.Load()})
	for _, moved := range [][]string{{"a"}, {"x/move"}, {"yy"}, {"a", "b/c"}} {
		r.dirMoved(false, moved...)
		if !kept() {
			t.Fatalf("a rename of %q dropped the walk", moved)
		}
	}
	for _, c := range []struct {
		sets  bool
		moved []string
	}{{false, []string{"x"}}, {false, []string{"x/moved"}}, {false, []string{"a", "y"}}, {true, []string{"a"}}} {
		r.found.Store(&redirectWalk{paths: []string{"x/moved", "y"}, gen: r.moves.Load()})
		r.dirMoved(c.sets, c.moved...)
		if kept() {
			t.Errorf("a rename of %q (redirect made: %v) kept the walk", c.moved, c.sets)
		}
	}
}
