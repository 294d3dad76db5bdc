package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"

	"github.com/layerfs/layerfs/unionfs"
	"golang.org/x/sys/unix"
)

// demo replays the seed walkthrough of overlay semantics on a throw-away stack: one lower
// (f1 f2 f3), one upper (f3 f4), and the merged view, printing each command, what the merged
// view and the upper folder then show, and why.
type demo struct {
	out                           io.Writer
	root, lower, upper, work, mnt string
	// pause, if set, waits for a line on it before each step (live teaching).
	pause *bufio.Reader
	// width is the terminal's, to wrap explanations between words; 0 for no wrapping.
	width int
}

func runDemo(args []string, stdout, stderr io.Writer) int {
	stepMode := false
	for _, a := range args {
		if a == "--help" || a == "-h" {
			fmt.Fprintln(stdout, "usage: layerfs demo [--step]\n\nReplays the classic overlay walkthrough on a temporary stack, showing the merged view,\nthe layer serving every name and the upper folder after each step; --step waits for\nEnter between steps.")
			return 0
		}
		if a != "--step" {
			fmt.Fprintf(stderr, "layerfs: demo: unknown argument %q (demo [--step])\n", a)
			return 2
		}
		stepMode = true
	}
	root, err := os.MkdirTemp("", "layerfs-demo-")
	if err != nil {
		fmt.Fprintf(stderr, "layerfs: demo: %v\n", err)
		return 1
	}
	defer os.RemoveAll(root)
	d := &demo{out: stdout, root: root, width: terminalWidth(stdout),
		lower: filepath.Join(root, "lower"), upper: filepath.Join(root, "upper"),
		work: filepath.Join(root, "work"), mnt: filepath.Join(root, "merged")}
	if stepMode {
		d.pause = bufio.NewReader(os.Stdin)
	}
	if err := d.setup(); err != nil {
		fmt.Fprintf(stderr, "layerfs: demo: %v\n", err)
		return 1
	}
	// A mount like any other: its events reach layerfs watch in a second terminal.
	traceLog = nil
	cfg := unionfs.Config{Lowers: []string{d.lower}, Upper: d.upper, Work: d.work,
		Log: &prefixWriter{w: &stopOnError{w: stderr}, prefix: func() string { return "layerfs: demo: " }}}
	warn := func(msg string) { fmt.Fprintf(stderr, "layerfs: demo: warning: %s\n", msg) }
	// The mount is served by this process: a signal (Ctrl-C at a --step prompt) or a reader
	// gone (layerfs demo | head) must not end it with the mount left behind, dead.
	sigs := catchSignals()
	defer signal.Stop(sigs)
	srv, ev, err := mountWithEvents(d.mnt, cfg, warn)
	if err != nil {
		fmt.Fprintf(stderr, "layerfs: demo: mount: %s\n", errMessage(err))
		return 1
	}
	go func() {
		if _, ok := <-sigs; ok {
			unmount(srv, stderr)
			srv.Wait()
			os.RemoveAll(root)
			os.Exit(130)
		}
	}()
	if ev != nil {
		defer ev.close()
		if d.pause != nil {
			d.say("The stack is mounted on %s. To see each step's copy-ups and whiteouts", d.mnt)
			d.say("as they happen, run in a second terminal:  layerfs watch %s\n", d.mnt)
		} else {
			d.say("(layerfs demo --step waits between steps, so that layerfs watch can follow in a second terminal)\n")
		}
	}
	defer func() {
		if err := srv.Unmount(); err != nil {
			unix.Unmount(d.mnt, unix.MNT_DETACH)
		}
		srv.Wait()
	}()
	if err := d.walk(); err != nil {
		fmt.Fprintf(stderr, "layerfs: demo: %v\n", err)
		return 1
	}
	return 0
}

func (d *demo) setup() error {
	for _, dir := range []string{d.lower, d.upper, d.work, d.mnt} {
		if err := os.Mkdir(dir, 0o755); err != nil {
			return err
		}
	}
	files := map[string]string{
		"lower/f1": "f1 from lower\n", "lower/f2": "f2 from lower\n", "lower/f3": "f3 from lower\n",
		"upper/f3": "f3 from upper\n", "upper/f4": "f4 from upper\n",
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(d.root, name), []byte(data), 0o644); err != nil {
			return err
		}
	}
	return nil
}

func (d *demo) say(format string, args ...any) { fmt.Fprintf(d.out, format+"\n", args...) }

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
	merged, err := d.layeredListing()
	if err != nil {
		return err
	}
	upper, err := listing(d.upper)
	if err != nil {
		return err
	}
	d.say("  merged/ now shows: %s", merged)
	d.say("  upper/  now holds: %s", upper)
	d.say("%s", wrap("  why: "+why, d.width, "       "))
	d.say("")
	return nil
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
	d.say("$ fusermount3 -u merged    (the demo unmounts and removes %s)", d.root)
	return nil
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
		layer := "lower"
		if strings.HasPrefix(string(buf[:n]), "0 ") {
			layer = "upper"
		}
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
