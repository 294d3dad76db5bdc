package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestIdlePrune: an idle server asks the kernel to forget what nothing uses, and the kernel
// does, but keeps what is in use: a file open, a working directory, and files and directories
// something is mounted on (a container's /etc/hosts, /proc). Names come back as they were,
// with the same inode numbers.
func TestIdlePrune(t *testing.T) {
	needMounts(t)
	root := t.TempDir()
	st := newStack(t, root)
	st.Lowers = append(st.Lowers, mkdir(t, root, "lower2"))
	top, bottom := builder{t, st.Lowers[0]}, builder{t, st.Lowers[1]}
	for i := range 50 {
		bottom.file("d/f"+strconv.Itoa(i), "lower "+strconv.Itoa(i), 0o644)
	}
	top.file("d/top", "top", 0o644) // d merges two layers
	bottom.file("d/open", "held open", 0o644)
	bottom.file("d/target", "under the bind mount", 0o644)
	bottom.dir("busy/deep", 0o755)
	bottom.dir("mp", 0o755)
	top.settle()
	bottom.settle()
	mnt := mkdir(t, root, "mnt")
	logPath := mountLayerfsDebug(t, st, mnt, "-o", "idle_prune=1")

	must(t, os.WriteFile(filepath.Join(mnt, "d", "f1"), []byte("copied up"), 0o644))
	open, err := os.Open(filepath.Join(mnt, "d", "open"))
	must(t, err)
	defer open.Close()
	// A process whose working directory is in the mount.
	sleeper := exec.Command("sleep", "600")
	sleeper.Dir = filepath.Join(mnt, "busy", "deep")
	must(t, sleeper.Start())
	t.Cleanup(func() { sleeper.Process.Kill(); sleeper.Wait() })
	// A file and a directory with something mounted on them.
	outside := filepath.Join(root, "hosts")
	must(t, os.WriteFile(outside, []byte("bound"), 0o644))
	bindMount(t, outside, filepath.Join(mnt, "d", "target"))
	bindMount(t, mkdir(t, root, "bound-dir"), filepath.Join(mnt, "mp"))

	inos := map[string]uint64{}
	must(t, filepath.Walk(mnt, func(p string, fi os.FileInfo, err error) error {
		if err == nil {
			inos[p] = fi.Sys().(*syscall.Stat_t).Ino
		}
		return err
	}))

	// The test makes no request from here on; within a few seconds the server prunes, and
	// the kernel's FORGETs come for the names nothing held (the trace may show them before
	// the server's line).
	before, err := os.ReadFile(logPath)
	must(t, err)
	at := len(before)
	eventually := func(what string, found func(log string) bool) {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			data, err := os.ReadFile(logPath)
			must(t, err)
			if found(string(data)) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("--debug never showed %s", what)
			}
		}
	}
	eventually("the server pruning", func(log string) bool {
		return strings.Contains(log[at:], "layerfs: idle: asked the kernel to forget")
	})
	eventually("FORGETs after the prune", func(log string) bool { return strings.Contains(log[at:], "FORGET") })
	// A stat of a forgotten name asks again.
	fi, err := os.Stat(filepath.Join(mnt, "d", "f2"))
	must(t, err)
	data, err := os.ReadFile(logPath)
	must(t, err)
	if !regexp.MustCompile(`rx \d+: LOOKUP n\d+ .*"f2"`).Match(data[at:]) {
		t.Error("a stat after the prune asked nothing: the kernel kept the name")
	}
	if got := fi.Sys().(*syscall.Stat_t).Ino; got != inos[filepath.Join(mnt, "d", "f2")] {
		t.Errorf("d/f2: inode %d after the prune, %d before", got, inos[filepath.Join(mnt, "d", "f2")])
	}

	// What was in use is as it was.
	buf := make([]byte, 64)
	n, err := open.ReadAt(buf, 0)
	if string(buf[:n]) != "held open" {
		t.Errorf("the file held open reads %q (%v)", buf[:n], err)
	}
	if cwd, err := os.Readlink("/proc/" + strconv.Itoa(sleeper.Process.Pid) + "/cwd"); err != nil || cwd != filepath.Join(mnt, "busy", "deep") {
		t.Errorf("working directory in the mount is now %q (%v)", cwd, err)
	}
	for _, p := range []string{filepath.Join(mnt, "d", "target"), filepath.Join(mnt, "mp")} {
		if mountType(t, p) == "" {
			t.Errorf("%s: no longer a mount point after the prune", p)
		}
	}
	if got, err := os.ReadFile(filepath.Join(mnt, "d", "target")); err != nil || string(got) != "bound" {
		t.Errorf("bind-mounted file reads %q (%v)", got, err)
	}

	// Every name and its inode number as before: upper, lower, merged directories.
	for p, ino := range inos {
		fi, err := os.Lstat(p)
		if err != nil {
			t.Errorf("after the prune: %v", err)
			continue
		}
		if got := fi.Sys().(*syscall.Stat_t).Ino; got != ino {
			t.Errorf("%s: inode %d after the prune, %d before", p, got, ino)
		}
	}
	if got, err := os.ReadFile(filepath.Join(mnt, "d", "f1")); err != nil || string(got) != "copied up" {
		t.Errorf("copied-up file reads %q (%v)", got, err)
	}
}

// bindMount mounts src on dst until the test ends.
func bindMount(t *testing.T, src, dst string) {
	t.Helper()
	if err := unix.Mount(src, dst, "", unix.MS_BIND, ""); err != nil {
		t.Fatalf("bind mount %s on %s: %v", src, dst, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dst, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dst, err)
		}
	})
}
