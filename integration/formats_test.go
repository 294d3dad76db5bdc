package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
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

// TestCorruptMarkersReadAsKernel: markers with values the kernel does not expect (a character
// device that is not 0/0, opaque values other than "y" and "x", an opaque attribute on a
// file, redirects that lead nowhere or are malformed, garbage origin and nlink attributes) are
// read as the kernel's overlayfs reads them.
func TestCorruptMarkersReadAsKernel(t *testing.T) {
	needMounts(t)
	root := t.TempDir()
	a := filepath.Join(root, "a")
	st := stack{Lowers: []string{a + "/l1", a + "/l2"}, Upper: a + "/u", Work: a + "/w"}
	mkdir(t, a, "w")
	l2, l1, u := builder{t, st.Lowers[1]}, builder{t, st.Lowers[0]}, builder{t, st.Upper}
	for _, v := range []string{"n", "Y", "yes", "empty", "x", "y"} {
		l2.file("op-"+v+"/below", "b", 0o644)
		u.file("op-"+v+"/above", "a", 0o644)
		val := v
		if v == "empty" {
			val = ""
		}
		u.xattr("op-"+v, "trusted.overlay.opaque", val)
	}
	l2.file("dev01", "lower dev01", 0o644)
	must(t, unix.Mknod(u.p("dev01"), unix.S_IFCHR, int(unix.Mkdev(0, 1))))
	l2.file("dev10", "lower dev10", 0o644)
	must(t, unix.Mknod(u.p("dev10"), unix.S_IFCHR, int(unix.Mkdev(1, 0))))
	l2.file("blk00", "lower blk00", 0o644)
	must(t, unix.Mknod(u.p("blk00"), unix.S_IFBLK, 0))
	l2.file("fopq", "lower", 0o644)
	u.file("fopq", "upper", 0o644)
	u.xattr("fopq", "trusted.overlay.opaque", "y")
	l1.file("xw/f", "f", 0o644)
	u.file("xw/g", "g", 0o644)
	u.xattr("xw", "trusted.overlay.opaque", "x") // says "look for xattr whiteouts", has none
	l2.file("target/t", "t", 0o644)
	for name, redirect := range map[string]string{"r-missing": "nowhere", "r-abs-missing": "/no/where",
		"r-slash": "a/b", "r-dotdot": "..", "r-empty": "", "r-abs-ok": "/target"} {
		u.file(name+"/own", "own", 0o644)
		u.xattr(name, "trusted.overlay.redirect", redirect)
	}
	u.file("orig", "o", 0o644)
	u.xattr("orig", "trusted.overlay.origin", "garbage")
	u.file("nl", "n", 0o644)
	u.xattr("nl", "trusted.overlay.nlink", "U+zz")
	// A whiteout inside an opaque lower directory with nothing below to merge: the kernel
	// lists it (lstat then fails), layerfs hides it; README, "What differs".
	l1.file("opq-lower/keep", "k", 0o644)
	l1.whiteout("opq-lower/wh")
	l1.xattr("opq-lower", "trusted.overlay.opaque", "y")
	l1.settle()
	l2.settle()
	u.settle()
	copyTree(t, a, filepath.Join(root, "b"))
	kst := rebase(st, a, filepath.Join(root, "b"))

	kmnt, lmnt := mkdir(t, root, "kernel"), mkdir(t, root, "layerfs")
	mountKernel(t, kst, kmnt)
	mountLayerfs(t, st, lmnt)
	want, got := walkWithErrors(kmnt), walkWithErrors(lmnt)
	if want["opq-lower/wh"] != "lstat: ENOENT" || got["opq-lower/wh"] != "" {
		t.Errorf("whiteout in an opaque lower directory: kernel %q, %s %q; want the kernel to list it and layerfs not",
			want["opq-lower/wh"], testedName(), got["opq-lower/wh"])
	}
	delete(want, "opq-lower/wh")
	for _, p := range sortedKeys2(want, got) {
		if want[p] != got[p] {
			t.Errorf("%s: kernel %q, %s %q", p, want[p], testedName(), got[p])
		}
	}
	if len(want) < 20 {
		t.Errorf("the kernel shows %d names; the stack was not built right", len(want))
	}
}

// walkWithErrors describes every name below root (type, size, contents of small files), and
// what failed where something did.
func walkWithErrors(root string) map[string]string {
	out := map[string]string{}
	var walk func(rel string)
	walk = func(rel string) {
		ents, err := os.ReadDir(filepath.Join(root, rel))
		if err != nil {
			out[rel+"/"] = "readdir: " + errName(err)
			return
		}
		for _, e := range ents {
			p := filepath.Join(rel, e.Name())
			var st unix.Stat_t
			if err := unix.Lstat(filepath.Join(root, p), &st); err != nil {
				out[p] = "lstat: " + errName(err)
				continue
			}
			desc := fmt.Sprintf("%s %o rdev %d:%d", typeName(st.Mode), st.Mode&0o7777, unix.Major(st.Rdev), unix.Minor(st.Rdev))
			if st.Mode&unix.S_IFMT == unix.S_IFREG {
				data, err := os.ReadFile(filepath.Join(root, p))
				desc += fmt.Sprintf(" %q %v", data, err)
			}
			out[p] = desc
			if e.IsDir() {
				walk(p)
			}
		}
	}
	walk("")
	return out
}

func sortedKeys2(a, b map[string]string) []string {
	seen := map[string]bool{}
	var keys []string
	for _, m := range []map[string]string{a, b} {
		for k := range m {
			if !seen[k] {
				seen[k] = true
				keys = append(keys, k)
			}
		}
	}
	sort.Strings(keys)
	return keys
}
