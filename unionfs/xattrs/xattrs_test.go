package xattrs

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestGetList reads values and lists longer than the first buffer through a directory
// descriptor (ext4 holds at most a block of attributes per inode), and follows only the
// descriptor's own link.
func TestGetList(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "f")
	if err := os.WriteFile(f, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := unix.Setxattr(f, "user.probe", []byte("x"), 0); errors.Is(err, unix.ENOTSUP) {
		t.Skip("the temporary directory's filesystem takes no user.* attributes (tmpfs before 6.6)")
	}
	big := bytes.Repeat([]byte("v"), 2000)
	want := map[string][]byte{"user.small": []byte("s"), "user.big": big}
	var names []string
	for i := 0; i < 20; i++ {
		n := "user.name-" + strings.Repeat("n", 20) + string(rune('a'+i%26)) + string(rune('a'+i/26))
		want[n] = []byte{byte(i)}
	}
	for n, v := range want {
		if err := unix.Setxattr(f, n, v, 0); err != nil {
			t.Fatal(err)
		}
		names = append(names, n)
	}
	names = append(names, "user.probe")
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	p := Path(fd, "f")
	for n, v := range want {
		got, err := Get(p, n, Follows("f"))
		if err != nil || !bytes.Equal(got, v) {
			t.Errorf("Get %s: %d bytes, %v; want %d bytes", n, len(got), err, len(v))
		}
	}
	got, err := List(p, false)
	sort.Strings(got)
	sort.Strings(names)
	if err != nil || strings.Join(got, ",") != strings.Join(names, ",") {
		t.Errorf("List: %v %v, want %v", got, err, names)
	}
	if _, err := Get(p, "user.none", false); !errors.Is(err, unix.ENODATA) {
		t.Errorf("Get of a missing attribute: %v, want ENODATA", err)
	}
	// The directory itself, through its magic link.
	if err := unix.Setxattr(dir, "user.d", []byte("dir"), 0); err != nil {
		t.Fatal(err)
	}
	if v, err := Get(Path(fd, ""), "user.d", Follows("")); err != nil || string(v) != "dir" {
		t.Errorf("Get of the directory itself: %q %v", v, err)
	}
}
