package main

import (
	"bufio"
	"errors"
	"fmt"
	"html"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/layerfs/layerfs/unionfs"
	"golang.org/x/sys/unix"
)

// demo replays the seed walkthrough of overlay semantics on a throw-away stack: one lower
// (f1 f2 f3), one upper (f3 f4), and the merged view, printing each command, what the merged
// view and the upper folder then show, and why; then a second part with a second lower layer
// for directories (opaque, renamed), hard links, what a copy-up records and the work directory.
type demo struct {
	out, stderr                           io.Writer
	root, lower, lower2, upper, work, mnt string
	// pause, if set, waits for a line on it before each step (live teaching).
	pause *bufio.Reader
	// width is the terminal's, to wrap explanations between words; 0 for no wrapping.
	width int
	// html, if set, is the directory the walkthrough is written to as pages (demo --html).
	html  string
	pages []demoPage
	// cfg is the stack mounted now; srv and ev serve it (guarded by mu: a signal unmounts).
	cfg unionfs.Config
	mu  sync.Mutex
	srv *unionfs.Server
	ev  *events
}

const demoUsage = `usage: layerfs demo [--step] [--html DIR]

Replays the classic overlay walkthrough on a temporary stack, showing the merged view, the
layer serving every name and the upper folder after each step; --step waits for Enter between
steps (run "layerfs watch MOUNTPOINT" in a second terminal to see each copy-up and whiteout);
--html DIR also writes the walkthrough as pages, one figure of the layers per step, to open in
any browser (DIR/index.html).`

func runDemo(args []string, stdout, stderr io.Writer) int {
	stepMode, htmlDir := false, ""
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--help" || a == "-h":
			fmt.Fprintln(stdout, demoUsage)
			return 0
		case a == "--step":
			stepMode = true
		case a == "--html" && i+1 < len(args):
			i++
			htmlDir = args[i]
		case strings.HasPrefix(a, "--html="):
			htmlDir = strings.TrimPrefix(a, "--html=")
		default:
			fmt.Fprintf(stderr, "layerfs: demo: unknown argument %q (demo [--step] [--html DIR])\n", a)
			return 2
		}
	}
	if htmlDir != "" {
		if err := os.MkdirAll(htmlDir, 0o755); err != nil {
			fmt.Fprintf(stderr, "layerfs: demo: --html: %v\n", err)
			return 1
		}
	}
	root, err := os.MkdirTemp("", "layerfs-demo-")
	if err != nil {
		fmt.Fprintf(stderr, "layerfs: demo: %v\n", err)
		return 1
	}
	defer os.RemoveAll(root)
	d := &demo{out: stdout, stderr: stderr, root: root, width: terminalWidth(stdout), html: htmlDir,
		lower: filepath.Join(root, "lower"), lower2: filepath.Join(root, "lower2"), upper: filepath.Join(root, "upper"),
		work: filepath.Join(root, "work"), mnt: filepath.Join(root, "merged")}
	if stepMode {
		d.pause = bufio.NewReader(os.Stdin)
	}
	if err := d.setup(); err != nil {
		fmt.Fprintf(stderr, "layerfs: demo: %v\n", err)
		return 1
	}
	traceLog = nil
	// The mount is served by this process: a signal (Ctrl-C at a --step prompt) or a reader
	// gone (layerfs demo | head) must not end it with the mount left behind, dead.
	sigs := catchSignals()
	defer signal.Stop(sigs)
	if err := d.mount(unionfs.Config{Lowers: []string{d.lower}, Upper: d.upper, Work: d.work}); err != nil {
		fmt.Fprintf(stderr, "layerfs: demo: mount: %s\n", errMessage(err))
		return 1
	}
	go func() {
		if _, ok := <-sigs; ok {
			d.unmount()
			os.RemoveAll(root)
			os.Exit(130)
		}
	}()
	if d.ev != nil {
		if d.pause != nil {
			d.say("The stack is mounted on %s. To see each step's copy-ups and whiteouts", d.mnt)
			d.say("as they happen, run in a second terminal:  layerfs watch %s\n", d.mnt)
		} else {
			d.say("(layerfs demo --step waits between steps, so that layerfs watch can follow in a second terminal)\n")
		}
	}
	defer d.unmount()
	if err := d.walk(); err != nil {
		fmt.Fprintf(stderr, "layerfs: demo: %v\n", err)
		return 1
	}
	if d.html != "" {
		if err := d.writePages(); err != nil {
			fmt.Fprintf(stderr, "layerfs: demo: --html: %v\n", err)
			return 1
		}
		d.say("The walkthrough as pages: %s", filepath.Join(d.html, "index.html"))
	}
	return 0
}

// mount mounts cfg on the demo's mountpoint, like any mount: its events reach layerfs watch.
func (d *demo) mount(cfg unionfs.Config) error {
	cfg.Log = &prefixWriter{w: &stopOnError{w: d.stderr}, prefix: func() string { return "layerfs: demo: " }}
	warn := func(msg string) { fmt.Fprintf(d.stderr, "layerfs: demo: warning: %s\n", msg) }
	srv, ev, err := mountWithEvents(d.mnt, cfg, warn)
	if err != nil {
		return err
	}
	d.mu.Lock()
	d.srv, d.ev, d.cfg = srv, ev, cfg
	d.mu.Unlock()
	return nil
}

// unmount takes the demo's mount away and waits for its server to end.
func (d *demo) unmount() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.srv == nil {
		return
	}
	if d.ev != nil {
		d.ev.close()
	}
	if err := d.srv.Unmount(); err != nil {
		unix.Unmount(d.mnt, unix.MNT_DETACH)
	}
	d.srv.Wait()
	d.srv, d.ev = nil, nil
}

func (d *demo) setup() error {
	for _, dir := range []string{d.lower, d.lower2, d.upper, d.work, d.mnt,
		filepath.Join(d.lower2, "d"), filepath.Join(d.lower2, "old")} {
		if err := os.Mkdir(dir, 0o755); err != nil {
			return err
		}
	}
	files := map[string]string{
		"lower/f1": "f1 from lower\n", "lower/f2": "f2 from lower\n", "lower/f3": "f3 from lower\n",
		"upper/f3": "f3 from upper\n", "upper/f4": "f4 from upper\n",
		"lower2/d/a": "a\n", "lower2/d/b": "b\n", "lower2/old/x": "x\n", "lower2/h1": "one file, two names\n",
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(d.root, name), []byte(data), 0o644); err != nil {
			return err
		}
	}
	return os.Link(filepath.Join(d.lower2, "h1"), filepath.Join(d.lower2, "h2"))
}

func (d *demo) say(format string, args ...any) { fmt.Fprintf(d.out, format+"\n", args...) }

// demoPage is one step of the walkthrough as --html writes it.
type demoPage struct {
	n                     int
	cmd, output, why      string
	merged, upper, figure string
}

// step prints one command of the walkthrough, runs it, and shows both views.
func (d *demo) step(n int, command, why string, act func() (string, error)) error {
	if d.pause != nil {
		fmt.Fprint(d.out, "[press Enter for the next step] ")
		d.pause.ReadString('\n')
	}
	d.say("── step %d ─────────────────────────────────────────────", n)
	d.say("$ %s", command)
	output, err := act()
	if err != nil {
		return fmt.Errorf("%s: %w", command, err)
	}
	if output != "" {
		fmt.Fprint(d.out, indent(output))
	}
	merged, upper, err := d.views()
	if err != nil {
		return err
	}
	d.say("  merged/ now shows: %s", merged)
	d.say("  upper/  now holds: %s", upper)
	d.say("%s", wrap("  why: "+why, d.width, "       "))
	d.say("")
	return d.page(n, command, output, why, merged, upper)
}

// page records the step for --html, with a figure of the stack as it now is.
func (d *demo) page(n int, command, output, why, merged, upper string) error {
	if d.html == "" {
		return nil
	}
	ins, err := unionfs.NewInspector(unionfs.Config{Lowers: append([]string(nil), d.cfg.Lowers...), Upper: d.cfg.Upper})
	if err != nil {
		return err
	}
	defer ins.Close()
	title := "step " + strconv.Itoa(n) + ": " + command
	if n == 0 {
		title = "the stack before the first step"
	}
	pic, err := buildPicture(ins, "", 2, title)
	if err != nil {
		return err
	}
	for i, dir := range pic.Dirs {
		pic.Labels[i] = filepath.Base(dir) + "/"
	}
	var b strings.Builder
	writeSVG(&b, pic)
	d.pages = append(d.pages, demoPage{n: n, cmd: command, output: output, why: why, merged: merged, upper: upper, figure: b.String()})
	return nil
}

// writePages writes the recorded steps as a slide show: index.html, then one page a step
// with previous/next links; no server, script or network needed.
func (d *demo) writePages() error {
	name := func(i int) string { return fmt.Sprintf("step-%02d.html", i) }
	for i, p := range d.pages {
		var b strings.Builder
		title := "layerfs demo — step " + strconv.Itoa(p.n)
		if p.n == 0 {
			title = "layerfs demo — the stack"
		}
		fmt.Fprintf(&b, "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>%s</title><style>%s</style></head><body>\n", html.EscapeString(title), pageStyle)
		nav := "<nav><a href=\"index.html\">contents</a>"
		if i > 0 {
			nav += "<a href=\"" + name(i-1) + "\" rel=\"prev\">← previous</a>"
		}
		if i+1 < len(d.pages) {
			nav += "<a href=\"" + name(i+1) + "\" rel=\"next\">next →</a>"
		}
		nav += "</nav>\n"
		b.WriteString(nav)
		fmt.Fprintf(&b, "<h1>%s</h1>\n", html.EscapeString(title))
		if p.n > 0 {
			fmt.Fprintf(&b, "<pre>$ %s", html.EscapeString(p.cmd))
			if p.output != "" {
				fmt.Fprintf(&b, "\n%s", html.EscapeString(strings.TrimRight(p.output, "\n")))
			}
			b.WriteString("</pre>\n")
		}
		fmt.Fprintf(&b, "<div class=\"figure\">\n%s</div>\n", p.figure)
		fmt.Fprintf(&b, "<p>merged/ shows: <code>%s</code><br>upper/ holds: <code>%s</code></p>\n", html.EscapeString(p.merged), html.EscapeString(p.upper))
		fmt.Fprintf(&b, "<p class=\"why\">%s</p>\n", html.EscapeString(p.why))
		b.WriteString(nav + "</body></html>\n")
		if err := os.WriteFile(filepath.Join(d.html, name(i)), []byte(b.String()), 0o644); err != nil {
			return err
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>layerfs demo</title><style>%s</style></head><body>\n", pageStyle)
	b.WriteString("<h1>layerfs demo: how an overlay filesystem merges layers</h1>\n<p>Read-only lower layers (think: a container image) and one writable upper layer (think: the container's changes) are merged into one view. Each page shows one command, a figure of the layers afterwards — the merged view on top, one row per layer, one column per name; the blue cell serves the name, red is a whiteout, grey is hidden — and why.</p>\n<ol start=\"0\">\n")
	for i, p := range d.pages {
		text := p.cmd
		if p.n == 0 {
			text = "the stack before the first step"
		}
		fmt.Fprintf(&b, "<li><a href=\"%s\">%s</a></li>\n", name(i), html.EscapeString(text))
	}
	b.WriteString("</ol>\n</body></html>\n")
	return os.WriteFile(filepath.Join(d.html, "index.html"), []byte(b.String()), 0o644)
}

// wrap breaks text between words so that no line is longer than width, continuing lines
// with indent; width 0 leaves it as it is (not a terminal: a pager or file wraps itself).
func wrap(text string, width int, indent string) string {
	if width <= 0 || len(text) <= width {
		return text
	}
	var b strings.Builder
	line := 0
	for i, word := range strings.Fields(text) {
		switch {
		case i == 0:
			lead := text[:len(text)-len(strings.TrimLeft(text, " "))]
			b.WriteString(lead + word)
			line = len(lead) + len(word)
		case line+1+len(word) > width && line > len(indent):
			b.WriteString("\n" + indent + word)
			line = len(indent) + len(word)
		default:
			b.WriteString(" " + word)
			line += 1 + len(word)
		}
	}
	return b.String()
}

// terminalWidth is the width of the terminal w writes to, 0 if it is not one.
func terminalWidth(w io.Writer) int {
	f, ok := w.(*os.File)
	if !ok {
		return 0
	}
	ws, err := unix.IoctlGetWinsize(int(f.Fd()), unix.TIOCGWINSZ)
	if err != nil || ws.Col < 20 {
		return 0
	}
	return int(ws.Col)
}

func (d *demo) walk() error {
	d.say("layerfs demo: how an overlay filesystem merges layers")
	d.say("")
	d.say("In %s:", d.root)
	d.say("  lower/   f1 f2 f3   read-only layer (think: a container image)")
	d.say("  upper/   f3 f4      writable layer (think: the container's changes)")
	d.say("  merged/             the mount: what programs see")
	d.say("")
	d.say("$ layerfs -o lowerdir=lower,upperdir=upper,workdir=work merged")
	d.say("")
	steps := []struct {
		cmd, why string
		act      func() (string, error)
	}{
		{"ls merged", "the merged view is the union of the names in both layers.",
			func() (string, error) { return listing(d.mnt) }},
		{"cat merged/f3", "f3 is in both layers; the upper layer wins, its copy hides the lower one.",
			func() (string, error) { return readFile(filepath.Join(d.mnt, "f3")) }},
		{"cat merged/f1", "f1 is only in the lower layer, so the merged view reads it from there.",
			func() (string, error) { return readFile(filepath.Join(d.mnt, "f1")) }},
	}
	steps = append(steps, []struct {
		cmd, why string
		act      func() (string, error)
	}{
		{"echo f5 > merged/f5", "new files always land in the upper layer; the lower layer is never written.",
			func() (string, error) {
				return "", os.WriteFile(filepath.Join(d.mnt, "f5"), []byte("f5 new\n"), 0o644)
			}},
		{"rm merged/f2", "f2 lives in the read-only lower layer, so it cannot really go: a whiteout " +
			"(a character device 0/0) named f2 in the upper layer hides it from the merged view.",
			func() (string, error) { return "", os.Remove(filepath.Join(d.mnt, "f2")) }},
		{"echo more >> merged/f1", "f1 was only in the lower layer: it is copied up into the upper layer " +
			"first, then changed there (copy-up on write).",
			func() (string, error) {
				f, err := os.OpenFile(filepath.Join(d.mnt, "f1"), os.O_WRONLY|os.O_APPEND, 0)
				if err != nil {
					return "", err
				}
				if _, err := f.WriteString("more\n"); err != nil {
					f.Close()
					return "", err
				}
				return "", f.Close()
			}},
		{"cat merged/f1 lower/f1", "the merged view shows the changed copy; the lower layer still has the original.",
			func() (string, error) {
				a, err := readFile(filepath.Join(d.mnt, "f1"))
				if err != nil {
					return "", err
				}
				b, err := readFile(filepath.Join(d.lower, "f1"))
				return "merged/f1: " + a + "lower/f1:  " + b, err
			}},
	}...)
	if err := d.initialPage(); err != nil {
		return err
	}
	for i, s := range steps {
		if err := d.step(i+1, s.cmd, s.why, s.act); err != nil {
			return err
		}
	}
	lower, err := listing(d.lower)
	if err != nil {
		return err
	}
	d.say("lower/ still holds: %s (untouched)", lower)
	d.say("")
	return d.walkMore(len(steps) + 1)
}

// initialPage records the stack before the first step, for --html.
func (d *demo) initialPage() error {
	merged, upper, err := d.views()
	if err != nil {
		return err
	}
	return d.page(0, "", "", "The lower layer holds f1 f2 f3, the upper f3 f4: the merged view shows the union, f3 from the upper.", merged, upper)
}

// walkMore is the second part: a second image layer on top of the first, directories that
// are replaced and renamed, a hard link, what a copy-up records, the work directory.
func (d *demo) walkMore(n int) error {
	d.say("── part 2: a second layer, directories, hard links, the work directory ──")
	d.say("$ fusermount3 -u merged      # a second image layer, lower2/, goes on top of lower/:")
	d.say("  lower2/  d/ (a b)  old/ (x)  h1 h2 (two names of one file)")
	d.say("$ layerfs -o lowerdir=lower2:lower,upperdir=upper,workdir=work merged")
	d.say("")
	d.unmount()
	if err := d.mount(unionfs.Config{Lowers: []string{d.lower2, d.lower}, Upper: d.upper, Work: d.work}); err != nil {
		return fmt.Errorf("mount with lower2: %s", errMessage(err))
	}
	m := func(p string) string { return filepath.Join(d.mnt, p) }
	steps := []struct {
		cmd, why string
		act      func() (string, error)
	}{
		{"ls merged/d", "lowerdir=lower2:lower stacks lower2 above lower, as an image's layers are " +
			"stacked: the view now merges three layers, and d/ comes from lower2.",
			func() (string, error) { return listing(m("d")) }},
		{"rm -rf merged/d && mkdir merged/d && ls merged/d", "d/ held a and b in lower2. The new d/ " +
			"is made in the upper and marked opaque (the overlay.opaque attribute): it does not merge " +
			"with the d/ below, so it is empty, and no whiteouts for a and b are needed inside it.",
			func() (string, error) {
				if err := os.RemoveAll(m("d")); err != nil {
					return "", err
				}
				if err := os.Mkdir(m("d"), 0o755); err != nil {
					return "", err
				}
				return listing(m("d"))
			}},
		{"mv merged/old merged/new", "old/ lives in a lower layer. By default (redirect_dir=off, " +
			"the kernel's default too) a directory with lower parts cannot be renamed: rename(2) " +
			"fails with EXDEV, and mv falls back to copying every file and deleting the old ones.",
			func() (string, error) {
				err := os.Rename(m("old"), m("new"))
				if !errors.Is(err, unix.EXDEV) {
					return "", fmt.Errorf("rename of a lower directory: %v, want EXDEV", err)
				}
				return "rename(\"old\", \"new\"): invalid cross-device link (EXDEV)", nil
			}},
		{"remount with -o redirect_dir=on; mv merged/old merged/new", "with redirect_dir=on the " +
			"rename happens in the upper: new/ is an upper directory that records where its lower " +
			"parts are (overlay.redirect), and a whiteout hides old. (layerfs watch ends with the " +
			"first mount: start it again.)",
			func() (string, error) {
				d.unmount()
				cfg := unionfs.Config{Lowers: []string{d.lower2, d.lower}, Upper: d.upper, Work: d.work, RedirectDir: unionfs.RedirectOn}
				if err := d.mount(cfg); err != nil {
					return "", fmt.Errorf("mount with redirect_dir=on: %s", errMessage(err))
				}
				if err := os.Rename(m("old"), m("new")); err != nil {
					return "", err
				}
				names, err := listing(m("new"))
				return "merged/new: " + names + "\nupper/new: " + attrsOf(filepath.Join(d.upper, "new")), err
			}},
		{"echo more >> merged/h1; stat -c '%n %i %h' merged/h1 merged/h2", "h1 and h2 are two names " +
			"of one file in lower2. Copying up h1 alone would split them in two; the copy-up links " +
			"both names to the one copy, so they stay one file: same inode number, two links, " +
			"the same data.",
			func() (string, error) {
				f, err := os.OpenFile(m("h1"), os.O_WRONLY|os.O_APPEND, 0)
				if err != nil {
					return "", err
				}
				f.WriteString("more\n")
				if err := f.Close(); err != nil {
					return "", err
				}
				var out strings.Builder
				for _, name := range []string{"h1", "h2"} {
					var st unix.Stat_t
					if err := unix.Lstat(m(name), &st); err != nil {
						return "", err
					}
					fmt.Fprintf(&out, "merged/%s %d %d\n", name, st.Ino, st.Nlink)
				}
				return out.String(), nil
			}},
		{"getfattr -d -m - upper/f1", "a copy-up keeps the owner, mode, times and extended " +
			"attributes of the original, and records the inode number the file had (overlay." +
			"layerfs.ino), so st_ino does not change when a file is copied up. The mount hides " +
			"these attributes, as the kernel's overlayfs hides its own.",
			func() (string, error) { return "upper/f1: " + attrsOf(filepath.Join(d.upper, "f1")), nil }},
		{"ls -a work/work", "the work directory is where copies are built before they are " +
			"renamed into the upper, so a crash never leaves half a file in the view; what a " +
			"crash leaves there is removed at the next mount (by layerfs or by the kernel).",
			func() (string, error) { return listing(filepath.Join(d.work, "work")) }},
	}
	for i, s := range steps {
		if err := d.step(n+i, s.cmd, s.why, s.act); err != nil {
			return err
		}
	}
	d.say("$ fusermount3 -u merged    (the demo unmounts and removes %s)", d.root)
	return nil
}

// attrsOf lists the overlay attributes of an object in a layer, name=value.
func attrsOf(p string) string {
	buf := make([]byte, 64<<10)
	n, err := unix.Llistxattr(p, buf)
	if err != nil {
		return "(" + err.Error() + ")"
	}
	var out []string
	for _, name := range strings.Split(strings.TrimRight(string(buf[:n]), "\x00"), "\x00") {
		if !strings.Contains(name, "overlay.") {
			continue
		}
		val := make([]byte, 4096)
		if k, err := unix.Lgetxattr(p, name, val); err == nil {
			out = append(out, name+"="+strconv.Quote(string(val[:k])))
		}
	}
	sort.Strings(out)
	if len(out) == 0 {
		return "(no overlay attributes)"
	}
	return strings.Join(out, "  ")
}

// views are what the merged view shows (with the layer serving each name) and what the upper
// folder holds.
func (d *demo) views() (merged, upper string, err error) {
	if merged, err = d.layeredListing(); err != nil {
		return "", "", err
	}
	upper, err = listing(d.upper)
	return merged, upper, err
}

// layeredListing lists the merged view with the layer serving each name, as the mount tells
// through the user.layerfs.layer attribute.
func (d *demo) layeredListing() (string, error) {
	ents, err := os.ReadDir(d.mnt)
	if err != nil {
		return "", err
	}
	var names []string
	for _, e := range ents {
		buf := make([]byte, 4096)
		n, err := unix.Getxattr(filepath.Join(d.mnt, e.Name()), unionfs.LayerXattr, buf)
		if err != nil {
			return "", err
		}
		// "N /path/of/layer": the layer's folder name, as the demo calls it.
		_, dir, _ := strings.Cut(string(buf[:n]), " ")
		layer := filepath.Base(dir)
		names = append(names, e.Name()+" ("+layer+")")
	}
	sort.Strings(names)
	return strings.Join(names, "  "), nil
}

func readFile(p string) (string, error) {
	data, err := os.ReadFile(p)
	return string(data), err
}

// listing names a directory's entries like ls does, marking whiteouts so they stand out.
func listing(dir string) (string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return "", err
	}
	var names []string
	for _, e := range ents {
		name := e.Name()
		if e.Type()&os.ModeCharDevice != 0 {
			var st unix.Stat_t
			if unix.Lstat(filepath.Join(dir, name), &st) == nil && st.Rdev == 0 {
				name += " (character device 0/0: a whiteout)"
			}
		}
		names = append(names, name)
	}
	sort.Strings(names)
	if len(names) == 0 {
		return "(empty)", nil
	}
	return strings.Join(names, "  "), nil
}

func indent(s string) string {
	s = strings.TrimRight(s, "\n")
	return "  " + strings.ReplaceAll(s, "\n", "\n  ") + "\n"
}
