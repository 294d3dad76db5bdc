package whiteout

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// TestLstatIsFstatat: Lstat and StatBirth give what fstatat gives, for every kind of object,
// and StatBirth the birth time statx gives.
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
		birth, err := StatBirth(fd, name, unix.AT_SYMLINK_NOFOLLOW, &got)
		if err != nil {
			t.Fatalf("%s: StatBirth: %v", name, err)
		}
		if got != want {
			t.Errorf("%s: StatBirth\n %+v\nfstatat\n %+v", name, got, want)
		}
		var x unix.Statx_t
		must(unix.Statx(fd, name, unix.AT_SYMLINK_NOFOLLOW, unix.STATX_BTIME, &x))
		if known := x.Mask&unix.STATX_BTIME != 0; birth.Known != known || known && birth.Time != x.Btime {
			t.Errorf("%s: birth %+v, statx says %v %+v", name, birth, known, x.Btime)
		}
	}
	var st unix.Stat_t
	if _, err := Lstat(fd, "absent", &st); err != unix.ENOENT {
		t.Errorf("absent: %v, want ENOENT", err)
	}
	if _, err := StatBirth(fd, "absent", 0, &st); err != unix.ENOENT {
		t.Errorf("absent: StatBirth: %v, want ENOENT", err)
	}
	// A descriptor itself, as an open file whose name is gone is asked.
	var want unix.Stat_t
	must(unix.Fstat(fd, &want))
	if _, err := StatBirth(fd, "", unix.AT_EMPTY_PATH, &st); err != nil || st != want {
		t.Errorf("AT_EMPTY_PATH: %v\n %+v\nfstat\n %+v", err, st, want)
	}
}
