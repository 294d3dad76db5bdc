package integration

import (
	"encoding/json"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// inspectStack has one name of every status: added, modified, merged, opaque, deleted.
func inspectStack(t *testing.T) (root string, st stack) {
	root = t.TempDir()
	st = stack{Lowers: []string{mkdir(t, root, "l1"), mkdir(t, root, "l2")}, Upper: mkdir(t, root, "u"), Work: mkdir(t, root, "w")}
	l1, l2, up := builder{t, st.Lowers[0]}, builder{t, st.Lowers[1]}, builder{t, st.Upper}
	l2.file("mod", "old contents", 0o644)
	l2.file("gone", "deleted above", 0o644)
	l2.file("merged/low", "x", 0o644)
	l2.file("opq/hidden", "y", 0o644)
	l1.file("mod", "new", 0o644)
	l1.whiteout("gone")
	l1.file("merged/mid", "z", 0o644)
	up.file("new", "added", 0o644)
	up.dir("opq", 0o755)
	up.xattr("opq", "trusted.overlay.opaque", "y")
	return root, st
}

func TestInspectJSON(t *testing.T) {
	needMounts(t)
	_, st := inspectStack(t)
	out, err := exec.Command(bin, "inspect", "--json", "-o", st.options()).Output()
	if err != nil {
		t.Fatalf("inspect: %v", err)
	}
	var report struct {
		Layers  []string `json:"layers"`
		Upper   bool     `json:"upper"`
		Entries []struct {
			Path          string `json:"path"`
			Type          string `json:"type"`
			Layer         int    `json:"layer"`
			Status        string `json:"status"`
			Shadowed      []int  `json:"shadowed"`
			ShadowedBytes int64  `json:"shadowed_bytes"`
			Merged        []int  `json:"merged"`
		} `json:"entries"`
		Summary []struct {
			Layer    int   `json:"layer"`
			Entries  int   `json:"entries"`
			Hidden   int   `json:"hidden"`
			Added    int   `json:"added"`
			Modified int   `json:"modified"`
			Deleted  int   `json:"deleted"`
			Opaque   int   `json:"opaque"`
			Bytes    int64 `json:"bytes"`
		} `json:"summary"`
	}
	if err := json.Unmarshal(out, &report); err != nil {
		t.Fatalf("JSON: %v\n%s", err, out)
	}
	if len(report.Layers) != 3 || !report.Upper || report.Layers[0] != st.Upper {
		t.Errorf("layers %q upper %v", report.Layers, report.Upper)
	}
	want := map[string]string{
		"/": "merged", "/new": "added", "/mod": "modified", "/merged": "merged",
		"/merged/low": "added", "/merged/mid": "added", "/opq": "opaque", "/gone": "deleted",
	}
	got := map[string]string{}
	for _, e := range report.Entries {
		got[e.Path] = e.Status
		switch e.Path {
		case "/mod":
			if e.Layer != 1 || len(e.Shadowed) != 1 || e.Shadowed[0] != 2 || e.ShadowedBytes != int64(len("old contents")) {
				t.Errorf("/mod: %+v", e)
			}
		case "/gone":
			if e.Layer != 1 || len(e.Shadowed) != 1 || e.Shadowed[0] != 2 {
				t.Errorf("/gone: %+v", e)
			}
		case "/merged":
			if len(e.Merged) != 2 {
				t.Errorf("/merged: %+v", e)
			}
		}
	}
	for p, s := range want {
		if got[p] != s {
			t.Errorf("%s: status %q, want %q", p, got[p], s)
		}
	}
	if _, ok := got["/opq/hidden"]; ok {
		t.Error("a name below an opaque directory is listed")
	}
	if s := report.Summary[1]; s.Modified != 1 || s.Deleted != 1 || s.Added != 1 {
		t.Errorf("summary of layer 1: %+v", s)
	}
	if s := report.Summary[0]; s.Added != 1 || s.Opaque != 1 || s.Bytes != int64(len("added")) {
		t.Errorf("summary of the upper: %+v", s)
	}
	// The bottom layer's /mod and /gone are hidden by layer 1: counted, not read as empty.
	if s := report.Summary[2]; s.Hidden < 2 {
		t.Errorf("summary of the bottom layer: %+v, want its hidden entries counted", s)
	}
}

func TestInspectTextAndErrors(t *testing.T) {
	needMounts(t)
	_, st := inspectStack(t)
	out, err := exec.Command(bin, "inspect", "-o", st.options(), "/mod").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "modified  /mod") || strings.Contains(string(out), "\033[") {
		t.Errorf("inspect /mod (not a terminal: no colour): %v\n%s", err, out)
	}
	// Layers as arguments, topmost first, and the path last.
	out, err = exec.Command(bin, "inspect", st.Upper, st.Lowers[0], st.Lowers[1], "/mod").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "[L1   ] modified  /mod") {
		t.Errorf("inspect LAYER... PATH: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "serves  hidden") {
		t.Errorf("inspect's table has no hidden column:\n%s", out)
	}
	// A last argument that is a directory here is a layer; inspect says so.
	out, err = exec.Command(bin, "inspect", st.Upper, st.Lowers[0], st.Lowers[1]).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "taking "+st.Lowers[1]+" as the bottom layer") {
		t.Errorf("inspect LAYER... with a directory last: %v\n%s", err, out)
	}
	out, err = exec.Command(bin, "inspect", "-o", st.options(), "/nope").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "/nope") {
		t.Errorf("inspect of a missing path: %v %s", err, out)
	}
	out, err = exec.Command(bin, "inspect", "-o", "lowerdir="+st.Lowers[0]+"/missing").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "does not exist") {
		t.Errorf("inspect of a missing layer: %v %s", err, out)
	}
}

// TestLayerXattr: on a mount, user.layerfs.layer names the layer serving an object; it is not
// listed, cannot be set, and moves to the upper on copy-up.
func TestLayerXattr(t *testing.T) {
	needMounts(t)
	root, st := inspectStack(t)
	mnt := mkdir(t, root, "mnt")
	mountLayerfs(t, st, mnt)
	get := func(p string) string {
		buf := make([]byte, 4096)
		n, err := unix.Getxattr(filepath.Join(mnt, p), "user.layerfs.layer", buf)
		if err != nil {
			t.Fatalf("getxattr %s: %v", p, err)
		}
		return string(buf[:n])
	}
	if v := get("mod"); v != "1 "+st.Lowers[0] {
		t.Errorf("mod served by %q", v)
	}
	if v := get("new"); v != "0 "+st.Upper {
		t.Errorf("new served by %q", v)
	}
	if attrs := userXattrs(t, filepath.Join(mnt, "mod")); attrs != "" {
		t.Errorf("listxattr shows %q", attrs)
	}
	if err := unix.Setxattr(filepath.Join(mnt, "mod"), "user.layerfs.layer", []byte("0"), 0); !errors.Is(err, syscall.EPERM) {
		t.Errorf("setxattr of the layer attribute: %v, want EPERM", err)
	}
	appendFile(t, filepath.Join(mnt, "mod"), "+")
	if v := get("mod"); v != "0 "+st.Upper {
		t.Errorf("after copy-up mod is served by %q", v)
	}
}
