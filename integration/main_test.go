package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// bin is the program under test.
var bin string

// builtRev is the git revision bin was built from, when the suite built it.
var builtRev string

// skipReason is why the mount tests cannot run here; empty when they can. CI runs as root
// with fuse3 installed, where none of these holds.
var skipReason string

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	if path := os.Getenv(directMappedEnv); path != "" {
		// A copy of this binary run as another user, for one step of a test (directio_test.go).
		fmt.Println(strings.Join(directMapped(path, true, true), "\n"))
		return 0
	}
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
		// As make build does: static, stamped with the source revision.
		if rev, err := exec.Command("git", "rev-parse", "HEAD").Output(); err == nil && len(rev) > 12 {
			builtRev = strings.TrimSpace(string(rev))
		}
		cmd := exec.Command("go", "build", "-buildvcs=auto", "-trimpath", "-o", bin, "../cmd/layerfs")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "building layerfs:", err)
			return 1
		}
	}
	code := m.Run()
	reportSkipped()
	return code
}

// needMounts skips t when this machine cannot mount; see skipReason.
func needMounts(t testing.TB) {
	t.Helper()
	if skipReason != "" {
		skipTest(t, "%s", skipReason)
	}
}

// skipped lists the tests skipped and why, for the end of the run (testMain): go test prints
// nothing of a passing package but "ok", which would hide them.
var skipped struct {
	sync.Mutex
	lines []string
}

// skipTest skips t, recording why for the report at the end of the run.
func skipTest(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	skipped.Lock()
	skipped.lines = append(skipped.lines, t.Name()+": "+msg)
	skipped.Unlock()
	t.Skip(msg)
}

// reportSkipped appends the skipped tests to the file LAYERFS_SKIPPED names (make test prints
// it at the end), and to stderr, which go test shows with -v or on failure.
func reportSkipped() {
	skipped.Lock()
	defer skipped.Unlock()
	if len(skipped.lines) == 0 {
		return
	}
	text := strings.Join(skipped.lines, "\n") + "\n"
	fmt.Fprintf(os.Stderr, "skipped %d:\n%s", len(skipped.lines), text)
	if p := os.Getenv("LAYERFS_SKIPPED"); p != "" {
		if f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644); err == nil {
			f.WriteString(text)
			f.Close()
		}
	}
}

// testedName names the program under test in reports.
func testedName() string { return filepath.Base(bin) }
