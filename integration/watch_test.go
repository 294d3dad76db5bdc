package integration

import (
	"bufio"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// startWatch runs layerfs watch --json on mnt, killed when the test ends, and returns it and
// its output once it says it is watching: it says so once the server has taken it on, so no
// later event is missed.
func startWatch(t *testing.T, mnt string) (*exec.Cmd, io.Reader) {
	t.Helper()
	cmd := exec.Command(bin, "watch", "--json", mnt)
	stdout, err := cmd.StdoutPipe()
	must(t, err)
	stderr, err := cmd.StderrPipe()
	must(t, err)
	must(t, cmd.Start())
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	if line, err := bufio.NewReader(stderr).ReadString('\n'); err != nil || !strings.Contains(line, "watching") {
		t.Fatalf("watch did not start: %q %v", line, err)
	}
	return cmd, stdout
}

// TestWatch: layerfs watch --json prints the overlay actions of a mount as they happen, one
// JSON object a line, and ends when the mount goes away.
func TestWatch(t *testing.T) {
	needMounts(t)
	root, st := inspectStack(t)
	mnt := mkdir(t, root, "mnt")
	mountLayerfs(t, st, mnt)

	cmd, stdout := startWatch(t, mnt)

	appendFile(t, filepath.Join(mnt, "mod"), "+")          // copy-up from layer 1
	must(t, os.Remove(filepath.Join(mnt, "new")))          // upper only: no whiteout
	must(t, os.RemoveAll(filepath.Join(mnt, "merged")))    // whiteouts
	must(t, os.Mkdir(filepath.Join(mnt, "merged"), 0o755)) // opaque

	type event struct {
		Kind  string `json:"kind"`
		Path  string `json:"path"`
		Layer int    `json:"layer"`
		Bytes int64  `json:"bytes"`
	}
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	// Paths from the mount's root, as the text lines give them.
	want := []string{"copy-up /mod", "whiteout /merged/low", "whiteout /merged/mid", "whiteout /merged", "opaque /merged"}
	var got []string
	deadline := time.After(10 * time.Second)
	for len(got) < len(want) {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("watch ended early; got %q", got)
			}
			var e event
			if err := json.Unmarshal([]byte(l), &e); err != nil {
				t.Fatalf("not JSON: %q", l)
			}
			if e.Kind == "copy-up" && e.Path == "/mod" && (e.Layer != 1 || e.Bytes != 3) {
				t.Errorf("copy-up event: %+v", e)
			}
			if e.Kind == "copy-up" && e.Path != "/mod" {
				continue // the parent directory copied up on the way
			}
			got = append(got, e.Kind+" "+e.Path)
		case <-deadline:
			t.Fatalf("events after 10s: %q, want %q", got, want)
		}
	}
	// rm -rf removes the children in the order the directory lists them.
	sort.Strings(got)
	sort.Strings(want)
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("events %q, want %q", got, want)
	}
	unmountFuse(t, mnt)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("watch exit: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Error("watch still running 10s after the unmount")
	}
}

// TestTraceFlag: --trace in the foreground logs the same actions as lines on stderr.
func TestTraceFlag(t *testing.T) {
	needMounts(t)
	root, st := inspectStack(t)
	mnt := mkdir(t, root, "mnt")
	cmd := exec.Command(bin, "-f", "--trace", "-o", st.options(), mnt)
	logf := filepath.Join(root, "trace.log")
	f, err := os.Create(logf)
	must(t, err)
	defer f.Close()
	cmd.Stderr = f
	must(t, cmd.Start())
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() { cmd.Process.Kill(); unmountFuse(t, mnt) })
	waitMounted(t, mnt, done)
	must(t, os.Remove(filepath.Join(mnt, "mod")))
	unmountFuse(t, mnt)
	<-done
	data, _ := os.ReadFile(logf)
	if !strings.Contains(string(data), "whiteout created for /mod (hides layer 1)") {
		t.Errorf("trace log:\n%s", data)
	}
}
