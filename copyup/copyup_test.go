package copyup

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"
)

type fixture struct {
	src, dst, work       string
	srcFd, dstFd, workFd int
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	root := t.TempDir()
	f := &fixture{src: filepath.Join(root, "src"), dst: filepath.Join(root, "dst"), work: filepath.Join(root, "work")}
	for _, d := range []string{f.src, f.dst, f.work} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	open := func(p string) int {
		fd, err := unix.Open(p, unix.O_RDONLY|unix.O_DIRECTORY, 0)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { unix.Close(fd) })
		return fd
	}
	f.srcFd, f.dstFd, f.workFd = open(f.src), open(f.dst), open(f.work)
	return f
}

func (f *fixture) source(t *testing.T, name string) Source {
	t.Helper()
	s := Source{DirFd: f.srcFd, Name: name}
	if err := unix.Lstat(filepath.Join(f.src, name), &s.Stat); err != nil {
		t.Fatal(err)
	}
	return s
}

func (f *fixture) workEmpty(t *testing.T) {
	t.Helper()
	ents, err := os.ReadDir(f.work)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 0 {
		t.Errorf("work directory holds %d leftovers", len(ents))
	}
}

func TestObjectKinds(t *testing.T) {
	f := newFixture(t)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(filepath.Join(f.src, "file"), []byte("data"), 0o640))
	must(os.Mkdir(filepath.Join(f.src, "dir"), 0o751))
	must(os.WriteFile(filepath.Join(f.src, "dir/child"), []byte("not copied"), 0o644))
	must(os.Symlink("target/path", filepath.Join(f.src, "link")))
	must(unix.Mkfifo(filepath.Join(f.src, "fifo"), 0o620))
	must(unix.Setxattr(filepath.Join(f.src, "file"), "user.keep", []byte("1"), 0))
	must(unix.Setxattr(filepath.Join(f.src, "file"), "user.overlay.private", []byte("1"), 0))
	ts := []unix.Timespec{unix.NsecToTimespec(1e18), unix.NsecToTimespec(2e18)}
	for _, n := range []string{"file", "dir", "link", "fifo"} {
		must(unix.UtimesNanoAt(f.srcFd, n, ts, unix.AT_SYMLINK_NOFOLLOW))
	}
	opt := Options{WorkFd: f.workFd, SkipXattr: func(n string) bool { return strings.HasPrefix(n, "user.overlay.") }}
	for _, n := range []string{"file", "dir", "link", "fifo"} {
		src := f.source(t, n)
		if err := Object(src, f.dstFd, n, opt); err != nil {
			t.Fatalf("copy %s: %v", n, err)
		}
		var st unix.Stat_t
		must(unix.Lstat(filepath.Join(f.dst, n), &st))
		if st.Mode != src.Stat.Mode || st.Uid != src.Stat.Uid || st.Gid != src.Stat.Gid {
			t.Errorf("%s: mode/owner %o %d:%d, want %o %d:%d", n, st.Mode, st.Uid, st.Gid, src.Stat.Mode, src.Stat.Uid, src.Stat.Gid)
		}
		if st.Mtim != src.Stat.Mtim {
			t.Errorf("%s: mtime %v, want %v", n, st.Mtim, src.Stat.Mtim)
		}
	}
	if data, _ := os.ReadFile(filepath.Join(f.dst, "file")); string(data) != "data" {
		t.Errorf("file data %q", data)
	}
	if target, _ := os.Readlink(filepath.Join(f.dst, "link")); target != "target/path" {
		t.Errorf("link target %q", target)
	}
	if _, err := os.Stat(filepath.Join(f.dst, "dir/child")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a directory copy-up copied its entries: %v", err)
	}
	buf := make([]byte, 16)
	if _, err := unix.Getxattr(filepath.Join(f.dst, "file"), "user.keep", buf); err != nil {
		t.Errorf("user.keep not copied: %v", err)
	}
	if _, err := unix.Getxattr(filepath.Join(f.dst, "file"), "user.overlay.private", buf); !errors.Is(err, unix.ENODATA) {
		t.Errorf("skipped attribute copied: %v", err)
	}
	f.workEmpty(t)
}

func TestSkipDataAndExtraXattrs(t *testing.T) {
	f := newFixture(t)
	if err := os.WriteFile(filepath.Join(f.src, "f"), []byte("dropped"), 0o644); err != nil {
		t.Fatal(err)
	}
	opt := Options{WorkFd: f.workFd, SkipData: true, ExtraXattrs: map[string][]byte{"user.origin": []byte("42")}}
	if err := Object(f.source(t, "f"), f.dstFd, "f", opt); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(f.dst, "f"))
	if err != nil || fi.Size() != 0 {
		t.Errorf("SkipData copy: %v %v", fi, err)
	}
	buf := make([]byte, 8)
	n, err := unix.Getxattr(filepath.Join(f.dst, "f"), "user.origin", buf)
	if err != nil || string(buf[:n]) != "42" {
		t.Errorf("extra xattr: %q %v", buf[:n], err)
	}
}

func TestHolesKept(t *testing.T) {
	f := newFixture(t)
	p := filepath.Join(f.src, "sparse")
	fh, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	fh.WriteAt([]byte("a"), 0)
	fh.WriteAt([]byte("z"), 100<<20)
	fh.Close()
	if err := Object(f.source(t, "sparse"), f.dstFd, "sparse", Options{WorkFd: f.workFd, NoSync: true}); err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(f.dst, "sparse"), &st); err != nil {
		t.Fatal(err)
	}
	if st.Size != 100<<20+1 || st.Blocks*512 > 1<<20 {
		t.Errorf("size %d, %d bytes allocated: holes not kept", st.Size, st.Blocks*512)
	}
	buf := make([]byte, 1)
	g, _ := os.Open(filepath.Join(f.dst, "sparse"))
	defer g.Close()
	g.ReadAt(buf, 100<<20)
	if string(buf) != "z" {
		t.Errorf("tail %q", buf)
	}
}

// TestTrailingHoles: files that end in a hole, or are nothing but one, keep their size (no
// extent copied reaches their end), and a destination that cannot clone is marked so.
func TestTrailingHoles(t *testing.T) {
	f := newFixture(t)
	var noClone atomic.Bool
	for name, size := range map[string]int64{"tail-hole": 8 << 20, "all-hole": 1 << 20, "no-hole": 4096} {
		p := filepath.Join(f.src, name)
		fh, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		if name != "all-hole" {
			fh.Write(bytes.Repeat([]byte("d"), 4096))
		}
		fh.Truncate(size)
		fh.Close()
		if err := Object(f.source(t, name), f.dstFd, name, Options{WorkFd: f.workFd, NoSync: true, NoClone: &noClone}); err != nil {
			t.Fatal(err)
		}
		want, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(f.dst, name))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: %d bytes copied (%v), want %d", name, len(got), err, len(want))
		}
	}
	fd, err := unix.Open(f.dst, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	src, err := unix.Open(filepath.Join(f.src, "no-hole"), unix.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(src)
	dst, err := unix.Openat(fd, "clone-probe", unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(dst)
	cloneErr := unix.IoctlFileClone(dst, src)
	if unsupported := errors.Is(cloneErr, unix.EOPNOTSUPP) || errors.Is(cloneErr, unix.ENOTTY); noClone.Load() != unsupported {
		t.Errorf("NoClone %v after copies to a file system whose FICLONE says %v", noClone.Load(), cloneErr)
	}
}

// TestExistingDestinationLeavesNothing: the destination name is taken; the copy fails with
// EEXIST and leaves nothing in the work directory or at the destination.
func TestExistingDestinationLeavesNothing(t *testing.T) {
	f := newFixture(t)
	for _, err := range []error{
		os.WriteFile(filepath.Join(f.src, "f"), []byte("new"), 0o644),
		os.WriteFile(filepath.Join(f.dst, "f"), []byte("old"), 0o644),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	err := Object(f.source(t, "f"), f.dstFd, "f", Options{WorkFd: f.workFd})
	if !errors.Is(err, unix.EEXIST) {
		t.Errorf("copy over an existing name: %v, want EEXIST", err)
	}
	if data, _ := os.ReadFile(filepath.Join(f.dst, "f")); string(data) != "old" {
		t.Errorf("destination changed to %q", data)
	}
	f.workEmpty(t)
}

// capV2 is a version-2 security.capability value granting cap_net_raw, effective.
var capV2 = []byte{0, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}

// TestPrivilegedAttributesSurvive: a file owned by someone else with a capability and an ACL
// keeps both: the owner is set before the attributes (chown would drop the capability).
func TestPrivilegedAttributesSurvive(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: only root sets security.capability and gives files away")
	}
	f := newFixture(t)
	p := filepath.Join(f.src, "ping")
	if err := os.WriteFile(p, []byte("x"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(p, 1000, 1000); err != nil {
		t.Fatal(err)
	}
	if err := unix.Setxattr(p, "security.capability", capV2, 0); err != nil {
		t.Fatalf("setcap: %v", err)
	}
	// user::rwx user:1234:r-x group::r-x mask::r-x other::r-x
	acl := []byte{2, 0, 0, 0,
		1, 0, 7, 0, 0xff, 0xff, 0xff, 0xff,
		2, 0, 5, 0, 0xd2, 4, 0, 0,
		4, 0, 5, 0, 0xff, 0xff, 0xff, 0xff,
		0x10, 0, 5, 0, 0xff, 0xff, 0xff, 0xff,
		0x20, 0, 5, 0, 0xff, 0xff, 0xff, 0xff}
	if err := unix.Setxattr(p, "system.posix_acl_access", acl, 0); err != nil {
		t.Fatalf("setfacl: %v", err)
	}
	if err := Object(f.source(t, "ping"), f.dstFd, "ping", Options{WorkFd: f.workFd}); err != nil {
		t.Fatal(err)
	}
	q := filepath.Join(f.dst, "ping")
	for name, want := range map[string][]byte{"security.capability": capV2, "system.posix_acl_access": acl} {
		buf := make([]byte, 256)
		n, err := unix.Getxattr(q, name, buf)
		if err != nil || string(buf[:n]) != string(want) {
			t.Errorf("%s after copy-up: %x, %v; want %x", name, buf[:max(n, 0)], err, want)
		}
	}
	var st unix.Stat_t
	if err := unix.Stat(q, &st); err != nil || st.Uid != 1000 || st.Mode&07777 != 0o755 {
		t.Errorf("owner/mode %d %o (%v), want 1000 755", st.Uid, st.Mode&07777, err)
	}
}

func TestMustCopyXattr(t *testing.T) {
	for name, want := range map[string]bool{
		"security.capability": true, "security.ima": true, "security.selinux": true,
		"system.posix_acl_access": true, "system.posix_acl_default": true,
		"user.color": false, "trusted.foo": false,
	} {
		if got := MustCopyXattr(name); got != want {
			t.Errorf("MustCopyXattr(%q) = %v, want %v", name, got, want)
		}
	}
}
