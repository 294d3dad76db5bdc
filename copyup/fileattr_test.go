package copyup

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// TestFileattrCopied: a copy takes its source's sync and no-atime flags, records immutable
// and append-only in ProtAttr rather than on itself, and leaves the others (no-dump).
func TestFileattrCopied(t *testing.T) {
	f := newFixture(t)
	for _, name := range []string{"file", "dir"} {
		p := filepath.Join(f.src, name)
		var err error
		if name == "dir" {
			err = os.Mkdir(p, 0o755)
		} else {
			err = os.WriteFile(p, []byte("x"), 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
		fd, err := unix.Open(p, unix.O_RDONLY|unix.O_NONBLOCK, 0)
		if err != nil {
			t.Fatal(err)
		}
		have, err := GetFlags(fd)
		if err == nil {
			err = SetFlags(fd, have|FlagSync|FlagNoatime|FlagAppend|0x40)
		}
		if err == nil {
			// Cleared again once copied: the directory must be removable.
			t.Cleanup(func() { SetFlags(fd, have); unix.Close(fd) })
		} else {
			unix.Close(fd)
			if os.Geteuid() != 0 {
				t.Skipf("setting the append-only flag needs CAP_LINUX_IMMUTABLE (%v); CI runs as root", err)
			}
			t.Skipf("this file system takes no inode flags (%v); CI's ext4 does", err)
		}
		const protattr = "trusted.overlay.protattr"
		if err := Object(f.source(t, name), f.dstFd, name, Options{WorkFd: f.workFd, ProtAttr: protattr}); err != nil {
			t.Fatal(err)
		}
		out, err := unix.Open(filepath.Join(f.dst, name), unix.O_RDONLY|unix.O_NONBLOCK, 0)
		if err != nil {
			t.Fatal(err)
		}
		got, err := GetFlags(out)
		unix.Close(out)
		if err != nil {
			t.Fatal(err)
		}
		if got&(FlagSync|FlagNoatime|FlagAppend|FlagImmutable|0x40) != FlagSync|FlagNoatime {
			t.Errorf("%s: the copy's flags are %#x, want sync and no-atime only of the four", name, got)
		}
		buf := make([]byte, 8)
		n, err := unix.Lgetxattr(filepath.Join(f.dst, name), protattr, buf)
		if err != nil || string(buf[:n]) != "a" {
			t.Errorf("%s: protattr %q %v, want \"a\"", name, buf[:max(n, 0)], err)
		}
	}
	f.workEmpty(t)
}

func TestParseProtAttr(t *testing.T) {
	for v, want := range map[string]uint32{"a": FlagAppend, "i": FlagImmutable, "ai": FlagAppend | FlagImmutable, "ia": FlagAppend | FlagImmutable} {
		if got, ok := ParseProtAttr([]byte(v)); !ok || got != want {
			t.Errorf("%q: %#x %v, want %#x", v, got, ok, want)
		}
	}
	for flags, want := range map[uint32]string{0: "", FlagAppend: "a", FlagImmutable: "i", FlagAppend | FlagImmutable | FlagSync: "ai"} {
		if got := ProtAttrValue(flags); got != want {
			t.Errorf("ProtAttrValue(%#x) = %q, want %q", flags, got, want)
		}
	}
	for _, v := range []string{"", "x", "ax", "a\x00"} {
		if _, ok := ParseProtAttr([]byte(v)); ok {
			t.Errorf("%q taken; the kernel ignores it", v)
		}
	}
}
