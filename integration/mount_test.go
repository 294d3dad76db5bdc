package integration

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// stack names the directories of one layer stack.
type stack struct {
	Lowers []string // topmost first
	Upper  string
	Work   string
}

// newStack makes the usual stack below root: one lower, an upper and a work directory,
// named lower, upper and work.
func newStack(t testing.TB, root string) stack {
	t.Helper()
	return stack{Lowers: []string{mkdir(t, root, "lower")}, Upper: mkdir(t, root, "upper"), Work: mkdir(t, root, "work")}
}

func (s stack) options() string {
	o := "lowerdir=" + strings.Join(s.Lowers, ":")
	if s.Upper != "" {
		o += ",upperdir=" + s.Upper + ",workdir=" + s.Work
	}
	return o
}

// mountEntry is one line of /proc/self/mountinfo.
type mountEntry struct {
	Device     string // "major:minor"
	Mountpoint string
	Options    string // the per-mount options (rw,nosuid,relatime …)
	Type       string
	Source     string
}

// mounts reads /proc/self/mountinfo, the one parser of it the tests use: "id parent
// major:minor root mountpoint options [optional fields…] - type source superoptions".
func mounts() []mountEntry {
	data, _ := os.ReadFile("/proc/self/mountinfo")
	var out []mountEntry
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 10 {
			continue
		}
		e := mountEntry{Device: f[2], Mountpoint: unescapeMountinfo(f[4]), Options: f[5]}
		for i := 6; i < len(f)-2; i++ {
			if f[i] == "-" {
				e.Type, e.Source = f[i+1], unescapeMountinfo(f[i+2])
				break
			}
		}
		out = append(out, e)
	}
	return out
}

// mountAt is the visible mount on mnt (the last one mounted there); ok is false when nothing
// is mounted there.
func mountAt(mnt string) (e mountEntry, ok bool) {
	for _, m := range mounts() {
		if m.Mountpoint == mnt {
			e, ok = m, true
		}
	}
	return e, ok
}

// mountType returns the filesystem type mounted at mnt ("" when nothing is).
func mountType(t testing.TB, mnt string) string {
	e, _ := mountAt(mnt)
	return e.Type
}

func unescapeMountinfo(s string) string {
	r := strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`)
	return r.Replace(s)
}

// mountLayerfs mounts st on mnt with the program under test, called the way container engines
// call a mount program, and unmounts it when the test ends. It fails t unless the program
// returned 0 with the mount already live.
func mountLayerfs(t testing.TB, st stack, mnt string, extra ...string) {
	t.Helper()
	args := append([]string{"-o", st.options()}, extra...)
	args = append(args, mnt)
	out, err := exec.Command(bin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %q: %v\n%s", bin, args, err, out)
	}
	t.Cleanup(func() { unmountFuse(t, mnt) })
	if typ := mountType(t, mnt); !strings.HasPrefix(typ, "fuse") {
		t.Fatalf("%s returned but %s is not a FUSE mount (type %q)", bin, mnt, typ)
	}
}

// unmountFuse unmounts a FUSE mount and waits until its server process is gone, so no daemon
// outlives the test.
func unmountFuse(t testing.TB, mnt string) {
	t.Helper()
	if mountType(t, mnt) == "" {
		return
	}
	pids := serverPids(mnt)
	conn := connectionOf(mnt)
	if out, err := exec.Command("fusermount3", "-u", mnt).CombinedOutput(); err != nil {
		t.Logf("fusermount3 -u %s: %v %s; detaching", mnt, err, out)
		if err := unix.Unmount(mnt, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", mnt, err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, pid := range pids {
		for processAlive(pid) {
			if time.Now().After(deadline) {
				t.Errorf("layerfs server %d for %s still running after unmount; killing it", pid, mnt)
				unix.Kill(pid, unix.SIGKILL)
				if time.Sleep(time.Second); processAlive(pid) {
					abortMinor(t, conn)
				}
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// serverPids finds the processes serving mnt: layerfs servers name their mountpoint on the
// command line, last or (started by mount.fuse3) before the options.
func serverPids(mnt string) []int { return daemonPids(mnt, filepath.Base(bin)) }

// daemonPids lists the processes named base whose arguments include mnt.
func daemonPids(mnt, base string) []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		var pid int
		if _, err := fmt.Sscan(e.Name(), &pid); err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
		if len(args) < 2 || filepath.Base(args[0]) != base {
			continue
		}
		for _, a := range args[1:] {
			if a == mnt {
				pids = append(pids, pid)
				break
			}
		}
	}
	return pids
}

// serverPid is the one layerfs server serving mnt; the test fails unless there is exactly one.
func serverPid(t testing.TB, mnt string) int {
	t.Helper()
	pids := serverPids(mnt)
	if len(pids) != 1 {
		t.Fatalf("servers of %s: %v, want one", mnt, pids)
	}
	return pids[0]
}

// fdCount is the number of descriptors process pid holds.
func fdCount(t testing.TB, pid int) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// processAlive reports whether pid runs (a zombie counts as gone).
func processAlive(pid int) bool {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(data, ')')
	return i < 0 || i+2 >= len(data) || data[i+2] != 'Z'
}

// mountKernel mounts st with the kernel's overlayfs (extra options appended) and unmounts it
// when the test ends.
func mountKernel(t testing.TB, st stack, mnt string, extra ...string) {
	t.Helper()
	opts := st.options()
	if len(extra) > 0 {
		opts += "," + strings.Join(extra, ",")
	}
	if err := unix.Mount("overlay", mnt, "overlay", 0, opts); err != nil {
		t.Fatalf("mount -t overlay -o %s %s: %v", opts, mnt, err)
	}
	t.Cleanup(func() {
		if err := syscallUnmount(mnt); err != nil {
			t.Errorf("umount %s: %v; detaching", mnt, err)
			unix.Unmount(mnt, unix.MNT_DETACH)
		}
	})
}

// copyTree copies src to dst with all metadata (xattrs, owners, hard links, devices).
func copyTree(t testing.TB, src, dst string) {
	t.Helper()
	if out, err := exec.Command("cp", "-a", src, dst).CombinedOutput(); err != nil {
		t.Fatalf("cp -a %s %s: %v\n%s", src, dst, err, out)
	}
}

// syscallUnmount unmounts mnt if something is mounted there.
func syscallUnmount(mnt string) error {
	if err := unix.Unmount(mnt, 0); err != nil && err != unix.EINVAL {
		return err
	}
	return nil
}

// killableTransport is appended to the options of servers a test kills in the middle of
// requests: over io_uring such a server can be left unkillable on Linux 6.18 (README,
// Performance), so they take requests from /dev/fuse, which is why io_uring is not the
// default.
const killableTransport = ",io_uring=off"

// killServer SIGKILLs a server started with -f and waits for it. A server killed while it
// waits on its own mount (go-fuse opens the mount once as it starts) cannot finish dying until
// its FUSE connection is aborted, which is then done.
func killServer(t testing.TB, cmd *exec.Cmd, done <-chan error, mnt string) {
	t.Helper()
	cmd.Process.Kill()
	select {
	case <-done:
		return
	case <-time.After(5 * time.Second):
	}
	t.Logf("server %d stuck after SIGKILL; aborting the FUSE connection of %s", cmd.Process.Pid, mnt)
	abortConnection(t, mnt)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("server %d still there after its connection was aborted", cmd.Process.Pid)
	}
}

// mountDevice is the device ("major:minor") of the filesystem mounted at mnt ("" when
// nothing is mounted there).
func mountDevice(mnt string) string {
	e, _ := mountAt(mnt)
	return e.Device
}

// connectionOf names the FUSE connection of the filesystem mounted at mnt: its device minor
// number ("" when nothing is mounted there).
func connectionOf(mnt string) string {
	_, minor, _ := strings.Cut(mountDevice(mnt), ":")
	return minor
}

// mountSides are the ways the tests that compare with the kernel mount a stack: the kernel's
// overlayfs, layerfs, and layerfs -o noopen.
func mountSides() []string { return []string{"kernel", testedName(), "noopen"} }

// mountSide mounts st on mnt the way side (one of mountSides) names.
func mountSide(t testing.TB, side string, st stack, mnt string) {
	t.Helper()
	switch side {
	case "kernel":
		mountKernel(t, st, mnt)
	case "noopen":
		mountLayerfs(t, st, mnt, "-o", "noopen")
	case "nopassthrough":
		mountLayerfs(t, st, mnt, "-o", "nopassthrough")
	default:
		mountLayerfs(t, st, mnt)
	}
}

// abortConnection aborts the FUSE connection of the filesystem mounted at mnt.
func abortConnection(t testing.TB, mnt string) {
	t.Helper()
	minor := connectionOf(mnt)
	if minor == "" {
		t.Errorf("no mount at %s to abort", mnt)
		return
	}
	abortMinor(t, minor)
}

// abortMinor aborts FUSE connection minor through the fusectl filesystem, mounting that for
// the while if it is not mounted.
func abortMinor(t testing.TB, minor string) {
	t.Helper()
	const ctl = "/sys/fs/fuse/connections"
	if _, err := os.Stat(ctl + "/" + minor); err != nil {
		if err := unix.Mount("fusectl", ctl, "fusectl", 0, ""); err != nil {
			t.Errorf("mount fusectl: %v", err)
			return
		}
		defer unix.Unmount(ctl, 0)
	}
	if err := os.WriteFile(ctl+"/"+minor+"/abort", []byte("1"), 0o200); err != nil {
		t.Errorf("abort FUSE connection %s: %v", minor, err)
	}
}
