package integration

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestCrashDuringCopyUp kills the server while it copies a large file up, then mounts again:
// the file shows either its old or its new contents, never a part; no temporary object shows
// or stays behind; the lower layer is unchanged.
func TestCrashDuringCopyUp(t *testing.T) {
	needMounts(t)
	root := t.TempDir()
	st := newStack(t, root)
	big := bytes.Repeat([]byte("0123456789abcdef"), 32<<20/16) // 32 MiB of data, no holes
	must(t, os.WriteFile(filepath.Join(st.Lowers[0], "big"), big, 0o644))
	lowerSum := sha256.Sum256(big)
	mnt := mkdir(t, root, "mnt")

	// At least 20 attempts, and more (up to 60) until a kill has landed mid-copy: without
	// one the test would not have tested a crash during copy-up.
	var oldSeen, newSeen, midCopy int
	for attempt := 0; attempt < 20 || midCopy == 0 && attempt < 60; attempt++ {
		cmd := exec.Command(bin, "-f", "-o", st.options()+",volatile"+killableTransport, mnt)
		must(t, cmd.Start())
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		waitMounted(t, mnt, done)
		// Open for append starts the copy-up; kill the server while it runs, a little later
		// each attempt.
		opened := make(chan error, 1)
		go func() {
			f, err := os.OpenFile(filepath.Join(mnt, "big"), os.O_WRONLY|os.O_APPEND, 0)
			if err == nil {
				_, err = f.Write([]byte("appended"))
				f.Close()
			}
			opened <- err
		}()
		time.Sleep(time.Duration(attempt) * time.Millisecond)
		killServer(t, cmd, done, mnt)
		<-opened // an error: the server died under it, or success: it finished first
		unmountFuse(t, mnt)
		if left, _ := os.ReadDir(filepath.Join(st.Work, "work")); len(left) > 0 {
			midCopy++ // killed with a copy under construction
		}

		mountLayerfs(t, st, mnt)
		data, err := os.ReadFile(filepath.Join(mnt, "big"))
		must(t, err)
		switch {
		case bytes.Equal(data, big):
			oldSeen++
		case len(data) == len(big)+len("appended") && bytes.Equal(data[:len(big)], big) && string(data[len(big):]) == "appended":
			newSeen++
		default:
			t.Fatalf("attempt %d: big has %d bytes after the crash: neither the old nor the new contents", attempt, len(data))
		}
		ents, _ := os.ReadDir(mnt)
		for _, e := range ents {
			if e.Name() != "big" {
				t.Errorf("attempt %d: %s shows after the crash", attempt, e.Name())
			}
		}
		if left, _ := os.ReadDir(filepath.Join(st.Work, "work")); len(left) != 0 {
			t.Errorf("attempt %d: %d stale objects in the work directory after remount", attempt, len(left))
		}
		unmountFuse(t, mnt)
		// Start again from a clean upper.
		must(t, os.RemoveAll(st.Upper))
		must(t, os.Mkdir(st.Upper, 0o755))
	}
	t.Logf("after the crashes: %d times the old contents, %d times the new; %d killed mid-copy", oldSeen, newSeen, midCopy)
	if midCopy == 0 {
		t.Errorf("no kill landed while a copy was under construction (%d times the old contents, %d the new): a crash during copy-up was not tested", oldSeen, newSeen)
	}
	lower, err := os.ReadFile(filepath.Join(st.Lowers[0], "big"))
	must(t, err)
	if sha256.Sum256(lower) != lowerSum {
		t.Error("the lower layer changed")
	}
}

// TestUpperFull: with a small upper, copy-up and writes fail with ENOSPC; nothing partial
// shows, the lower stays readable, and once space is freed the mount works again. The failed
// copy-up is in the problem log with its cause.
func TestUpperFull(t *testing.T) {
	needMounts(t)
	root := t.TempDir()
	small := mkdir(t, root, "small")
	if err := unix.Mount("tmpfs", small, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatalf("mount a 1 MiB tmpfs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(small, unix.MNT_DETACH) })
	st := stack{Lowers: []string{mkdir(t, root, "lower")}, Upper: mkdir(t, small, "upper"), Work: mkdir(t, small, "work")}
	big := bytes.Repeat([]byte("x"), 2<<20)
	must(t, os.WriteFile(filepath.Join(st.Lowers[0], "big"), big, 0o644))
	mnt := mkdir(t, root, "mnt")
	logFile := filepath.Join(root, "problems.log")
	mountLayerfs(t, st, mnt, "-o", "log="+logFile)

	f, err := os.OpenFile(filepath.Join(mnt, "big"), os.O_WRONLY|os.O_APPEND, 0)
	if !errors.Is(err, syscall.ENOSPC) {
		if f != nil {
			f.Close()
		}
		t.Fatalf("copy-up of 2 MiB into a 1 MiB upper: %v, want ENOSPC", err)
	}
	if data, err := os.ReadFile(filepath.Join(mnt, "big")); err != nil || !bytes.Equal(data, big) {
		t.Errorf("big after the failed copy-up: %d bytes, %v", len(data), err)
	}
	if _, err := os.Stat(filepath.Join(st.Upper, "big")); !os.IsNotExist(err) {
		t.Errorf("a partial copy is in the upper: %v", err)
	}
	if left, _ := os.ReadDir(filepath.Join(st.Work, "work")); len(left) != 0 {
		t.Errorf("%d objects left in the work directory", len(left))
	}
	// The server logs before it answers: the line is there once open(2) has returned.
	if data, _ := os.ReadFile(logFile); !strings.Contains(string(data), "copy-up of /big from layer 1") || !strings.Contains(string(data), "no space left on device") {
		t.Errorf("problem log after the failed copy-up:\n%s", data)
	}
	err = os.WriteFile(filepath.Join(mnt, "fill"), bytes.Repeat([]byte("y"), 2<<20), 0o644)
	if !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("writing 2 MiB into a 1 MiB upper: %v, want ENOSPC", err)
	}
	must(t, os.Remove(filepath.Join(mnt, "fill")))
	// The space comes back when the server closes its descriptor of the removed file, at the
	// kernel's RELEASE, which FUSE sends after close(2) has returned (the kernel's overlayfs
	// closes at once): wait for the upper to have room again.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		var sfs unix.Statfs_t
		must(t, unix.Statfs(small, &sfs))
		if sfs.Bavail*uint64(sfs.Bsize) >= 512<<10 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the upper has %d bytes free 10 s after the removal", sfs.Bavail*uint64(sfs.Bsize))
		}
	}
	must(t, os.WriteFile(filepath.Join(mnt, "small"), []byte("fits"), 0o644))
	if data, err := os.ReadFile(filepath.Join(mnt, "small")); err != nil || string(data) != "fits" {
		t.Errorf("after freeing space: %q %v", data, err)
	}
	if out, _ := exec.Command("sh", "-c", "ls "+mnt).CombinedOutput(); !strings.Contains(string(out), "big") {
		t.Errorf("listing after ENOSPC: %s", out)
	}
}

// TestCrashDuringRenamesAndRmdir kills the server while a program moves lower files and
// removes a lower tree, then mounts again: every file is at its old name or its new one,
// exactly once and whole; the tree is there or gone, or has lost whole entries; nothing
// half-made shows, the work directory is clean, the lower is unchanged.
func TestCrashDuringRenamesAndRmdir(t *testing.T) {
	needMounts(t)
	root := t.TempDir()
	st := newStack(t, root)
	lower := builder{t, st.Lowers[0]}
	const n = 200
	for i := 0; i < n; i++ {
		lower.file(filepath.Join("src", strconv.Itoa(i)), strings.Repeat(strconv.Itoa(i), 100), 0o644)
		lower.file(filepath.Join("tree", strconv.Itoa(i%10), strconv.Itoa(i)), "t", 0o644)
	}
	lower.settle()
	before := snapshot(t, st.Lowers[0], false)
	mnt := mkdir(t, root, "mnt")
	for attempt := 0; attempt < 8; attempt++ {
		cmd := exec.Command(bin, "-f", "-o", st.options()+killableTransport, mnt)
		must(t, cmd.Start())
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		waitMounted(t, mnt, done)
		os.Mkdir(filepath.Join(mnt, "dst"), 0o755)
		worker := exec.Command("sh", "-c", "cd "+mnt+" && for f in src/*; do mv $f dst/; done; rm -rf tree")
		must(t, worker.Start())
		time.Sleep(time.Duration(5+attempt*15) * time.Millisecond)
		killServer(t, cmd, done, mnt)
		worker.Wait()
		unmountFuse(t, mnt)

		mountLayerfs(t, st, mnt)
		for i := 0; i < n; i++ {
			name := strconv.Itoa(i)
			a, errA := os.ReadFile(filepath.Join(mnt, "src", name))
			b, errB := os.ReadFile(filepath.Join(mnt, "dst", name))
			want := strings.Repeat(name, 100)
			switch {
			case errA == nil && errB == nil:
				t.Fatalf("attempt %d: %s is both at src and dst", attempt, name)
			case errA == nil && string(a) != want, errB == nil && string(b) != want:
				t.Fatalf("attempt %d: %s has wrong contents", attempt, name)
			case errA != nil && errB != nil:
				t.Fatalf("attempt %d: %s is lost (%v, %v)", attempt, name, errA, errB)
			}
		}
		if ents, err := os.ReadDir(filepath.Join(mnt, "tree")); err == nil {
			for _, e := range ents {
				if !e.IsDir() {
					t.Errorf("attempt %d: tree/%s is not a directory", attempt, e.Name())
				}
			}
		}
		if left, _ := os.ReadDir(filepath.Join(st.Work, "work")); len(left) != 0 {
			t.Errorf("attempt %d: %d stale objects in the work directory after remount", attempt, len(left))
		}
		snapshot(t, mnt, true) // the whole view is consistent: readdir and lstat agree
		unmountFuse(t, mnt)
	}
	compareTrees(t, before, snapshot(t, st.Lowers[0], false))
}

// TestNoEscapeThroughChangedLayer: a lower directory swapped for a symlink to outside the
// layer while mounted (lowers must not change, but may) never leads layerfs out of the layer:
// reads, listings, copy-ups and xattr reads through names it had looked up before fail rather
// than reach the target, and copy-up does not take the symlink for the directory.
func TestNoEscapeThroughChangedLayer(t *testing.T) {
	needMounts(t)
	root := t.TempDir()
	st := newStack(t, root)
	outside := mkdir(t, root, "outside")
	must(t, os.WriteFile(filepath.Join(outside, "secret"), []byte("secret"), 0o600))
	lower := builder{t, st.Lowers[0]}
	lower.file("d/secret", "inside", 0o644)
	lower.settle()
	// The mountpoint sits deeper than the layer, so the relative symlink below reaches the
	// outside file only when resolved inside the layer, never from the merged view: whatever
	// reaches it was a walk through the layer following the link.
	mnt := mkdir(t, root, "a/b/mnt")
	mountLayerfs(t, st, mnt)
	if data, err := os.ReadFile(filepath.Join(mnt, "d/secret")); err != nil || string(data) != "inside" {
		t.Fatalf("before the swap: %q %v", data, err)
	}
	// Swap the lower directory for a symlink to outside, under the mount's feet.
	must(t, os.RemoveAll(filepath.Join(st.Lowers[0], "d")))
	must(t, os.Symlink("../outside", filepath.Join(st.Lowers[0], "d")))

	for name, op := range map[string]func() ([]byte, error){
		"read": func() ([]byte, error) { return os.ReadFile(filepath.Join(mnt, "d/secret")) },
		"listing": func() ([]byte, error) {
			e, err := os.ReadDir(filepath.Join(mnt, "d"))
			return []byte(fmt.Sprint(e)), err
		},
		"copy-up": func() ([]byte, error) {
			err := os.WriteFile(filepath.Join(mnt, "d/secret"), []byte("overwrite"), 0o644)
			return nil, err
		},
		"xattr": func() ([]byte, error) {
			buf := make([]byte, 64)
			n, err := unix.Getxattr(filepath.Join(mnt, "d/secret"), "user.x", buf)
			return buf[:max(n, 0)], err
		},
	} {
		data, err := op()
		if err == nil && bytes.Contains(data, []byte("secret")) {
			t.Errorf("%s through the swapped directory reached outside the layer: %q", name, data)
		}
	}
	if data, _ := os.ReadFile(filepath.Join(outside, "secret")); string(data) != "secret" {
		t.Errorf("the file outside the layer was changed: %q", data)
	}
	if fi, err := os.Lstat(filepath.Join(st.Upper, "d")); err == nil && fi.Mode()&os.ModeSymlink != 0 {
		t.Error("copy-up put the swapped-in symlink into the upper")
	}
	if data, err := os.ReadFile(filepath.Join(st.Upper, "d", "secret")); err == nil && string(data) == "secret" {
		t.Error("the outside file was copied into the upper")
	}
}
