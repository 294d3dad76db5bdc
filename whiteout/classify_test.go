package whiteout

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// TestClassify: every whiteout format under the lookup and listing rules, on a real directory.
func TestClassify(t *testing.T) {
	dir := t.TempDir()
	w := func(name, data string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	w("file", "data")
	w("empty", "")
	w("xwh", "")
	if err := unix.Setxattr(filepath.Join(dir, "xwh"), UserPrefix+WhiteoutAttr, []byte("y"), 0); err != nil {
		if errors.Is(err, unix.ENOTSUP) {
			t.Skip("the temporary directory's filesystem takes no user.* attributes")
		}
		t.Fatal(err)
	}
	w(Prefix+"aufs", "")
	if err := unix.Mknod(filepath.Join(dir, "dev"), unix.S_IFCHR|0o600, 0); err != nil {
		t.Skipf("cannot make a 0/0 device here: %v", err)
	}
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	type want struct {
		kind   Kind
		format Format
	}
	cases := []struct {
		name string
		rule Rule
		want want
	}{
		{"file", LookupRule(false, true), want{Object, NoFormat}},
		{"sub", LookupRule(true, true), want{Object, NoFormat}},
		{"empty", LookupRule(false, true), want{Object, NoFormat}},
		{"dev", LookupRule(true, true), want{Whiteout, Device}},
		{"dev", ListingRule(false, false), want{Whiteout, Device}},
		// An xattr whiteout: honoured by a lower lookup anywhere, never in the upper, and in
		// a listing only in an opaque=x directory.
		{"xwh", LookupRule(false, false), want{Whiteout, Xattr}},
		{"xwh", LookupRule(true, true), want{Object, NoFormat}},
		{"xwh", ListingRule(false, true), want{Whiteout, Xattr}},
		{"xwh", ListingRule(false, false), want{Object, NoFormat}},
		// An AUFS marker deletes the name where layers below may hold it.
		{"aufs", LookupRule(false, true), want{Whiteout, Aufs}},
		{"aufs", LookupRule(true, true), want{Whiteout, Aufs}},
		{"aufs", LookupRule(false, false), want{Absent, NoFormat}},
		{"none", LookupRule(false, true), want{Absent, NoFormat}},
		{"file/below", LookupRule(false, true), want{Absent, NoFormat}}, // ENOTDIR
	}
	for _, c := range cases {
		e, err := Classify(fd, c.name, c.rule)
		if err != nil {
			t.Errorf("%s %+v: %v", c.name, c.rule, err)
			continue
		}
		if (want{e.Kind, e.Format}) != c.want {
			t.Errorf("%s %+v: kind %d format %d, want %+v", c.name, c.rule, e.Kind, e.Format, c.want)
		}
		if e.Kind == Object && e.Stat.Ino == 0 {
			t.Errorf("%s: an object without its stat", c.name)
		}
	}
}
