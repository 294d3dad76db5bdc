package override

import (
	"testing"

	"golang.org/x/sys/unix"
)

func TestParse(t *testing.T) {
	for _, c := range []struct {
		in   string
		ok   bool
		want Stat
		back string // String() of the result
	}{
		{"0:0:0755", true, Stat{Mode: 0o755}, "0:0:0755"},
		{"1000:100:4755", true, Stat{Uid: 1000, Gid: 100, Mode: 0o4755}, "1000:100:4755"},
		{"0:0:0666:char-1-3", true, Stat{Mode: 0o666, Type: unix.S_IFCHR, Rdev: unix.Mkdev(1, 3)}, "0:0:0666:char-1-3"},
		{"5:6:0600:block-8-1", true, Stat{Uid: 5, Gid: 6, Mode: 0o600, Type: unix.S_IFBLK, Rdev: unix.Mkdev(8, 1)}, "5:6:0600:block-8-1"},
		{"0:0:0644:file", true, Stat{Mode: 0o644, Type: unix.S_IFREG}, "0:0:0644"},
		{"0:0:0644:pipe", true, Stat{Mode: 0o644, Type: unix.S_IFIFO}, "0:0:0644:pipe"},
		{"0:0:100644", true, Stat{Mode: 0o644}, "0:0:0644"}, // type bits in the mode are dropped
		{"0:0", false, Stat{}, ""},
		{"a:0:0644", false, Stat{}, ""},
		{"0:0:0999", false, Stat{}, ""},
		{"0:0:0644:char-1", false, Stat{}, ""},
		{"0:0:0644:tape", false, Stat{}, ""},
		{"0:0:0644:x:y", false, Stat{}, ""},
	} {
		got, ok := Parse(c.in)
		if ok != c.ok || (ok && got != c.want) {
			t.Errorf("Parse(%q) = %+v, %v; want %+v, %v", c.in, got, ok, c.want, c.ok)
			continue
		}
		if ok && got.String() != c.back {
			t.Errorf("Parse(%q).String() = %q, want %q", c.in, got.String(), c.back)
		}
	}
}

func TestApply(t *testing.T) {
	st := unix.Stat_t{Mode: unix.S_IFREG | 0o600, Uid: 1000, Gid: 1000, Size: 0}
	Stat{Uid: 0, Gid: 0, Mode: 0o666, Type: unix.S_IFCHR, Rdev: unix.Mkdev(1, 3)}.Apply(&st)
	if st.Mode != unix.S_IFCHR|0o666 || st.Uid != 0 || st.Rdev != unix.Mkdev(1, 3) {
		t.Errorf("a stand-in file: %+v", st)
	}
	dir := unix.Stat_t{Mode: unix.S_IFDIR | 0o700}
	Stat{Mode: 0o755, Type: unix.S_IFCHR}.Apply(&dir)
	if dir.Mode != unix.S_IFDIR|0o755 {
		t.Errorf("a directory keeps its type: mode %o", dir.Mode)
	}
}
