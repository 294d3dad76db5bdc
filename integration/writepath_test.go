package integration

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// mountWritable mounts one lower (built by fill) with an empty upper and returns the mount.
func mountWritable(t *testing.T, fill func(b builder), extra ...string) (string, stack) {
	t.Helper()
	root := t.TempDir()
	st := newStack(t, root)
	b := builder{t, st.Lowers[0]}
	fill(b)
	b.settle()
	mnt := mkdir(t, root, "mnt")
	mountLayerfs(t, st, mnt, extra...)
	return mnt, st
}

// TestCopyUpKeepsHoles: a sparse lower file is copied up without filling its holes, and
// SEEK_DATA/SEEK_HOLE see them through the mount.
func TestCopyUpKeepsHoles(t *testing.T) {
	needMounts(t)
	mnt, st := mountWritable(t, func(b builder) {
		f, err := os.Create(b.p("sparse"))
		must(t, err)
		_, err = f.WriteAt([]byte("head"), 0)
		must(t, err)
		_, err = f.WriteAt([]byte("tail"), 64<<20)
		must(t, err)
		must(t, f.Close())
	})
	appendFile(t, filepath.Join(mnt, "sparse"), "!")
	var ust unix.Stat_t
	must(t, unix.Stat(filepath.Join(st.Upper, "sparse"), &ust))
	if ust.Size != 64<<20+5 {
		t.Fatalf("upper copy has size %d", ust.Size)
	}
	if ust.Blocks*512 > 1<<20 {
		t.Errorf("upper copy uses %d bytes for 64 MiB of mostly hole: holes were filled", ust.Blocks*512)
	}
	fd, err := unix.Open(filepath.Join(mnt, "sparse"), unix.O_RDONLY, 0)
	must(t, err)
	defer unix.Close(fd)
	hole, err := unix.Seek(fd, 0, unix.SEEK_HOLE)
	if err != nil || hole >= 64<<20 {
		t.Errorf("SEEK_HOLE from 0: %d %v, want a hole before the tail", hole, err)
	}
	data, err := unix.Seek(fd, hole, unix.SEEK_DATA)
	if err != nil || data < hole || data > 64<<20 {
		t.Errorf("SEEK_DATA from %d: %d %v", hole, data, err)
	}
	buf := make([]byte, 5)
	if _, err := unix.Pread(fd, buf, 64<<20); err != nil || string(buf) != "tail!" {
		t.Errorf("read tail: %q %v", buf, err)
	}
}

// TestUtimensOmitNow: UTIME_OMIT keeps a time, UTIME_NOW sets the current one, on a lower file
// that is copied up for it.
func TestUtimensOmitNow(t *testing.T) {
	needMounts(t)
	mnt, _ := mountWritable(t, func(b builder) { b.file("f", "x", 0o644) })
	p := filepath.Join(mnt, "f")
	ts := []unix.Timespec{{Nsec: unix.UTIME_OMIT}, {Nsec: unix.UTIME_NOW}}
	must(t, unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, 0))
	var st unix.Stat_t
	must(t, unix.Stat(p, &st))
	if st.Atim.Nano() != old.UnixNano() {
		t.Errorf("atime %d changed under UTIME_OMIT, want %d", st.Atim.Nano(), old.UnixNano())
	}
	if st.Mtim.Nano() == old.UnixNano() {
		t.Errorf("mtime not changed by UTIME_NOW")
	}
}

// TestCopyFileRangeAndFallocate: copy_file_range between two files of the mount and fallocate
// on a copied-up file.
func TestCopyFileRangeAndFallocate(t *testing.T) {
	needMounts(t)
	mnt, _ := mountWritable(t, func(b builder) { b.file("src", strings.Repeat("0123456789", 1000), 0o644) })
	in, err := os.Open(filepath.Join(mnt, "src"))
	must(t, err)
	defer in.Close()
	out, err := os.Create(filepath.Join(mnt, "dst"))
	must(t, err)
	defer out.Close()
	roff, woff := int64(10), int64(0)
	n, err := unix.CopyFileRange(int(in.Fd()), &roff, int(out.Fd()), &woff, 100, 0)
	if err != nil || n != 100 {
		t.Fatalf("copy_file_range: %d %v", n, err)
	}
	got, err := os.ReadFile(filepath.Join(mnt, "dst"))
	must(t, err)
	if want := strings.Repeat("0123456789", 10); string(got) != want {
		t.Errorf("dst = %q", got)
	}
	f, err := os.OpenFile(filepath.Join(mnt, "src"), os.O_RDWR, 0)
	must(t, err)
	defer f.Close()
	must(t, unix.Fallocate(int(f.Fd()), 0, 0, 1<<20))
	fi, err := f.Stat()
	must(t, err)
	if fi.Size() != 1<<20 {
		t.Errorf("size after fallocate: %d", fi.Size())
	}
}

// TestLongNamesAndDeepPaths: names over 255 bytes fail with ENAMETOOLONG; a tree deeper than
// PATH_MAX works through the mount as on the host.
func TestLongNamesAndDeepPaths(t *testing.T) {
	needMounts(t)
	mnt, st := mountWritable(t, func(b builder) { b.dir("deep", 0o755) })
	long := strings.Repeat("x", 256)
	for name, op := range map[string]func() error{
		"create": func() error { return os.WriteFile(filepath.Join(mnt, long), nil, 0o644) },
		"mkdir":  func() error { return os.Mkdir(filepath.Join(mnt, long), 0o755) },
		"lstat":  func() error { _, err := os.Lstat(filepath.Join(mnt, long)); return err },
	} {
		if err := op(); !errors.Is(err, syscall.ENAMETOOLONG) {
			t.Errorf("%s of a 256-byte name: %v, want ENAMETOOLONG", name, err)
		}
	}
	// 24 levels of 250-byte names: about 6000 bytes below the mount, more than PATH_MAX,
	// walked with *at calls as any program has to.
	comp := strings.Repeat("d", 250)
	dfd, err := unix.Open(filepath.Join(mnt, "deep"), unix.O_RDONLY|unix.O_DIRECTORY, 0)
	must(t, err)
	for i := 0; i < 24; i++ {
		if err := unix.Mkdirat(dfd, comp, 0o755); err != nil {
			t.Fatalf("mkdir at depth %d: %v", i, err)
		}
		next, err := unix.Openat(dfd, comp, unix.O_RDONLY|unix.O_DIRECTORY, 0)
		unix.Close(dfd)
		if err != nil {
			t.Fatalf("open at depth %d: %v", i, err)
		}
		dfd = next
	}
	fd, err := unix.Openat(dfd, "leaf", unix.O_CREAT|unix.O_WRONLY, 0o644)
	must(t, err)
	_, err = unix.Write(fd, []byte("deep"))
	must(t, err)
	unix.Close(fd)
	must(t, unix.Renameat(dfd, "leaf", dfd, "leaf2"))
	must(t, unix.Unlinkat(dfd, "leaf2", 0))
	unix.Close(dfd)
	if _, err := os.Stat(filepath.Join(st.Upper, "deep", comp)); err != nil {
		t.Errorf("deep tree not in the upper: %v", err)
	}
}

// TestAppendAndTruncOpen: O_APPEND writes land at the end of a copied-up file; O_TRUNC of a
// lower file copies no data and leaves the lower untouched.
func TestAppendAndTruncOpen(t *testing.T) {
	needMounts(t)
	mnt, st := mountWritable(t, func(b builder) {
		b.file("a", "start\n", 0o644)
		b.file("t", "to be dropped", 0o600)
	})
	f, err := os.OpenFile(filepath.Join(mnt, "a"), os.O_WRONLY|os.O_APPEND, 0)
	must(t, err)
	_, err = f.WriteAt([]byte("x"), 0)
	if err == nil {
		t.Errorf("WriteAt on an O_APPEND file succeeded")
	}
	_, err = f.Write([]byte("end\n"))
	must(t, err)
	must(t, f.Close())
	got, _ := os.ReadFile(filepath.Join(mnt, "a"))
	if string(got) != "start\nend\n" {
		t.Errorf("after append: %q", got)
	}
	must(t, os.WriteFile(filepath.Join(mnt, "t"), []byte("new"), 0o644))
	got, _ = os.ReadFile(filepath.Join(mnt, "t"))
	if string(got) != "new" {
		t.Errorf("after O_TRUNC write: %q", got)
	}
	fi, err := os.Stat(filepath.Join(mnt, "t"))
	must(t, err)
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("O_TRUNC copy-up changed mode to %v", fi.Mode())
	}
	low, _ := os.ReadFile(filepath.Join(st.Lowers[0], "t"))
	if !bytes.Equal(low, []byte("to be dropped")) {
		t.Errorf("lower changed: %q", low)
	}
}

// TestTmpfileLinkedIntoPlace: an O_TMPFILE file written through the mount and linked into
// place with linkat shows its data under the new name.
func TestTmpfileLinkedIntoPlace(t *testing.T) {
	needMounts(t)
	mnt, st := mountWritable(t, func(b builder) { b.dir("d", 0o755) })
	fd, err := unix.Open(filepath.Join(mnt, "d"), unix.O_TMPFILE|unix.O_RDWR, 0o640)
	must(t, err)
	defer unix.Close(fd)
	_, err = unix.Write(fd, []byte("anonymous"))
	must(t, err)
	must(t, unix.Linkat(unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(fd), unix.AT_FDCWD, filepath.Join(mnt, "d/named"), unix.AT_SYMLINK_FOLLOW))
	got, err := os.ReadFile(filepath.Join(mnt, "d/named"))
	if err != nil || string(got) != "anonymous" {
		t.Errorf("d/named: %q %v", got, err)
	}
	if got, err := os.ReadFile(filepath.Join(st.Upper, "d/named")); err != nil || string(got) != "anonymous" {
		t.Errorf("upper d/named: %q %v", got, err)
	}
}

// TestMknodKinds: fifos, sockets and devices are made in the upper; a character device 0/0,
// which would be a whiteout, is refused with EPERM as the kernel refuses it.
func TestMknodKinds(t *testing.T) {
	needMounts(t)
	mnt, st := mountWritable(t, func(b builder) { b.dir("d", 0o755) })
	kinds := map[string]uint32{"fifo": unix.S_IFIFO, "sock": unix.S_IFSOCK, "chr": unix.S_IFCHR, "blk": unix.S_IFBLK}
	for name, typ := range kinds {
		dev := 0
		if typ == unix.S_IFCHR || typ == unix.S_IFBLK {
			dev = int(unix.Mkdev(1, 3))
		}
		must(t, unix.Mknod(filepath.Join(mnt, "d", name), typ|0o640, dev))
		for _, root := range []string{mnt, st.Upper} {
			var s unix.Stat_t
			must(t, unix.Lstat(filepath.Join(root, "d", name), &s))
			if s.Mode&unix.S_IFMT != typ || s.Mode&0o777 != 0o640 || int(s.Rdev) != dev {
				t.Errorf("%s in %s: mode %o rdev %d", name, root, s.Mode, s.Rdev)
			}
		}
	}
	if err := unix.Mknod(filepath.Join(mnt, "d", "wh"), unix.S_IFCHR|0o600, 0); !errors.Is(err, syscall.EPERM) {
		t.Errorf("mknod of a char 0/0 device: %v, want EPERM", err)
	}
}

// TestOpenFileOutlivesItsName: a file stays readable and writable through a descriptor after
// its last name goes (unlink, rename over it), whether it came from a lower layer or the
// upper, as on the kernel's overlayfs, also with -o noopen (files opened without a handle);
// once closed, layerfs keeps nothing of it.
func TestOpenFileOutlivesItsName(t *testing.T) {
	needMounts(t)
	for _, side := range mountSides() {
		t.Run(side, func(t *testing.T) {
			root := t.TempDir()
			st := newStack(t, root)
			b := builder{t, st.Lowers[0]}
			b.file("lower-rm", "lower data\n", 0o644)
			b.file("lower-over", "old lower\n", 0o644)
			b.file("src", "new\n", 0o644)
			mnt := mkdir(t, root, "mnt")
			mountSide(t, side, st, mnt)
			p := func(n string) string { return filepath.Join(mnt, n) }
			must(t, os.WriteFile(p("upper-rm"), []byte("upper data\n"), 0o644))

			lr, err := os.Open(p("lower-rm"))
			must(t, err)
			defer lr.Close()
			lo, err := os.Open(p("lower-over"))
			must(t, err)
			defer lo.Close()
			ur, err := os.OpenFile(p("upper-rm"), os.O_RDWR, 0)
			must(t, err)
			must(t, os.Remove(p("lower-rm")))
			must(t, os.Rename(p("src"), p("lower-over")))
			must(t, os.Remove(p("upper-rm")))

			for f, want := range map[*os.File]string{lr: "lower data\n", lo: "old lower\n", ur: "upper data\n"} {
				buf := make([]byte, 64)
				n, err := f.ReadAt(buf, 0)
				if string(buf[:n]) != want {
					t.Errorf("%s after its name went: %q (%v), want %q", f.Name(), buf[:n], err, want)
				}
			}
			if _, err := ur.WriteAt([]byte("UPPER"), 0); err != nil {
				t.Errorf("write to the unlinked file: %v", err)
			}
			if err := ur.Chmod(0o600); err != nil {
				t.Errorf("fchmod of the unlinked file: %v", err)
			} else if fi, err := ur.Stat(); err != nil || fi.Mode().Perm() != 0o600 {
				t.Errorf("fstat of the unlinked file after fchmod: %v %v", fi.Mode(), err)
			}
			buf := make([]byte, 64)
			n, _ := ur.ReadAt(buf, 0)
			fi, err := ur.Stat()
			if string(buf[:n]) != "UPPER data\n" || err != nil || fi.Size() != 11 {
				t.Errorf("unlinked file after a write: %q, stat %v", buf[:n], err)
			}
			if data, err := os.ReadFile(p("lower-over")); err != nil || string(data) != "new\n" {
				t.Errorf("lower-over after the rename: %q %v", data, err)
			}
			ur.Close()
			if side == "kernel" {
				return
			}
			waitWorkEmpty(t, st.Work)
		})
	}
}

// TestWriteToRemovedLowerFile: a lower file opened before it was removed can still be read,
// written (with -o noopen, where opening for write copies nothing up, the copy is made then, in
// the work directory) and changed through fchmod; nothing of it stays once it is closed.
func TestWriteToRemovedLowerFile(t *testing.T) {
	needMounts(t)
	for _, side := range mountSides() {
		t.Run(side, func(t *testing.T) {
			root := t.TempDir()
			st := newStack(t, root)
			builder{t, st.Lowers[0]}.file("f", "lower\n", 0o644)
			mnt := mkdir(t, root, "mnt")
			mountSide(t, side, st, mnt)
			w, err := os.OpenFile(filepath.Join(mnt, "f"), os.O_WRONLY, 0)
			must(t, err)
			r, err := os.Open(filepath.Join(mnt, "f"))
			must(t, err)
			must(t, os.Remove(filepath.Join(mnt, "f")))
			if _, err := w.WriteAt([]byte("LOWER"), 0); err != nil {
				t.Errorf("write after the remove: %v", err)
			}
			buf := make([]byte, 16)
			if n, err := r.ReadAt(buf, 0); string(buf[:n]) != "LOWER\n" {
				t.Errorf("read after the write: %q %v", buf[:n], err)
			}
			if err := r.Chmod(0o600); err != nil {
				t.Errorf("fchmod after the remove: %v", err)
			} else if fi, err := r.Stat(); err != nil || fi.Mode().Perm() != 0o600 {
				t.Errorf("fstat after fchmod: %v %v", fi.Mode(), err)
			}
			w.Close()
			r.Close()
			if _, err := os.Stat(filepath.Join(mnt, "f")); !os.IsNotExist(err) {
				t.Errorf("f after the remove: %v", err)
			}
			data, err := os.ReadFile(filepath.Join(st.Lowers[0], "f"))
			if err != nil || string(data) != "lower\n" {
				t.Errorf("the lower file changed: %q %v", data, err)
			}
			if side == "kernel" {
				return
			}
			waitWorkEmpty(t, st.Work)
		})
	}
}

// waitWorkEmpty waits until the work directory holds nothing: the kernel forgets a closed,
// removed file soon after, not at once, and its work-directory link goes then.
func waitWorkEmpty(t *testing.T, workdir string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		left, _ := os.ReadDir(filepath.Join(workdir, "work"))
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("%d objects stay in the work directory after the file was closed", len(left))
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestNoOpenCopiesUpAtFirstWrite documents -o noopen's difference from the kernel: opening a
// lower file for writing copies nothing up (layerfs is not told of the open); the first write
// does, and the view is the kernel's either way.
func TestNoOpenCopiesUpAtFirstWrite(t *testing.T) {
	needMounts(t)
	root := t.TempDir()
	st := newStack(t, root)
	b := builder{t, st.Lowers[0]}
	b.file("first", "1\n", 0o644)
	b.file("f", "lower\n", 0o644)
	mnt := mkdir(t, root, "mnt")
	mountLayerfs(t, st, mnt, "-o", "noopen")
	// The first open reaches layerfs, whose answer switches the kernel to opening by itself.
	data, err := os.ReadFile(filepath.Join(mnt, "first"))
	if err != nil || string(data) != "1\n" {
		t.Fatalf("first: %q %v", data, err)
	}
	w, err := os.OpenFile(filepath.Join(mnt, "f"), os.O_WRONLY, 0)
	must(t, err)
	defer w.Close()
	if _, err := os.Lstat(filepath.Join(st.Upper, "f")); !os.IsNotExist(err) {
		t.Errorf("open for writing copied f up (%v); with noopen the first write does", err)
	}
	_, err = w.WriteAt([]byte("UPPER"), 0)
	must(t, err)
	if data, err := os.ReadFile(filepath.Join(st.Upper, "f")); err != nil || string(data) != "UPPER\n" {
		t.Errorf("upper f after the write: %q %v", data, err)
	}
}
