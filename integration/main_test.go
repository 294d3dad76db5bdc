package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// bin is the program under test.
var bin string

// skipReason is why the mount tests cannot run here; empty when they can. CI runs as root
// with fuse3 installed, where none of these holds.
var skipReason string

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	switch {
	case os.Geteuid() != 0:
		skipReason = "mount tests need root (kernel overlayfs and trusted.* xattrs); CI runs them as root"
	default:
		if _, err := os.Stat("/dev/fuse"); err != nil {
			skipReason = "no /dev/fuse: " + err.Error()
		}
	}
	bin = os.Getenv("LAYERFS_BIN")
	if bin == "" {
		dir, err := os.MkdirTemp("", "layerfs-bin-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		bin = filepath.Join(dir, "layerfs")
		cmd := exec.Command("go", "build", "-o", bin, "../cmd/layerfs")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "building layerfs:", err)
			return 1
		}
	}
	return m.Run()
}

// needMounts skips t when this machine cannot mount; see skipReason.
func needMounts(t testing.TB) {
	t.Helper()
	if skipReason != "" {
		t.Skip(skipReason)
	}
}

// testedName names the program under test in reports.
func testedName() string { return filepath.Base(bin) }
