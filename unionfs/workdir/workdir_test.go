package workdir

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestRemoveAll removes a tree without following the symlinks in it.
func TestRemoveAll(t *testing.T) {
	dir, outside := t.TempDir(), t.TempDir()
	keep := filepath.Join(outside, "keep")
	if err := os.WriteFile(keep, []byte("k"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, err := range []error{
		os.MkdirAll(filepath.Join(dir, "x/y/z"), 0o755),
		os.WriteFile(filepath.Join(dir, "x/y/file"), nil, 0o644),
		os.Symlink(outside, filepath.Join(dir, "x/escape")),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if err := RemoveAll(fd, "x"); err != nil {
		t.Fatal(err)
	}
	if names, _ := ReadNames(fd); len(names) != 0 {
		t.Errorf("left %v", names)
	}
	if _, err := os.Stat(keep); err != nil {
		t.Errorf("RemoveAll followed a symlink: %v", err)
	}
	if err := RemoveAll(fd, "gone"); err != nil {
		t.Errorf("RemoveAll of a missing name: %v", err)
	}
}

// TestOpenCleans: Open makes workdir/work and removes what a crash left there; TempName
// gives names that do not repeat.
func TestOpenCleans(t *testing.T) {
	wd := t.TempDir()
	d, err := Open(wd)
	if err != nil {
		t.Fatal(err)
	}
	a, b := TempName(), TempName()
	if a == b || !strings.HasPrefix(a, "#layerfs-") {
		t.Errorf("temporary names %q %q", a, b)
	}
	if err := os.WriteFile(filepath.Join(wd, Name, a), []byte("half"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(wd, Name, b, "deep"), 0o755); err != nil {
		t.Fatal(err)
	}
	names, _ := ReadNames(d.FD)
	sort.Strings(names)
	if len(names) != 2 {
		t.Fatalf("work holds %v", names)
	}
	unix.Close(d.FD)
	d, err = Open(wd)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(d.FD)
	if names, _ := ReadNames(d.FD); len(names) != 0 {
		t.Errorf("Open left %v", names)
	}
}

// TestDiscardKeep: Discard takes a tree away in one step and leaves nothing in work; Keep
// holds an object by a second name after its first goes, until Drop.
func TestDiscardKeep(t *testing.T) {
	wd, upper := t.TempDir(), t.TempDir()
	d, err := Open(wd)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(d.FD)
	up, err := unix.Open(upper, unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(up)
	if err := os.MkdirAll(filepath.Join(upper, "tree", "a", "b"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := d.Discard(up, "tree"); err != nil {
		t.Fatalf("Discard: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(upper, "tree")); !os.IsNotExist(err) {
		t.Errorf("tree still there: %v", err)
	}
	if err := os.WriteFile(filepath.Join(upper, "f"), []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	kept, err := d.Keep(up, "f")
	if err != nil {
		t.Fatalf("Keep: %v", err)
	}
	if err := os.Remove(filepath.Join(upper, "f")); err != nil {
		t.Fatal(err)
	}
	if data, err := os.ReadFile(filepath.Join(wd, Name, kept)); string(data) != "data" {
		t.Errorf("kept object: %q, %v", data, err)
	}
	d.Drop(kept)
	if names, _ := ReadNames(d.FD); len(names) != 0 {
		t.Errorf("work holds %v", names)
	}
}
