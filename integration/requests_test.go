package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// mountLayerfsDebug mounts st on mnt with --debug, the trace going to a file whose path it
// returns; the mount goes when the test ends.
func mountLayerfsDebug(t *testing.T, st stack, mnt string, extra ...string) string {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), "debug.log")
	log, err := os.Create(logPath)
	must(t, err)
	defer log.Close()
	cmd := exec.Command(bin, append(append([]string{"--debug", "-o", st.options()}, extra...), mnt)...)
	// A file, not a pipe: the server keeps its stderr after the command returns.
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Run(); err != nil {
		data, _ := os.ReadFile(logPath)
		t.Fatalf("%s --debug: %v\n%s", bin, err, data)
	}
	t.Cleanup(func() { unmountFuse(t, mnt) })
	return logPath
}

// requestsBetween counts the requests the trace at logPath shows after a LOOKUP of name from
// and before a LOOKUP of name to, by opcode.
func requestsBetween(t *testing.T, logPath, from, to string) map[string]int {
	t.Helper()
	data, err := os.ReadFile(logPath)
	must(t, err)
	rx := regexp.MustCompile(`rx \d+: (\w+) n\d+ (.*)`)
	counts := map[string]int{}
	in := false
	for _, line := range strings.Split(string(data), "\n") {
		m := rx.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		if m[1] == "LOOKUP" && strings.Contains(m[2], `"`+from+`"`) {
			in = true
			continue
		}
		if m[1] == "LOOKUP" && strings.Contains(m[2], `"`+to+`"`) {
			return counts
		}
		if in {
			key := m[1]
			if key == "GETXATTR" {
				if i := strings.LastIndex(m[2], `"`); i > 0 {
					key += " " + m[2][strings.Index(m[2], `"`)+1:i]
				}
			}
			counts[key]++
		}
	}
	t.Fatalf("no LOOKUP of %q after one of %q in the trace", to, from)
	return nil
}

// TestWritesAskNoCapability: with FUSE_HANDLE_KILLPRIV_V2 the kernel asks for a file's
// capability at most once, not at every write(2) (a GETXATTR round trip each before).
func TestWritesAskNoCapability(t *testing.T) {
	needMounts(t)
	for _, side := range []string{testedName(), "nopassthrough"} {
		t.Run(side, func(t *testing.T) {
			root := t.TempDir()
			st := stack{Lowers: []string{mkdir(t, root, "lower")}, Upper: mkdir(t, root, "upper"), Work: mkdir(t, root, "work")}
			mnt := mkdir(t, root, "mnt")
			var extra []string
			if side == "nopassthrough" {
				extra = []string{"-o", "nopassthrough"}
			}
			logPath := mountLayerfsDebug(t, st, mnt, extra...)
			os.Stat(filepath.Join(mnt, "mark-start"))
			f, err := os.Create(filepath.Join(mnt, "f"))
			must(t, err)
			for range 20 {
				_, err := f.WriteString("0123456789")
				must(t, err)
			}
			must(t, f.Close())
			os.Stat(filepath.Join(mnt, "mark-end"))
			counts := requestsBetween(t, logPath, "mark-start", "mark-end")
			if n := counts["GETXATTR security.capability"]; n > 1 {
				t.Errorf("20 writes asked for the capability %d times, want at most once (requests: %v)", n, counts)
			}
			t.Logf("create, 20 writes, close: %v", counts)
			if os.Getenv("LAYERFS_SHOW_TRACE") != "" {
				data, _ := os.ReadFile(logPath)
				t.Logf("%s", data)
			}
		})
	}
}
