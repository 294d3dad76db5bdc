package integration

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestPassthrough: as root, reads and writes of open files go from the kernel to the layers'
// files without the daemon (FUSE passthrough), so they complete while the daemon is stopped;
// and the two differences it brings are as documented: a lower file of 1 MiB or more open
// for reading cannot be opened for writing as well (ETXTBSY), and a descriptor opened before
// a copy-up reads the lower file until it is closed. Smaller files opened for reading go
// through the page cache and behave as on the kernel; -o nopassthrough serves all of them so.
func TestPassthrough(t *testing.T) {
	needMounts(t)
	root := t.TempDir()
	st := newStack(t, root)
	big := make([]byte, 4<<20)
	rand.New(rand.NewSource(1)).Read(big)
	b := builder{t, st.Lowers[0]}
	b.file("big", string(big), 0o644)
	b.file("w", "lower data", 0o644)
	b.file("busy", "lower data"+strings.Repeat("\x00", 1<<20), 0o644)
	b.file("small", "lower data", 0o644)
	for i := range 5 {
		b.file("closed"+strconv.Itoa(i), "lower data"+strings.Repeat("\x00", 1<<20), 0o644)
	}
	mnt := mkdir(t, root, "mnt")
	mountLayerfs(t, st, mnt)

	ro, err := os.Open(filepath.Join(mnt, "big"))
	must(t, err)
	defer ro.Close()
	rw, err := os.OpenFile(filepath.Join(mnt, "w"), os.O_RDWR, 0) // copies w up
	must(t, err)
	defer rw.Close()
	// Reading big through the mount must not find it in a page cache: drop the lower file's.
	lf, err := os.Open(filepath.Join(st.Lowers[0], "big"))
	must(t, err)
	must(t, unix.Fadvise(int(lf.Fd()), 0, 0, unix.FADV_DONTNEED))
	lf.Close()

	_, err = rw.WriteAt([]byte("UPPER"), 0)
	must(t, err)
	// The first write(2) asks the daemon once whether the file has a capability to drop (a
	// GETXATTR; TestWritesAskNoCapability); reads and later writes do not reach it.
	withServerStopped(t, mnt, func() error {
		got := make([]byte, len(big))
		if n, err := ro.ReadAt(got, 0); err != nil || !bytes.Equal(got[:n], big) {
			return fmt.Errorf("reading a lower file: %d bytes, %v", n, err)
		}
		buf := make([]byte, 20)
		if n, _ := rw.ReadAt(buf, 0); string(buf[:n]) != "UPPER data" {
			return fmt.Errorf("reading back an upper file: %q", buf[:n])
		}
		return nil
	})
	if got, _ := os.ReadFile(filepath.Join(st.Upper, "w")); string(got) != "UPPER data" {
		t.Errorf("upper w = %q, want %q", got, "UPPER data")
	}
	ro.Close()
	rw.Close()

	// A lower file of 1 MiB or more open for reading (so by passthrough): a copy-up by chmod
	// leaves reads as they were, opening it for writing fails, and once the reader is closed
	// it opens for writing and the new contents are what every later open reads.
	p := filepath.Join(mnt, "busy")
	reader, err := os.Open(p)
	must(t, err)
	head := func(f *os.File) string {
		buf := make([]byte, 10)
		n, _ := f.ReadAt(buf, 0)
		return string(buf[:n])
	}
	if got := head(reader); got != "lower data" {
		t.Errorf("read: %q", got)
	}
	must(t, os.Chmod(p, 0o600))
	if f, err := os.Open(p); err != nil || head(f) != "lower data" {
		t.Errorf("read after chmod: %v", err)
	} else {
		f.Close()
	}
	if f, err := os.OpenFile(p, os.O_WRONLY, 0); !errors.Is(err, syscall.ETXTBSY) {
		t.Errorf("opening for writing a large lower file open for reading: %v, want ETXTBSY", err)
		if err == nil {
			f.Close()
		}
	}
	must(t, os.Truncate(p, 5))
	if got := head(reader); got != "lower data" {
		t.Errorf("descriptor opened before the copy-up reads %q, want the lower file's %q", got, "lower data")
	}
	must(t, reader.Close())
	must(t, os.WriteFile(p, []byte("new"), 0o600))
	if got, err := os.ReadFile(p); err != nil || string(got) != "new" {
		t.Errorf("read after rewrite: %q %v", got, err)
	}

	// Opening for writing right after the last reader closed works: the kernel sends the
	// reader's RELEASE after close(2) has returned, and the open waits for it.
	for i := range 5 {
		p := filepath.Join(mnt, "closed"+strconv.Itoa(i))
		f, err := os.Open(p)
		must(t, err)
		head(f)
		must(t, f.Close())
		w, err := os.OpenFile(p, os.O_WRONLY, 0)
		if err != nil {
			t.Fatalf("opening %s for writing after its reader closed: %v", p, err)
		}
		must(t, w.Close())
	}

	// A smaller file is read through the page cache, and behaves as on the kernel: opening
	// it for writing while it is open for reading works, and the reader sees the copy.
	// writeUnderReader writes "UPPER" at the start of p through a second descriptor while a
	// first, opened before, stays open, and returns what the first then reads.
	writeUnderReader := func(p string) string {
		reader, err := os.Open(p)
		must(t, err)
		defer reader.Close()
		w, err := os.OpenFile(p, os.O_WRONLY, 0)
		if err != nil {
			t.Fatalf("opening %s for writing while it is open for reading: %v", p, err)
		}
		_, err = w.WriteAt([]byte("UPPER"), 0)
		must(t, err)
		must(t, w.Close())
		return head(reader)
	}
	if got := writeUnderReader(filepath.Join(mnt, "small")); got != "UPPER data" {
		t.Errorf("descriptor opened before the copy-up of a small file reads %q, want the copy's", got)
	}

	// Without passthrough the same opens go through the daemon, as on the kernel's overlayfs.
	unmountFuse(t, mnt)
	b.file("busy2", "lower data"+strings.Repeat("\x00", 1<<20), 0o644)
	mountLayerfs(t, st, mnt, "-o", "nopassthrough")
	if got := writeUnderReader(filepath.Join(mnt, "busy2")); got != "UPPER data" {
		t.Errorf("-o nopassthrough: descriptor opened before the copy-up reads %q, want the copy's", got)
	}
}

// withServerStopped stops the daemon serving mnt, runs op, and continues the daemon. op must
// finish within 30 s: a request that reaches the stopped daemon waits until it continues, so
// then op fails the test.
func withServerStopped(t *testing.T, mnt string, op func() error) {
	t.Helper()
	pid := serverPid(t, mnt)
	must(t, unix.Kill(pid, unix.SIGSTOP))
	resumed := false
	resume := func() {
		if !resumed {
			resumed = true
			unix.Kill(pid, unix.SIGCONT)
		}
	}
	t.Cleanup(resume)
	done := make(chan error, 1)
	go func() { done <- op() }()
	select {
	case err := <-done:
		resume()
		if err != nil {
			t.Error(err)
		}
	case <-time.After(30 * time.Second):
		resume()
		t.Errorf("I/O on open files waited for the stopped daemon: not passthrough")
		<-done
	}
}

// TestSetIDWriteNotPassthrough: a file carrying a set-id bit is opened for writing through
// the daemon, which drops the bits a write must drop; while passthrough files of it are open
// for reading, such an open waits for them, then fails with ETXTBSY (README, "What differs").
func TestSetIDWriteNotPassthrough(t *testing.T) {
	needMounts(t)
	root := t.TempDir()
	must(t, os.Chmod(root, 0o755))
	must(t, os.Chmod(filepath.Dir(root), 0o755))
	st := newStack(t, root)
	up := builder{t, st.Upper}
	up.file("suid", "data"+strings.Repeat("\x00", 2<<20), 0o777)
	up.chmod("suid", 0o4777)
	mnt := mkdir(t, root, "mnt")
	mountLayerfs(t, st, mnt)
	p := filepath.Join(mnt, "suid")
	reader, err := os.Open(p) // 2 MiB: by passthrough
	must(t, err)
	if f, err := os.OpenFile(p, os.O_WRONLY, 0); !errors.Is(err, syscall.ETXTBSY) {
		t.Errorf("opening a set-uid file for writing beside a passthrough reader: %v, want ETXTBSY", err)
		if err == nil {
			f.Close()
		}
	}
	must(t, reader.Close())
	out := withFsIDs(func() string {
		f, err := os.OpenFile(p, os.O_WRONLY, 0)
		if err != nil {
			return errName(err)
		}
		_, err = f.WriteAt([]byte("DATA"), 0)
		f.Close()
		return errName(err)
	})
	var fst unix.Stat_t
	must(t, unix.Stat(p, &fst))
	if out != "ok" || fst.Mode&07777 != 0o777 {
		t.Errorf("a write by an unprivileged user after the reader closed: %s, mode %o; want ok, 777", out, fst.Mode&07777)
	}
}

// TestPassthroughNoatime: under -o noatime, backing files are registered on noatime clones of
// the layers' mounts (unionfs/atime.go), and reads and writes of large files still go by
// passthrough: no READ or WRITE reaches the daemon, and no atime moves
// (TestWrittenThenRead, TestAtimeOptions compare those with the kernel).
func TestPassthroughNoatime(t *testing.T) {
	needMounts(t)
	root := t.TempDir()
	st := newStack(t, root)
	big := strings.Repeat("lower data\n", 200000)
	b := builder{t, st.Lowers[0]}
	b.file("lbig", big, 0o644)
	b.settle()
	mnt := mkdir(t, root, "mnt")
	logPath := mountLayerfsDebug(t, st, mnt, "-o", "noatime")
	os.Stat(filepath.Join(mnt, "mark-start"))
	must(t, os.WriteFile(filepath.Join(mnt, "ubig"), []byte(big), 0o644))
	for _, n := range []string{"lbig", "ubig"} {
		got, err := os.ReadFile(filepath.Join(mnt, n))
		if err != nil || string(got) != big {
			t.Errorf("read %s back: %d bytes, %v", n, len(got), err)
		}
	}
	os.Stat(filepath.Join(mnt, "mark-end"))
	counts := requestsBetween(t, logPath, "mark-start", "mark-end")
	if counts["READ"] != 0 || counts["WRITE"] != 0 {
		t.Errorf("READ or WRITE reached the daemon: %v", counts)
	}
	data, err := os.ReadFile(logPath)
	must(t, err)
	if n := strings.Count(string(data), "BACKING_OPEN"); n < 2 {
		t.Errorf("%d backing files registered, want one per file", n)
	}
}
