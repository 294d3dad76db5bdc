package integration

import (
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// rootlessUser is the unprivileged account the rootless tests run layerfs as; .ci/run makes it.
const rootlessUser = "layerfs-test"

// asUser runs a shell script as the unprivileged user and returns its output.
func asUser(t *testing.T, script string) (string, error) {
	t.Helper()
	out, err := exec.Command("su", rootlessUser, "-s", "/bin/sh", "-c", script).CombinedOutput()
	return string(out), err
}

// TestRootless mounts as an unprivileged user through fusermount3: the markers it writes are
// user.overlay.* and char 0/0 whiteouts, and the kernel's overlayfs in userxattr mode shows
// the upper it wrote the same way.
func TestRootless(t *testing.T) {
	needMounts(t)
	u, err := user.Lookup(rootlessUser)
	if err != nil {
		t.Skipf("no user %s to run as (.ci/run creates it): %v", rootlessUser, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	root := t.TempDir()
	must(t, os.Chmod(root, 0o755))
	must(t, os.Chmod(filepath.Dir(root), 0o755))
	ubin := filepath.Join(root, "layerfs")
	data, err := os.ReadFile(bin)
	must(t, err)
	must(t, os.WriteFile(ubin, data, 0o755))
	st := stack{Lowers: []string{root + "/l"}, Upper: root + "/u", Work: root + "/w"}
	lower := builder{t, st.Lowers[0]}
	lower.file("a", "a\n", 0o644)
	lower.file("gone", "g", 0o644)
	lower.file("d/old", "o", 0o644)
	lower.settle()
	mnt := root + "/m"
	for _, d := range []string{root + "/l", root + "/l/d", st.Upper, st.Work, mnt} {
		mkdir(t, d, "")
		must(t, os.Lchown(d, uid, gid))
	}
	for _, f := range []string{"a", "gone", "d/old"} {
		must(t, os.Lchown(filepath.Join(st.Lowers[0], f), uid, gid))
	}
	t.Cleanup(func() {
		asUser(t, "fusermount3 -u "+mnt)
		unmountFuse(t, mnt)
	})
	out, err := asUser(t, ubin+" -o "+st.options()+" "+mnt+
		" && echo more >> "+mnt+"/a && rm "+mnt+"/gone && rm -rf "+mnt+"/d && mkdir "+mnt+"/d && echo n > "+mnt+"/d/new"+
		" && cat "+mnt+"/a && ls "+mnt+" "+mnt+"/d && fusermount3 -u "+mnt)
	if err != nil {
		t.Fatalf("as %s: %v\n%s", rootlessUser, err, out)
	}
	if !strings.Contains(out, "a\nmore") || strings.Contains(out, "gone") || strings.Contains(out, "old") {
		t.Errorf("the user's view:\n%s", out)
	}
	var ws unix.Stat_t
	must(t, unix.Lstat(filepath.Join(st.Upper, "gone"), &ws))
	if ws.Mode&unix.S_IFMT != unix.S_IFCHR || ws.Rdev != 0 {
		t.Errorf("rootless whiteout is mode %o rdev %d, want a char 0/0 device", ws.Mode, ws.Rdev)
	}
	buf := make([]byte, 8)
	if n, err := unix.Lgetxattr(filepath.Join(st.Upper, "d"), "user.overlay.opaque", buf); err != nil || string(buf[:n]) != "y" {
		t.Errorf("recreated d: user.overlay.opaque %q %v", buf[:n], err)
	}
	if _, err := unix.Lgetxattr(filepath.Join(st.Upper, "d"), "trusted.overlay.opaque", buf); err == nil {
		t.Error("a rootless mount wrote trusted.overlay.opaque")
	}
	// Without access to /dev/fuse the user is told what is missing, not an exit code.
	fi, err := os.Stat("/dev/fuse")
	must(t, err)
	t.Cleanup(func() { os.Chmod("/dev/fuse", fi.Mode().Perm()) })
	must(t, os.Chmod("/dev/fuse", 0o600))
	out, err = asUser(t, ubin+" -o "+st.options()+" "+mnt)
	must(t, os.Chmod("/dev/fuse", fi.Mode().Perm()))
	if err == nil || !strings.Contains(out, "/dev/fuse") || strings.Count(strings.TrimSpace(out), "\n") != 0 {
		t.Errorf("mount without access to /dev/fuse: %v\n%s", err, out)
	}

	kmnt := mkdir(t, root, "k")
	mountKernel(t, st, kmnt, "userxattr")
	view := snapshot(t, kmnt, false)
	if got := strings.Join(sortedKeys(view), " "); got != "a d d/new" {
		t.Errorf("the kernel (userxattr) shows %q of the rootless upper, want \"a d d/new\"", got)
	}
}

func sortedKeys(tr tree) []string {
	var out []string
	for p := range tr {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}
