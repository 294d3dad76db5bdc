package integration

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestSELinuxLabelsWithoutSELinux: on a host without SELinux, an object without a
// security.selinux label answers EOPNOTSUPP for it (the kernel's overlayfs: ENODATA), so
// ls -l stops asking every name; a label an object has is read as stored, and listed.
func TestSELinuxLabelsWithoutSELinux(t *testing.T) {
	needMounts(t)
	if _, err := os.Stat("/sys/fs/selinux/enforce"); err == nil {
		skipTest(t, "this host runs SELinux; CI machines do not")
	}
	root := t.TempDir()
	st := newStack(t, root)
	b := builder{t, st.Lowers[0]}
	b.file("plain", "x", 0o644)
	b.file("labeled", "x", 0o644)
	const label = "system_u:object_r:etc_t:s0"
	must(t, unix.Lsetxattr(filepath.Join(st.Lowers[0], "labeled"), "security.selinux", []byte(label), 0))
	mnt := mkdir(t, root, "mnt")
	mountLayerfs(t, st, mnt)

	buf := make([]byte, 256)
	for range 2 { // the second answer comes from memory
		if _, err := unix.Lgetxattr(filepath.Join(mnt, "plain"), "security.selinux", buf); !errors.Is(err, unix.EOPNOTSUPP) {
			t.Errorf("label of an object without one: %v, want EOPNOTSUPP", err)
		}
	}
	if n, err := unix.Lgetxattr(filepath.Join(mnt, "labeled"), "security.selinux", buf); err != nil || string(buf[:n]) != label {
		t.Errorf("label: %q %v, want %q", buf[:max(n, 0)], err, label)
	}
	if n, err := unix.Llistxattr(filepath.Join(mnt, "labeled"), buf); err != nil || !strings.Contains(string(buf[:n]), "security.selinux") {
		t.Errorf("listxattr: %q %v", buf[:max(n, 0)], err)
	}
	// Other attributes an object lacks are still ENODATA.
	if _, err := unix.Lgetxattr(filepath.Join(mnt, "plain"), "user.none", buf); !errors.Is(err, unix.ENODATA) {
		t.Errorf("user.none: %v, want ENODATA", err)
	}
	if out, err := exec.Command("ls", "-l", mnt).CombinedOutput(); err != nil || strings.Count(string(out), "\n") != 3 {
		t.Errorf("ls -l: %v\n%s", err, out)
	}
}
