package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// convertMarkers rewrites every marker below each layer of st into another format, then gives
// everything the fixed timestamp again.
func convertMarkers(t testing.TB, st stack, toAufs bool) {
	t.Helper()
	layers := append([]string{}, st.Lowers...)
	if st.Upper != "" {
		layers = append(layers, st.Upper)
	}
	for _, l := range layers {
		var paths []string
		err := filepath.Walk(l, func(p string, fi os.FileInfo, err error) error {
			paths = append(paths, p)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		// Deepest first, so a directory is converted after its entries.
		for i := len(paths) - 1; i >= 0; i-- {
			convertOne(t, paths[i], toAufs)
		}
		builder{t, l}.settle()
	}
}

func convertOne(t testing.TB, p string, toAufs bool) {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	get := func(name string) (string, bool) {
		buf := make([]byte, 256)
		n, err := unix.Lgetxattr(p, name, buf)
		if err != nil {
			return "", false
		}
		return string(buf[:n]), true
	}
	mustDo := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	dir, name := filepath.Split(p)
	if !toAufs {
		for _, attr := range []string{"opaque", "whiteout"} {
			if v, ok := get("trusted.overlay." + attr); ok {
				mustDo(unix.Lsetxattr(p, "user.overlay."+attr, []byte(v), 0))
				mustDo(unix.Lremovexattr(p, "trusted.overlay."+attr))
			}
		}
		return
	}
	switch {
	case st.Mode&unix.S_IFMT == unix.S_IFCHR && st.Rdev == 0:
		mustDo(os.Remove(p))
		mustDo(os.WriteFile(filepath.Join(dir, ".wh."+name), nil, 0o444))
	case st.Mode&unix.S_IFMT == unix.S_IFREG:
		if _, ok := get("trusted.overlay.whiteout"); ok && st.Size == 0 {
			mustDo(os.Remove(p))
			mustDo(os.WriteFile(filepath.Join(dir, ".wh."+name), nil, 0o444))
		}
	case st.Mode&unix.S_IFMT == unix.S_IFDIR:
		if v, ok := get("trusted.overlay.opaque"); ok {
			mustDo(unix.Lremovexattr(p, "trusted.overlay.opaque"))
			if v == "y" {
				mustDo(os.WriteFile(filepath.Join(p, ".wh..wh..opq"), nil, 0o444))
			}
		}
	}
}

// TestUserXattrFormatMatchesKernel: user.overlay.* markers (the kernel's userxattr mode, what
// rootless tools write) read the same under layerfs as under the kernel with userxattr.
func TestUserXattrFormatMatchesKernel(t *testing.T) {
	needMounts(t)
	root := t.TempDir()
	st := buildReadStack(t, filepath.Join(root, "a"))
	convertMarkers(t, st, false)
	copyTree(t, filepath.Join(root, "a"), filepath.Join(root, "b"))
	kst := rebase(st, filepath.Join(root, "a"), filepath.Join(root, "b"))

	kmnt, lmnt := mkdir(t, root, "kernel"), mkdir(t, root, "layerfs")
	mountKernel(t, kst, kmnt, "userxattr")
	mountLayerfs(t, st, lmnt)
	want := snapshot(t, kmnt, false)
	if _, ok := want["opq/old1"]; ok {
		t.Fatal("the kernel did not read user.overlay.opaque; the test stack is wrong")
	}
	compareTrees(t, want, snapshot(t, lmnt, true))
}

// TestAufsFormatMatchesKernel: a stack in the AUFS/OCI layout (".wh.<name>" files and
// ".wh..wh..opq"), as containers/storage unpacks layers for mount programs, shows under layerfs
// what the same stack with the kernel's markers shows under the kernel. The kernel does not read
// the AUFS format itself, hence the two copies.
func TestAufsFormatMatchesKernel(t *testing.T) {
	needMounts(t)
	root := t.TempDir()
	st := buildReadStack(t, filepath.Join(root, "a"))
	copyTree(t, filepath.Join(root, "a"), filepath.Join(root, "b"))
	kst := rebase(st, filepath.Join(root, "a"), filepath.Join(root, "b"))
	convertMarkers(t, st, true)
	if _, err := os.Stat(filepath.Join(root, "a/l2/.wh.b")); err != nil {
		t.Fatalf("conversion did not write AUFS whiteouts: %v", err)
	}

	kmnt, lmnt := mkdir(t, root, "kernel"), mkdir(t, root, "layerfs")
	mountKernel(t, kst, kmnt)
	mountLayerfs(t, st, lmnt)
	want := snapshot(t, kmnt, false)
	got := snapshot(t, lmnt, true)
	for p := range got {
		if strings.HasPrefix(filepath.Base(p), ".wh.") {
			t.Errorf("marker %s shows in the merged view", p)
		}
	}
	compareTrees(t, want, got)
}
