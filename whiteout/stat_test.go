package whiteout

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// TestLstatIsFstatat: Lstat gives what fstatat gives, for every kind of object.
func TestLstatIsFstatat(t *testing.T) {
	dir := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(filepath.Join(dir, "f"), []byte("data"), 0o640))
	must(os.Mkdir(filepath.Join(dir, "d"), 0o755))
	must(os.Symlink("f", filepath.Join(dir, "l")))
	must(unix.Mkfifo(filepath.Join(dir, "p"), 0o600))
	if os.Geteuid() == 0 {
		must(unix.Mknod(filepath.Join(dir, "c"), unix.S_IFCHR|0o600, int(unix.Mkdev(1, 3))))
	}
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	must(err)
	defer unix.Close(fd)
	ents, err := os.ReadDir(dir)
	must(err)
	for _, e := range append(ents, nil) {
		name := "."
		if e != nil {
			name = e.Name()
		}
		var want, got unix.Stat_t
		must(unix.Fstatat(fd, name, &want, unix.AT_SYMLINK_NOFOLLOW))
		if _, err := Lstat(fd, name, &got); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got != want {
			t.Errorf("%s: Lstat\n %+v\nfstatat\n %+v", name, got, want)
		}
	}
	var st unix.Stat_t
	if _, err := Lstat(fd, "absent", &st); err != unix.ENOENT {
		t.Errorf("absent: %v, want ENOENT", err)
	}
}
