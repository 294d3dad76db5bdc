package unionfs

import (
	"testing"

	"golang.org/x/sys/unix"
)

func TestParseOverrideStat(t *testing.T) {
	for _, c := range []struct {
		in   string
		ok   bool
		want overrideStat
		back string // String() of the result
	}{
		{"0:0:0755", true, overrideStat{mode: 0o755}, "0:0:0755"},
		{"1000:100:4755", true, overrideStat{uid: 1000, gid: 100, mode: 0o4755}, "1000:100:4755"},
		{"0:0:0666:char-1-3", true, overrideStat{mode: 0o666, typ: unix.S_IFCHR, rdev: unix.Mkdev(1, 3)}, "0:0:0666:char-1-3"},
		{"5:6:0600:block-8-1", true, overrideStat{uid: 5, gid: 6, mode: 0o600, typ: unix.S_IFBLK, rdev: unix.Mkdev(8, 1)}, "5:6:0600:block-8-1"},
		{"0:0:0644:file", true, overrideStat{mode: 0o644, typ: unix.S_IFREG}, "0:0:0644"},
		{"0:0:0644:pipe", true, overrideStat{mode: 0o644, typ: unix.S_IFIFO}, "0:0:0644:pipe"},
		{"0:0:100644", true, overrideStat{mode: 0o644}, "0:0:0644"}, // type bits in the mode are dropped
		{"0:0", false, overrideStat{}, ""},
		{"a:0:0644", false, overrideStat{}, ""},
		{"0:0:0999", false, overrideStat{}, ""},
		{"0:0:0644:char-1", false, overrideStat{}, ""},
		{"0:0:0644:tape", false, overrideStat{}, ""},
		{"0:0:0644:x:y", false, overrideStat{}, ""},
	} {
		got, ok := parseOverrideStat(c.in)
		if ok != c.ok || (ok && got != c.want) {
			t.Errorf("parseOverrideStat(%q) = %+v, %v; want %+v, %v", c.in, got, ok, c.want, c.ok)
			continue
		}
		if ok && got.String() != c.back {
			t.Errorf("parseOverrideStat(%q).String() = %q, want %q", c.in, got.String(), c.back)
		}
	}
}

func TestOverrideApply(t *testing.T) {
	st := unix.Stat_t{Mode: unix.S_IFREG | 0o600, Uid: 1000, Gid: 1000, Size: 0}
	overrideStat{uid: 0, gid: 0, mode: 0o666, typ: unix.S_IFCHR, rdev: unix.Mkdev(1, 3)}.apply(&st)
	if st.Mode != unix.S_IFCHR|0o666 || st.Uid != 0 || st.Rdev != unix.Mkdev(1, 3) {
		t.Errorf("a stand-in file: %+v", st)
	}
	dir := unix.Stat_t{Mode: unix.S_IFDIR | 0o700}
	overrideStat{mode: 0o755, typ: unix.S_IFCHR}.apply(&dir)
	if dir.Mode != unix.S_IFDIR|0o755 {
		t.Errorf("a directory keeps its type: mode %o", dir.Mode)
	}
}
