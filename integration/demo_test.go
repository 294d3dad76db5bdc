package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestDemo runs "layerfs demo" and checks that it tells the walkthrough and leaves nothing
// behind: no mount and no temporary folder.
func TestDemo(t *testing.T) {
	needMounts(t)
	tmp := t.TempDir()
	cmd := exec.Command(bin, "demo")
	cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("layerfs demo: %v\n%s", err, out)
	}
	text := string(out)
	for _, want := range []string{
		"$ ls merged", "f1  f2  f3  f4",
		"$ cat merged/f3", "f3 from upper",
		"$ echo f5 > merged/f5", "upper/  now holds: f3  f4  f5",
		"$ rm merged/f2", "f2 (character device 0/0: a whiteout)",
		"$ echo more >> merged/f1", "upper/  now holds: f1  f2",
		"lower/ still holds: f1  f2  f3",
		"merged/ now shows: f1 (lower)  f2 (lower)  f3 (upper)  f4 (upper)",
		"merged/ now shows: f1 (upper)  f3 (upper)  f4 (upper)  f5 (upper)",
		"why:",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("demo output lacks %q:\n%s", want, text)
		}
	}
	m := regexp.MustCompile(`In (\S+):`).FindStringSubmatch(text)
	if m == nil {
		t.Fatalf("demo does not name its folder:\n%s", text)
	}
	if filepath.Dir(m[1]) != tmp {
		t.Errorf("demo folder %s is not in TMPDIR %s", m[1], tmp)
	}
	if _, err := os.Stat(m[1]); !os.IsNotExist(err) {
		t.Errorf("demo left %s behind (%v)", m[1], err)
	}
	if typ := mountType(t, filepath.Join(m[1], "merged")); typ != "" {
		t.Errorf("demo left a %s mount behind", typ)
	}
}
