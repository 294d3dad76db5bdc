package integration

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
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
// setting and clearing flags through the mount, and the uppers both leave.
func TestFileattr(t *testing.T) {
	needMounts(t)
	mnts, uppers := flagStacks(t, func(l string) {
		for _, f := range []string{"fA", "fS", "fi"} {
			must(t, os.WriteFile(filepath.Join(l, f), []byte(f+"\n"), 0o644))
		}
		mkdir(t, l, "dA")
		mkdir(t, l, "di")
		must(t, os.WriteFile(filepath.Join(l, "di", "child"), []byte("c\n"), 0o644))
	}, map[string]uint32{"fA": copyup.FlagNoatime | 0x40, "fS": copyup.FlagSync, "fi": copyup.FlagImmutable, "dA": copyup.FlagNoatime, "di": copyup.FlagImmutable})
	script := func(m string) []string {
		var out []string
		flags := func(names ...string) {
			for _, n := range names {
				f, err := flagsAt(filepath.Join(m, n))
				out = append(out, fmt.Sprintf("flags %s: %#x %s", n, f, errText(err)))
			}
		}
		flags("fA", "fS", "fi", "dA", "di")
		x, err := xflagsAt(filepath.Join(m, "fA"))
		out = append(out, fmt.Sprintf("xflags fA: %#x %s", x, errText(err)))
		out = append(out, "chmod fA fS: "+errText(os.Chmod(filepath.Join(m, "fA"), 0o600))+" "+errText(os.Chmod(filepath.Join(m, "fS"), 0o600)))
		out = append(out, "chmod fi: "+errText(os.Chmod(filepath.Join(m, "fi"), 0o600)))
		out = append(out, "append to di/child: "+errText(appendLine(filepath.Join(m, "di", "child"), "more")))
		flags("fA", "fS", "di")
		out = append(out, "chattr +d fS: "+errText(addFlags(filepath.Join(m, "fS"), 0x40, 0)))
		out = append(out, "chattr -i fi: "+errText(addFlags(filepath.Join(m, "fi"), 0, copyup.FlagImmutable)))
		out = append(out, "chattr +i fA: "+errText(addFlags(filepath.Join(m, "fA"), copyup.FlagImmutable, 0)))
		out = append(out, "xflags +nodump dA: "+errText(addXflags(filepath.Join(m, "dA"), xflagNodump)))
		flags("fA", "fS", "fi", "dA", "di")
		return out
	}
	sameAnswers(t, mnts, script)
	// The uppers: flags on each object and what overlay.protattr holds.
	for _, name := range []string{"fA", "fS", "fi", "dA", "di"} {
		want := upperFlags(uppers["kernel"], name)
		if got := upperFlags(uppers[testedName()], name); got != want {
			t.Errorf("upper %s: kernel %s, layerfs %s", name, want, got)
		}
	}
}

// flagStacks mounts, with the kernel's overlayfs and with layerfs, a stack of one lower layer
// that build fills and whose objects then get the inode flags of flags (added to theirs). It
// returns the mounts and the uppers, by side.
func flagStacks(t *testing.T, build func(lower string), flags map[string]uint32) (mnts, uppers map[string]string) {
	t.Helper()
	root := t.TempDir()
	// Reachable by the user some steps run as (withFsIDs).
	must(t, os.Chmod(root, 0o755))
	must(t, os.Chmod(filepath.Dir(root), 0o755))
	mnts, uppers = map[string]string{}, map[string]string{}
	for _, side := range []string{"kernel", testedName()} {
		dir := mkdir(t, root, side)
		st := stack{Lowers: []string{mkdir(t, dir, "l")}, Upper: mkdir(t, dir, "u"), Work: mkdir(t, dir, "w")}
		build(st.Lowers[0])
		// Cleared after the unmount (cleanups run last first), or the directory could not go.
		t.Cleanup(func() { clearFlags(dir) })
		for f, fl := range flags {
			p := filepath.Join(st.Lowers[0], f)
			if err := setFlagsAt(p, fl, true); err != nil {
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
	return mnts, uppers
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

// TestImmutableAppend: what the immutable and append-only flags forbid, step by step against
// the kernel's overlayfs, for flags a lower layer holds (real flags of lower objects) and
// flags set through the mount (kept in overlay.protattr): opening for writing with and
// without O_APPEND, truncate, chmod, explicit and current times, an extended attribute, a
// link, rename and unlink of a file; adding, removing and renaming names in a directory,
// rmdir of it, and changing a file inside it. Once the flags are cleared, everything works.
func TestImmutableAppend(t *testing.T) {
	needMounts(t)
	files := []string{"fi", "fa", "ni", "na"}
	dirs := []string{"di", "da", "ndi", "nda"}
	mnts, _ := flagStacks(t, func(l string) {
		for _, f := range files {
			must(t, os.WriteFile(filepath.Join(l, f), []byte(f+"\n"), 0o644))
		}
		for _, d := range dirs {
			mkdir(t, l, d)
			must(t, os.WriteFile(filepath.Join(l, d, "c"), []byte("c\n"), 0o644))
			must(t, os.WriteFile(filepath.Join(l, d, "v"), []byte("v\n"), 0o644))
		}
		must(t, os.WriteFile(filepath.Join(l, "outside"), []byte("o\n"), 0o644))
		must(t, os.WriteFile(filepath.Join(l, "cfr"), []byte("c\n"), 0o644))
		must(t, os.WriteFile(filepath.Join(l, "suid-append"), []byte("s\n"), 0o644))
		must(t, unix.Chmod(filepath.Join(l, "suid-append"), 0o4777))
	}, map[string]uint32{"fi": copyup.FlagImmutable, "fa": copyup.FlagAppend, "di": copyup.FlagImmutable, "da": copyup.FlagAppend, "suid-append": copyup.FlagAppend})
	script := func(m string) []string {
		var out []string
		step := func(what string, err error) { out = append(out, what+": "+errText(err)) }
		at := func(n string) string { return filepath.Join(m, n) }
		// The same flags set through the mount, on objects a lower layer holds.
		for _, n := range []string{"ni", "na", "ndi", "nda"} {
			fl := uint32(copyup.FlagImmutable)
			if strings.HasSuffix(n, "a") {
				fl = copyup.FlagAppend
			}
			step("chattr "+n, addFlags(at(n), fl, 0))
		}
		for _, f := range files {
			p := at(f)
			fd, err := unix.Open(p, unix.O_WRONLY|unix.O_CLOEXEC, 0)
			if err == nil {
				unix.Close(fd)
			}
			step(f+": open for writing", err)
			fd, err = unix.Open(p, unix.O_WRONLY|unix.O_APPEND|unix.O_CLOEXEC, 0)
			if err == nil {
				_, err = unix.Write(fd, []byte("appended\n"))
				step(f+": append", err)
				step(f+": fallocate past the end", unix.Fallocate(fd, unix.FALLOC_FL_KEEP_SIZE, 0, 8192))
				step(f+": fallocate", unix.Fallocate(fd, 0, 0, 8192))
				unix.Close(fd)
			}
			step(f+": open O_APPEND", err)
			fd, err = unix.Open(p, unix.O_WRONLY|unix.O_APPEND|unix.O_TRUNC|unix.O_CLOEXEC, 0)
			if err == nil {
				unix.Close(fd)
			}
			step(f+": open O_APPEND|O_TRUNC", err)
			step(f+": truncate", unix.Truncate(p, 1))
			step(f+": chmod", unix.Chmod(p, 0o600))
			step(f+": utimes", unix.UtimesNano(p, []unix.Timespec{{Sec: 1}, {Sec: 2}}))
			step(f+": touch", unix.UtimesNano(p, []unix.Timespec{{Nsec: unix.UTIME_NOW}, {Nsec: unix.UTIME_NOW}}))
			step(f+": setxattr", unix.Setxattr(p, "user.x", []byte("1"), 0))
			step(f+": link", unix.Link(p, p+".link"))
			step(f+": rename", unix.Rename(p, p+".moved"))
			step(f+": unlink", unix.Unlink(p))
			data, err := os.ReadFile(p)
			step(fmt.Sprintf("%s: holds %d bytes, sha256 %x", f, len(data), sha256.Sum256(data)), err)
		}
		for _, d := range dirs {
			p := at(d)
			step(d+": create", os.WriteFile(filepath.Join(p, "new"), nil, 0o644))
			step(d+": mkdir", unix.Mkdir(filepath.Join(p, "sub"), 0o755))
			step(d+": symlink", unix.Symlink("c", filepath.Join(p, "sl")))
			step(d+": link in", unix.Link(at("outside"), filepath.Join(p, "ln")))
			step(d+": rename within", unix.Rename(filepath.Join(p, "c"), filepath.Join(p, "c2")))
			step(d+": rename out", unix.Rename(filepath.Join(p, "v"), at(d+".v")))
			step(d+": rename over", unix.Rename(at("outside"), filepath.Join(p, "v")))
			step(d+": unlink", unix.Unlink(filepath.Join(p, "c")))
			step(d+": rmdir", unix.Rmdir(p))
			step(d+": unlink, a directory", unix.Unlink(p))
			step(d+": chmod", unix.Chmod(p, 0o700))
			step(d+": change a file inside", appendLine(filepath.Join(p, "c"), "changed"))
			ents, err := os.ReadDir(p)
			var names []string
			for _, e := range ents {
				names = append(names, e.Name())
			}
			step(fmt.Sprintf("%s: holds %v", d, names), err)
		}
		// Made immutable while open for writing: copy_file_range into it is refused
		// (generic_copy_file_checks, xfstests generic/553), and truncate by path; write(2)
		// and ftruncate through the descriptor are not.
		if fd, err := unix.Open(at("cfr"), unix.O_WRONLY|unix.O_CLOEXEC, 0); err != nil {
			step("cfr: open", err)
		} else {
			step("chattr +i cfr", addFlags(at("cfr"), copyup.FlagImmutable, 0))
			if in, err := unix.Open(at("outside"), unix.O_RDONLY|unix.O_CLOEXEC, 0); err == nil {
				_, err = unix.CopyFileRange(in, nil, fd, nil, 2, 0)
				step("cfr: copy_file_range", err)
				unix.Close(in)
			}
			_, err = unix.Write(fd, []byte("w"))
			step("cfr: write", err)
			step("cfr: ftruncate", unix.Ftruncate(fd, 1))
			step("cfr: truncate", unix.Truncate(at("cfr"), 1))
			unix.Close(fd)
			step("chattr -i cfr", addFlags(at("cfr"), 0, copyup.FlagImmutable))
		}
		// An unprivileged append to an append-only set-user-id file succeeds and drops the
		// bit: the privileges are dropped on the upper object, which has no such flag.
		step("suid-append: append as a user", errors.New(withFsIDs(func() string {
			return errName(appendLine(at("suid-append"), "more"))
		})))
		step("suid-append: "+modeOnly(at("suid-append")), nil)
		// Cleared, nothing is refused.
		for _, n := range append(append([]string(nil), files...), dirs...) {
			step("chattr -ia "+n, addFlags(at(n), 0, copyup.FlagImmutable|copyup.FlagAppend))
		}
		for _, f := range files {
			step(f+": chmod, cleared", unix.Chmod(at(f), 0o600))
			step(f+": unlink, cleared", unix.Unlink(at(f)))
		}
		for _, d := range dirs {
			step(d+": unlink inside, cleared", unix.Unlink(filepath.Join(at(d), "c")))
		}
		return out
	}
	// Refused for two reasons, an immutable or append-only directory that unlink(2) cannot
	// remove: the kernel's FUSE answers EISDIR before layerfs is asked (README).
	documentedAnswers(t, mnts, script, func(side string, want []string) {
		for i, w := range want {
			if strings.HasSuffix(w, ": unlink, a directory: "+unix.EPERM.Error()) {
				want[i] = strings.TrimSuffix(w, unix.EPERM.Error()) + unix.EISDIR.Error()
			}
		}
	})
}

// errText is err without the paths the two mounts differ in: its errno where it has one.
func errText(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno.Error()
	}
	if err == nil {
		return "ok"
	}
	return err.Error()
}

// appendLine appends line and a newline to the file p, as a shell's >> does, and says how it
// went.
func appendLine(p, line string) error {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(line + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// TestProtectedUpperFoundByLookup: upper objects the mount finds rather than makes carry
// their immutable and append-only flags in overlay.protattr or on themselves, and a lookup
// learns them (layerfs from the listxattr and statx it makes anyway, merge.XattrFacts); what
// they forbid is refused as the kernel refuses it, what they allow works (an O_APPEND write
// to an object append-only of its own), and a plain upper file takes everything.
func TestProtectedUpperFoundByLookup(t *testing.T) {
	needMounts(t)
	root := t.TempDir()
	mnts := map[string]string{}
	names := []string{"protattr-i", "protattr-a", "flag-i", "flag-a", "plain"}
	for _, side := range []string{"kernel", testedName(), "noopen"} {
		dir := mkdir(t, root, side)
		st := stack{Lowers: []string{mkdir(t, dir, "l")}, Upper: mkdir(t, dir, "u"), Work: mkdir(t, dir, "w")}
		u := builder{t, st.Upper}
		for _, n := range names {
			u.file(n, "upper data\n", 0o644)
		}
		u.xattr("protattr-i", "trusted.overlay.protattr", "i")
		u.xattr("protattr-a", "trusted.overlay.protattr", "a")
		t.Cleanup(func() { clearFlags(dir) })
		for n, fl := range map[string]uint32{"flag-i": copyup.FlagImmutable, "flag-a": copyup.FlagAppend} {
			if err := setFlagsAt(filepath.Join(st.Upper, n), fl, true); err != nil {
				t.Skipf("the layers' file system takes no inode flags (%v); CI's does", err)
			}
		}
		mnt := mkdir(t, dir, "m")
		switch side {
		case "kernel":
			mountKernel(t, st, mnt)
		case "noopen":
			mountLayerfs(t, st, mnt, "-o", "noopen")
		default:
			mountLayerfs(t, st, mnt)
		}
		mnts[side] = mnt
	}
	sameAnswers(t, mnts, func(m string) []string {
		var out []string
		for _, n := range names {
			p := filepath.Join(m, n)
			var st unix.Stat_t
			unix.Lstat(p, &st) // a lookup first, as any path does
			out = append(out, n+": append "+errText(appendLine(p, "more")),
				n+": truncate "+errText(unix.Truncate(p, 1)),
				n+": unlink "+errText(unix.Unlink(p)))
		}
		return out
	})
}
