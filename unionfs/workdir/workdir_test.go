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
	os.MkdirAll(filepath.Join(dir, "x/y/z"), 0o755)
	os.WriteFile(filepath.Join(dir, "x/y/file"), nil, 0o644)
	os.Symlink(outside, filepath.Join(dir, "x/escape"))
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
	fd, err := Open(wd)
	if err != nil {
		t.Fatal(err)
	}
	a, b := TempName(), TempName()
	if a == b || !strings.HasPrefix(a, "#layerfs-") {
		t.Errorf("temporary names %q %q", a, b)
	}
	os.WriteFile(filepath.Join(wd, Name, a), []byte("half"), 0o644)
	os.MkdirAll(filepath.Join(wd, Name, b, "deep"), 0o755)
	names, _ := ReadNames(fd)
	sort.Strings(names)
	if len(names) != 2 {
		t.Fatalf("work holds %v", names)
	}
	unix.Close(fd)
	fd, err = Open(wd)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if names, _ := ReadNames(fd); len(names) != 0 {
		t.Errorf("Open left %v", names)
	}
}
