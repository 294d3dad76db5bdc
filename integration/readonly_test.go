package integration

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// TestLowerOnlyMountIsReadOnly: without an upper, one lower is enough, it reads, and every
// write fails with EROFS.
func TestLowerOnlyMountIsReadOnly(t *testing.T) {
	needMounts(t)
	root := t.TempDir()
	b := builder{t, mkdir(t, root, "lower")}
	b.file("f", "content\n", 0o644)
	b.file("d/g", "g\n", 0o644)
	b.settle()
	mnt := mkdir(t, root, "mnt")
	mountLayerfs(t, stack{Lowers: []string{b.root}}, mnt)

	data, err := os.ReadFile(filepath.Join(mnt, "f"))
	if err != nil || string(data) != "content\n" {
		t.Fatalf("read f: %q %v", data, err)
	}
	writes := map[string]func() error{
		"open for write": func() error {
			f, err := os.OpenFile(filepath.Join(mnt, "f"), os.O_WRONLY, 0)
			if err == nil {
				f.Close()
			}
			return err
		},
		"create":  func() error { return os.WriteFile(filepath.Join(mnt, "new"), nil, 0o644) },
		"mkdir":   func() error { return os.Mkdir(filepath.Join(mnt, "nd"), 0o755) },
		"unlink":  func() error { return os.Remove(filepath.Join(mnt, "f")) },
		"rmdir":   func() error { return os.Remove(filepath.Join(mnt, "d/g")) },
		"rename":  func() error { return os.Rename(filepath.Join(mnt, "f"), filepath.Join(mnt, "f2")) },
		"chmod":   func() error { return os.Chmod(filepath.Join(mnt, "f"), 0o600) },
		"symlink": func() error { return os.Symlink("f", filepath.Join(mnt, "sl")) },
		"setxattr": func() error {
			return unix.Setxattr(filepath.Join(mnt, "f"), "user.x", []byte("1"), 0)
		},
	}
	for name, op := range writes {
		if err := op(); !errors.Is(err, syscall.EROFS) {
			t.Errorf("%s on a read-only mount: got %v, want EROFS", name, err)
		}
	}
	if _, err := os.Stat(filepath.Join(b.root, "new")); err == nil {
		t.Error("a write reached the lower layer")
	}
}

// TestPrivateXattrsAndMarkersHidden: the overlay's own attributes and AUFS marker names never
// show, not even when asked for by name, and long names give ENAMETOOLONG.
func TestPrivateXattrsAndMarkersHidden(t *testing.T) {
	needMounts(t)
	root := t.TempDir()
	st := buildReadStack(t, root)
	lower := builder{t, st.Lowers[0]}
	lower.file(".wh.gone", "", 0o644)
	lower.file("plain", "x", 0o644)
	lower.xattr("plain", "user.overlay.whatever", "1")
	lower.xattr("plain", "user.visible", "1")
	mnt := mkdir(t, root, "mnt")
	mountLayerfs(t, st, mnt)

	for _, p := range []string{"opq", "nested/n1", "xw"} {
		buf := make([]byte, 64)
		_, err := unix.Lgetxattr(filepath.Join(mnt, p), "trusted.overlay.opaque", buf)
		if !errors.Is(err, unix.ENODATA) {
			t.Errorf("getxattr trusted.overlay.opaque on %s: %v, want ENODATA", p, err)
		}
	}
	attrs := userXattrs(t, filepath.Join(mnt, "plain"))
	if attrs != "user.visible=1" {
		t.Errorf("xattrs of plain: %q, want only user.visible", attrs)
	}
	buf := make([]byte, 4096)
	n, err := unix.Llistxattr(filepath.Join(mnt, "opq"), buf)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(buf[:n]), "overlay") {
		t.Errorf("listxattr of an opaque directory shows %q", buf[:n])
	}
	if _, err := os.Lstat(filepath.Join(mnt, ".wh.gone")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("lstat of a marker name: %v, want ENOENT", err)
	}
	if _, err := os.Lstat(filepath.Join(mnt, strings.Repeat("n", 256))); !errors.Is(err, syscall.ENAMETOOLONG) {
		t.Errorf("lstat of a 256-byte name: %v, want ENAMETOOLONG", err)
	}
	if err := unix.Access(filepath.Join(mnt, "a"), unix.R_OK); err != nil {
		t.Errorf("access(a, R_OK): %v", err)
	}
	if err := unix.Access(filepath.Join(mnt, "a"), unix.X_OK); !errors.Is(err, unix.EACCES) {
		t.Errorf("access(a, X_OK) on a 0644 file: %v, want EACCES", err)
	}
	// The root's attributes are the upper root's (its path is a descriptor's magic link).
	if err := unix.Setxattr(mnt, "user.rootattr", []byte("r"), 0); err != nil {
		t.Fatalf("setxattr on the mount root: %v", err)
	}
	if got := userXattrs(t, mnt); got != "user.rootattr=r" {
		t.Errorf("xattrs of the mount root: %q", got)
	}
	var sfs, usfs unix.Statfs_t
	if err := unix.Statfs(mnt, &sfs); err != nil {
		t.Fatal(err)
	}
	if err := unix.Statfs(st.Upper, &usfs); err != nil {
		t.Fatal(err)
	}
	if sfs.Blocks != usfs.Blocks || sfs.Bsize != usfs.Bsize || sfs.Namelen != 255 {
		t.Errorf("statfs: %+v, want the upper's %+v", sfs, usfs)
	}
}
