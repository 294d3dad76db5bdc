package integration

import (
	"os"
	"path/filepath"
	"testing"
)

// TestReadViewMatchesKernel mounts the same stack with the kernel and with layerfs and
// compares the whole observable tree entry by entry.
func TestReadViewMatchesKernel(t *testing.T) {
	needMounts(t)
	root := t.TempDir()
	st := buildReadStack(t, filepath.Join(root, "a"))
	copyTree(t, filepath.Join(root, "a"), filepath.Join(root, "b"))
	kst := rebase(st, filepath.Join(root, "a"), filepath.Join(root, "b"))

	kmnt, lmnt := mkdir(t, root, "kernel"), mkdir(t, root, "layerfs")
	mountKernel(t, kst, kmnt)
	mountLayerfs(t, st, lmnt)

	want := snapshot(t, kmnt, false)
	got := snapshot(t, lmnt, true)
	if len(want) < 30 {
		t.Fatalf("the kernel shows only %d names; the stack was not built right", len(want))
	}
	compareTrees(t, want, got)
}

func mkdir(t testing.TB, parent, name string) string {
	t.Helper()
	p := filepath.Join(parent, name)
	if err := os.MkdirAll(p, 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// rebase moves every directory of st from below oldRoot to below newRoot.
func rebase(st stack, oldRoot, newRoot string) stack {
	move := func(p string) string {
		if p == "" {
			return ""
		}
		rel, err := filepath.Rel(oldRoot, p)
		if err != nil {
			panic(err)
		}
		return filepath.Join(newRoot, rel)
	}
	out := stack{Upper: move(st.Upper), Work: move(st.Work)}
	for _, l := range st.Lowers {
		out.Lowers = append(out.Lowers, move(l))
	}
	return out
}
