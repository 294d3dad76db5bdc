package integration

import (
	"bytes"
	"context"
	"image"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The figures of inspect --svg/--html and demo --html, rendered by a real browser (Debian's
// headless Chromium): the names are in the page's DOM, the browser reports no console error,
// and the screenshot is not blank.

// chromium finds the browser; .ci/run (make setup) installs it.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("chromium is not installed (make setup installs it): the figures are checked in a browser")
	return ""
}

// rendered is what the browser made of a page.
type rendered struct {
	dom     string
	console []string // console messages and page errors the browser logged
	shot    image.Image
}

// render loads the file in headless Chromium twice: for its DOM (with the browser's log on
// stderr) and for a screenshot of width×height.
func render(t *testing.T, page string, width, height int) rendered {
	t.Helper()
	browser := chromium(t)
	profile := t.TempDir()
	run := func(args ...string) ([]byte, []byte) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
			"--no-first-run", "--user-data-dir=" + profile, "--enable-logging=stderr", "--v=0"}
		cmd := exec.CommandContext(ctx, browser, append(base, args...)...)
		cmd.Dir = profile
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("chromium %q: %v\n%s", args, err, stderr.String())
		}
		return stdout.Bytes(), stderr.Bytes()
	}
	url := "file://" + page
	dom, log := run("--dump-dom", url)
	var r rendered
	r.dom = string(dom)
	for _, line := range strings.Split(string(log), "\n") {
		if strings.Contains(line, "CONSOLE") || strings.Contains(line, "Uncaught") {
			r.console = append(r.console, line)
		}
	}
	shot := filepath.Join(profile, "shot.png")
	run("--screenshot="+shot, "--window-size="+strconv.Itoa(width)+","+strconv.Itoa(height), url)
	f, err := os.Open(shot)
	must(t, err)
	defer f.Close()
	r.shot, err = png.Decode(f)
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	return r
}

// colours counts the distinct colours of an image, up to limit.
func colours(img image.Image, limit int) int {
	seen := map[[3]uint32]bool{}
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y += 2 {
		for x := b.Min.X; x < b.Max.X; x += 2 {
			r, g, bl, _ := img.At(x, y).RGBA()
			seen[[3]uint32{r >> 8, g >> 8, bl >> 8}] = true
			if len(seen) >= limit {
				return len(seen)
			}
		}
	}
	return len(seen)
}

// checkRendered fails t unless the page shows every name, logged no console error and is not
// blank.
func checkRendered(t *testing.T, what string, r rendered, names ...string) {
	t.Helper()
	for _, n := range names {
		if !strings.Contains(r.dom, ">"+n+"<") {
			t.Errorf("%s: the rendered DOM lacks %q", what, n)
		}
	}
	if len(r.console) > 0 {
		t.Errorf("%s: the browser logged %q", what, r.console)
	}
	if c := colours(r.shot, 50); c < 8 {
		t.Errorf("%s: the screenshot has %d colours: blank", what, c)
	}
}

// TestInspectPicture: inspect --svg and --html draw the stack, a row per layer and a column
// per name, by its layers or a live mount, and a browser shows it; a directory of many names
// is summarised, and says so.
func TestInspectPicture(t *testing.T) {
	needMounts(t)
	root, st := inspectStack(t)
	out, err := exec.Command(bin, "inspect", "--svg", "-o", st.options()).Output()
	if err != nil {
		t.Fatalf("inspect --svg: %v", err)
	}
	svg := string(out)
	if !strings.HasPrefix(svg, "<svg ") || !strings.HasSuffix(strings.TrimSpace(svg), "</svg>") {
		t.Fatalf("inspect --svg is not one SVG document:\n%.300s", svg)
	}
	for _, want := range []string{">upper<", ">L1<", ">L2<", ">merged<", ">/mod<", ">/gone<", ">whiteout<", ">(deleted)<", ">dir, opaque<"} {
		if !strings.Contains(svg, want) {
			t.Errorf("inspect --svg lacks %q", want)
		}
	}
	// A live mount's stack, asked of its server, draws the same.
	mnt := mkdir(t, root, "mnt")
	mountLayerfs(t, st, mnt)
	live, err := exec.Command(bin, "inspect", "--svg", "--mount", mnt).Output()
	if err != nil || string(live) != svg {
		t.Errorf("inspect --svg --mount: %v; differs from the figure of the layers:\n%.400s", err, live)
	}
	unmountFuse(t, mnt)

	page := filepath.Join(root, "stack.html")
	out, err = exec.Command(bin, "inspect", "--html", "--depth", "2", "-o", st.options()).Output()
	if err != nil {
		t.Fatalf("inspect --html: %v", err)
	}
	must(t, os.WriteFile(page, out, 0o644))
	r := render(t, page, 1100, 520)
	checkRendered(t, "inspect --html", r, "/mod", "/gone", "/new", "/merged/low", "/merged/mid", "upper", "L1", "L2")
	if os.Getenv("LAYERFS_WRITE_FIGURE") != "" {
		// The README's picture, made by this same path: LAYERFS_WRITE_FIGURE=1 go test -run
		// TestInspectPicture ./integration/
		f, err := os.Create("testdata/stack.png")
		must(t, err)
		must(t, png.Encode(f, r.shot))
		must(t, f.Close())
	}

	// Many names: drawn up to a limit, the rest summarised.
	many := stack{Lowers: []string{mkdir(t, root, "many")}}
	b := builder{t, many.Lowers[0]}
	for i := 0; i < 60; i++ {
		b.file("f"+strconv.Itoa(100+i), "x", 0o644)
	}
	out, err = exec.Command(bin, "inspect", "--svg", "-o", many.options()).Output()
	if err != nil {
		t.Fatalf("inspect --svg of 60 names: %v", err)
	}
	if n := strings.Count(string(out), "rotate(-20 "); n != 40 {
		t.Errorf("%d of 60 names drawn, want 40", n)
	}
	if !strings.Contains(string(out), "20 more names") {
		t.Error("a figure that leaves names out does not say so")
	}
}

// TestDemoHTML: demo --html writes the walkthrough as linked pages with a figure a step, which
// a browser shows.
func TestDemoHTML(t *testing.T) {
	needMounts(t)
	dir := t.TempDir()
	cmd := exec.Command(bin, "demo", "--html", dir)
	cmd.Env = append(os.Environ(), "TMPDIR="+t.TempDir())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("demo --html: %v\n%s", err, out)
	}
	index, err := os.ReadFile(filepath.Join(dir, "index.html"))
	must(t, err)
	links := regexp.MustCompile(`href="(step-\d+\.html)"`).FindAllStringSubmatch(string(index), -1)
	if len(links) < 10 {
		t.Fatalf("index.html links %d steps:\n%s", len(links), index)
	}
	for i, l := range links {
		data, err := os.ReadFile(filepath.Join(dir, l[1]))
		must(t, err)
		page := string(data)
		if !strings.Contains(page, "<svg ") {
			t.Errorf("%s has no figure", l[1])
		}
		if i > 0 && !strings.Contains(page, `href="`+links[i-1][1]+`" rel="prev"`) {
			t.Errorf("%s does not link back to %s", l[1], links[i-1][1])
		}
		if i+1 < len(links) && !strings.Contains(page, `href="`+links[i+1][1]+`" rel="next"`) {
			t.Errorf("%s does not link on to %s", l[1], links[i+1][1])
		}
	}
	// The step that deletes f2: the figure shows the whiteout.
	var rm string
	for _, l := range links {
		data, _ := os.ReadFile(filepath.Join(dir, l[1]))
		if strings.Contains(string(data), "$ rm merged/f2") {
			rm = filepath.Join(dir, l[1])
		}
	}
	if rm == "" {
		t.Fatal("no page for rm merged/f2")
	}
	r := render(t, rm, 1300, 700)
	checkRendered(t, "demo page of rm merged/f2", r, "/f1", "/f2", "/f3", "whiteout", "(deleted)", "upper/", "lower/")
}
