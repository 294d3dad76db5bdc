package integration

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unsafe"

	"github.com/layerfs/layerfs/copyup"
	"golang.org/x/sys/unix"
)

// fsIocFsGetXattr and fsIocFsSetXattr are FS_IOC_FSGETXATTR and FS_IOC_FSSETXATTR (x86 and
// arm numbering), which x/sys does not name.
const (
	fsIocFsGetXattr = 0x801c581f
	fsIocFsSetXattr = 0x401c5820
	xflagNodump     = 0x80
)

// TestFileattr: inode flags (lsattr, chattr) through the mount, step by step against the
// kernel's overlayfs: the flags of lower files and directories (sync, no-atime, no-dump,
// immutable) by both ioctls, what a copy-up keeps of them (sync and no-atime on the copy,
// immutable in overlay.protattr, as for a directory copied up under a changed child),
// setting and clearing flags through the mount, and the uppers both leave. Setting the
// immutable flag is refused by layerfs (README, "What differs").
func TestFileattr(t *testing.T) {
	needMounts(t)
	root := t.TempDir()
	mnts, uppers := map[string]string{}, map[string]string{}
	for _, side := range []string{"kernel", testedName()} {
		dir := mkdir(t, root, side)
		st := stack{Lowers: []string{mkdir(t, dir, "l")}, Upper: mkdir(t, dir, "u"), Work: mkdir(t, dir, "w")}
		l := st.Lowers[0]
		for _, f := range []string{"fA", "fS", "fi"} {
			must(t, os.WriteFile(filepath.Join(l, f), []byte(f+"\n"), 0o644))
		}
		mkdir(t, l, "dA")
		mkdir(t, l, "di")
		must(t, os.WriteFile(filepath.Join(l, "di", "child"), []byte("c\n"), 0o644))
		// Cleared after the unmount (cleanups run last first), or the directory could not go.
		t.Cleanup(func() { clearFlags(dir) })
		for f, flags := range map[string]uint32{"fA": copyup.FlagNoatime | 0x40, "fS": copyup.FlagSync, "fi": copyup.FlagImmutable, "dA": copyup.FlagNoatime, "di": copyup.FlagImmutable} {
			p := filepath.Join(l, f)
			if err := setFlagsAt(p, flags, true); err != nil {
				t.Skipf("the layers' file system takes no inode flags (%s: %v); CI's does", p, err)
			}
		}
		mnt := mkdir(t, dir, "m")
		if side == "kernel" {
			mountKernel(t, st, mnt)
		} else {
			mountLayerfs(t, st, mnt)
		}
		mnts[side], uppers[side] = mnt, st.Upper
	}
	script := func(m string) []string {
		var out []string
		flags := func(names ...string) {
			for _, n := range names {
				f, err := flagsAt(filepath.Join(m, n))
				out = append(out, fmt.Sprintf("flags %s: %#x %v", n, f, err))
			}
		}
		flags("fA", "fS", "fi", "dA", "di")
		x, err := xflagsAt(filepath.Join(m, "fA"))
		out = append(out, fmt.Sprintf("xflags fA: %#x %v", x, err))
		out = append(out, fmt.Sprintf("chmod fA fS: %v %v", os.Chmod(filepath.Join(m, "fA"), 0o600), os.Chmod(filepath.Join(m, "fS"), 0o600)))
		out = append(out, fmt.Sprintf("chmod fi: %v", os.Chmod(filepath.Join(m, "fi"), 0o600)))
		f, err := os.OpenFile(filepath.Join(m, "di", "child"), os.O_WRONLY|os.O_APPEND, 0)
		if err == nil {
			_, err = f.WriteString("more\n")
			f.Close()
		}
		out = append(out, fmt.Sprintf("append to di/child: %v", err))
		flags("fA", "fS", "di")
		out = append(out, fmt.Sprintf("chattr +d fS: %v", addFlags(filepath.Join(m, "fS"), 0x40, 0)))
		out = append(out, fmt.Sprintf("chattr -i fi: %v", addFlags(filepath.Join(m, "fi"), 0, copyup.FlagImmutable)))
		out = append(out, fmt.Sprintf("chattr +i fA: %v", addFlags(filepath.Join(m, "fA"), copyup.FlagImmutable, 0)))
		out = append(out, fmt.Sprintf("xflags +nodump dA: %v", addXflags(filepath.Join(m, "dA"), xflagNodump)))
		flags("fA", "fS", "fi", "dA", "di")
		return out
	}
	kernel := script(mnts["kernel"])
	got := script(mnts[testedName()])
	// What the README documents: layerfs refuses to set 'i', and does not refuse what it
	// forbids.
	want := append([]string(nil), kernel...)
	last := 0
	for i, w := range want {
		switch {
		case strings.HasPrefix(w, "chattr +i fA: "):
			want[i] = "chattr +i fA: operation not supported"
		case strings.HasPrefix(w, "chmod fi: "):
			want[i] = "chmod fi: <nil>"
		case strings.HasPrefix(w, "flags fA: "):
			last = i
		}
	}
	var f uint32
	var rest string
	if _, err := fmt.Sscanf(want[last], "flags fA: %v %s", &f, &rest); err == nil {
		want[last] = fmt.Sprintf("flags fA: %#x %s", f&^copyup.FlagImmutable, rest)
	}
	for i := range max(len(want), len(got)) {
		w, g := "(none)", "(none)"
		if i < len(want) {
			w = want[i]
		}
		if i < len(got) {
			g = got[i]
		}
		if w != g {
			t.Errorf("step %d:\n kernel: %s\n layerfs: %s", i, w, g)
		}
	}
	// The uppers: flags on each object and what overlay.protattr holds, the same on both
	// (but fA, which the kernel made immutable and layerfs did not).
	for _, name := range []string{"fS", "fi", "dA", "di"} {
		want := upperFlags(uppers["kernel"], name)
		if got := upperFlags(uppers[testedName()], name); got != want {
			t.Errorf("upper %s: kernel %s, layerfs %s", name, want, got)
		}
	}
}

// upperFlags describes an upper object's flags and overlay.protattr.
func upperFlags(upper, name string) string {
	p := filepath.Join(upper, name)
	f, err := flagsAt(p)
	buf := make([]byte, 32)
	n, xerr := unix.Lgetxattr(p, "trusted.overlay.protattr", buf)
	if xerr != nil {
		n = 0
	}
	return fmt.Sprintf("flags %#x %v, protattr %q %v", f, err, buf[:n], xerr)
}

func openForFlags(p string) (int, error) {
	return unix.Open(p, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
}

func flagsAt(p string) (uint32, error) {
	fd, err := openForFlags(p)
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	return copyup.GetFlags(fd)
}

// setFlagsAt sets p's flags (adding them to what it has, with add).
func setFlagsAt(p string, flags uint32, add bool) error {
	fd, err := openForFlags(p)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if add {
		have, err := copyup.GetFlags(fd)
		if err != nil {
			return err
		}
		flags |= have
	}
	return copyup.SetFlags(fd, flags)
}

// addFlags is chattr: the flags p has, with on added and off taken away.
func addFlags(p string, on, off uint32) error {
	fd, err := openForFlags(p)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	have, err := copyup.GetFlags(fd)
	if err != nil {
		return err
	}
	return copyup.SetFlags(fd, have&^off|on)
}

func xflagsAt(p string) (uint32, error) {
	fd, err := openForFlags(p)
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	var buf [28]byte
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), fsIocFsGetXattr, uintptr(unsafe.Pointer(&buf[0]))); e != 0 {
		return 0, e
	}
	return binary.NativeEndian.Uint32(buf[:]), nil
}

// addXflags is xfs_io's chattr: FS_IOC_FSSETXATTR with xflags added.
func addXflags(p string, on uint32) error {
	fd, err := openForFlags(p)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	var buf [28]byte
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), fsIocFsGetXattr, uintptr(unsafe.Pointer(&buf[0]))); e != 0 {
		return e
	}
	binary.NativeEndian.PutUint32(buf[:], binary.NativeEndian.Uint32(buf[:])|on)
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), fsIocFsSetXattr, uintptr(unsafe.Pointer(&buf[0]))); e != 0 {
		return e
	}
	return nil
}

// clearFlags takes every inode flag a test set off everything below dir, so it can be
// removed.
func clearFlags(dir string) {
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && (d.Type().IsRegular() || d.IsDir()) {
			if f, err := flagsAt(p); err == nil && f&(copyup.FlagImmutable|copyup.FlagAppend) != 0 {
				setFlagsAt(p, f&^(copyup.FlagImmutable|copyup.FlagAppend), false)
			}
		}
		return nil
	})
}
