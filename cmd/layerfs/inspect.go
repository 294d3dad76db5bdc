package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"github.com/layerfs/layerfs/unionfs"
	flag "github.com/spf13/pflag"
)

const inspectUsage = `Usage:
  layerfs inspect [--json|--svg|--html] -o lowerdir=A:B[,upperdir=U] [PATH]
  layerfs inspect [--json] --lower A --lower B [--upper U] [PATH]
  layerfs inspect [--json] LAYER... [PATH]
  layerfs inspect [--json|--svg|--html] --mount MOUNTPOINT [PATH]

In the last form the layers are listed topmost first and all read as lowers; PATH is the last
argument when it starts with "/" and is no directory on this machine (or give --path).

Shows, without mounting, where PATH of the merged view comes from: the layer that serves it,
what it hides in the layers below, or the whiteout that deletes it. For a directory, the tree
below it with each name tagged by layer and status (added, modified, merged, opaque, deleted),
then what each layer adds and hides. Layer 0 is the upper when there is one.

--svg draws the directory as the figure overlays are taught with: the merged view on top, a
row per layer, a column per name (--depth N: down to N levels), the serving cell marked;
--html puts it in a self-contained page. Beyond 40 names or 12 layers it draws the first and
says how many it left out.

Flags:
`

// inspected is one name of the tree, with its path.
type inspected struct {
	Path string `json:"path"`
	unionfs.Origin
}

// layerSummary adds up what one layer contributes to the view.
type layerSummary struct {
	Layer         int    `json:"layer"`
	Dir           string `json:"dir"`
	Upper         bool   `json:"upper"`
	Entries       int    `json:"entries"` // served by this layer
	Hidden        int    `json:"hidden"`  // held by this layer, hidden by one above
	Added         int    `json:"added"`
	Modified      int    `json:"modified"`
	Deleted       int    `json:"deleted"`
	Opaque        int    `json:"opaque"`
	Bytes         int64  `json:"bytes"`
	ShadowedBytes int64  `json:"shadowed_bytes"`
}

func runInspect(args []string, stdout, stderr io.Writer) int {
	flags := flag.NewFlagSet("layerfs inspect", flag.ContinueOnError)
	flags.SetOutput(stderr)
	opts := flags.StringArrayP("options", "o", nil, "`OPTIONS` lowerdir=…[,upperdir=…] as for mounting")
	lowers := flags.StringArray("lower", nil, "a read-only layer `DIR`; repeat, topmost first")
	upper := flags.String("upper", "", "the upper layer `DIR`")
	asJSON := flags.Bool("json", false, "print JSON")
	asSVG := flags.Bool("svg", false, "draw the stack as an SVG figure: a row per layer, a column per name")
	asHTML := flags.Bool("html", false, "the same figure in a self-contained HTML page")
	depth := flags.Int("depth", 1, "with --svg/--html, draw names down to `N` levels below the path")
	mountFlag := flags.String("mount", "", "inspect the stack the layerfs mount at `MOUNTPOINT` serves")
	pathFlag := flags.String("path", "", "the merged `PATH` to inspect (default: the root)")
	flags.Usage = func() {
		fmt.Fprint(stderr, inspectUsage)
		printFlags(stderr, flags)
	}
	if err := flags.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		fmt.Fprintf(stderr, "layerfs inspect: %v\n", err)
		return 2
	}
	var cfg unionfs.Config
	for _, o := range *opts {
		if err := parseOptions(o, &cfg, func(string) {}); err != nil {
			fmt.Fprintf(stderr, "layerfs inspect: %v\n", err)
			return 2
		}
	}
	cfg.Lowers = append(cfg.Lowers, *lowers...)
	if *upper != "" {
		cfg.Upper = *upper
	}
	if *mountFlag != "" {
		if len(cfg.Lowers) > 0 {
			fmt.Fprintln(stderr, "layerfs inspect: --mount names the layers itself; give no others")
			return 2
		}
		h, err := stackOfMount(*mountFlag)
		if err != nil {
			fmt.Fprintf(stderr, "layerfs inspect: --mount %s: %v\n", *mountFlag, err)
			return 1
		}
		cfg.Lowers, cfg.Upper = h.Lowers, h.Upper
	}
	rest := flags.Args()
	target := *pathFlag
	if len(cfg.Lowers) == 0 {
		// Positional layers, and perhaps a path last.
		if n := len(rest); n > 1 && target == "" && strings.HasPrefix(rest[n-1], "/") {
			if !isDir(rest[n-1]) {
				target, rest = rest[n-1], rest[:n-1]
			} else {
				// Either a layer or a merged path: say which it was taken as.
				fmt.Fprintf(stderr, "layerfs inspect: taking %s as the bottom layer (a directory here); to inspect that path of the stack, give --path %s\n", rest[n-1], rest[n-1])
			}
		}
		cfg.Lowers, rest = rest, nil
	}
	if len(cfg.Lowers) == 0 {
		fmt.Fprintln(stderr, "layerfs inspect: no layer given (see layerfs inspect --help)")
		return 2
	}
	if len(rest) > 1 || (len(rest) == 1 && target != "") {
		fmt.Fprintf(stderr, "layerfs inspect: one path expected, got %q\n", append(rest, target))
		return 2
	}
	if len(rest) == 1 {
		target = rest[0]
	}
	path := strings.Trim(target, "/")
	ins, err := unionfs.NewInspector(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "layerfs inspect: %s\n", errMessage(err))
		return 1
	}
	defer ins.Close()

	if *asSVG || *asHTML {
		if *depth < 1 {
			fmt.Fprintln(stderr, "layerfs inspect: --depth wants 1 or more")
			return 2
		}
		pic, err := buildPicture(ins, path, *depth, pictureTitle(path))
		if err != nil {
			fmt.Fprintf(stderr, "layerfs inspect: %v\n", err)
			return 1
		}
		if *asHTML {
			writeHTML(stdout, pic)
		} else {
			writeSVG(stdout, pic)
		}
		return 0
	}
	self, errno := ins.Lookup(path)
	if errno != 0 {
		fmt.Fprintf(stderr, "layerfs inspect: %s: %v\n", displayPath(path), errno)
		return 1
	}
	tree := []inspected{{Path: displayPath(path), Origin: self}}
	if self.Type == "dir" && self.Status != "deleted" {
		if errno := walkInspect(ins, path, &tree); errno != 0 {
			fmt.Fprintf(stderr, "layerfs inspect: %s: %v\n", displayPath(path), errno)
			return 1
		}
	}
	counted := tree
	if path == "" {
		counted = tree[1:] // the root is every layer's
	}
	summary := summarize(ins, counted)
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(struct {
			Layers  []string       `json:"layers"`
			Upper   bool           `json:"upper"`
			Entries []inspected    `json:"entries"`
			Summary []layerSummary `json:"summary"`
		}{ins.Layers(), ins.HasUpper(), tree, summary})
		return 0
	}
	printInspect(stdout, ins, tree, summary, isTerminal(stdout))
	return 0
}

func displayPath(p string) string { return "/" + p }

func walkInspect(ins *unionfs.Inspector, path string, out *[]inspected) syscall.Errno {
	list, errno := ins.List(path)
	if errno != 0 {
		return errno
	}
	sort.Slice(list, func(a, b int) bool { return list[a].Name < list[b].Name })
	for _, o := range list {
		p := o.Name
		if path != "" {
			p = path + "/" + o.Name
		}
		*out = append(*out, inspected{Path: displayPath(p), Origin: o})
		if o.Type == "dir" && o.Status != "deleted" {
			if errno := walkInspect(ins, p, out); errno != 0 {
				return errno
			}
		}
	}
	return 0
}

func summarize(ins *unionfs.Inspector, tree []inspected) []layerSummary {
	sums := make([]layerSummary, len(ins.Layers()))
	for i, dir := range ins.Layers() {
		sums[i] = layerSummary{Layer: i, Dir: dir, Upper: i == 0 && ins.HasUpper()}
	}
	for _, e := range tree {
		if e.Layer < 0 || e.Layer >= len(sums) {
			continue
		}
		s := &sums[e.Layer]
		switch e.Status {
		case "deleted":
			s.Deleted++
		case "added":
			s.Added++
		case "modified":
			s.Modified++
		case "opaque":
			s.Opaque++
		}
		if e.Status != "deleted" {
			s.Entries++
			s.Bytes += e.Size
		}
		s.ShadowedBytes += e.ShadowedBytes
		for _, l := range e.Shadowed {
			if l >= 0 && l < len(sums) {
				sums[l].Hidden++
			}
		}
	}
	return sums
}

var statusColour = map[string]string{
	"added": "\033[32m", "modified": "\033[33m", "deleted": "\033[31m", "opaque": "\033[35m", "merged": "\033[36m",
}

func printInspect(w io.Writer, ins *unionfs.Inspector, tree []inspected, sums []layerSummary, colour bool) {
	// Padded before it is painted: the colour codes take no column on the terminal.
	paint := func(status string) string {
		padded := fmt.Sprintf("%-9s", status)
		if !colour {
			return padded
		}
		return statusColour[status] + padded + "\033[0m"
	}
	layerName := func(l int) string {
		if l == 0 && ins.HasUpper() {
			return "upper"
		}
		return fmt.Sprintf("L%d", l)
	}
	fmt.Fprintln(w, "layers (topmost first):")
	for i, dir := range ins.Layers() {
		fmt.Fprintf(w, "  %-6s %s\n", layerName(i), dir)
	}
	fmt.Fprintln(w)
	for _, e := range tree {
		where := "-"
		if e.Layer >= 0 {
			where = layerName(e.Layer)
		}
		line := fmt.Sprintf("[%-5s] %s %s", where, paint(e.Status), e.Path)
		if e.Type == "dir" && e.Status != "deleted" && e.Path != "/" {
			line += "/"
		}
		var notes []string
		if e.Type == "reg" && e.Status != "deleted" {
			notes = append(notes, fmt.Sprintf("%d bytes", e.Size))
		}
		if len(e.Merged) > 1 {
			notes = append(notes, "merges "+names(e.Merged, layerName))
		}
		if len(e.Shadowed) > 0 {
			verb := "hides"
			if e.Status == "deleted" {
				verb = "whiteout hides"
			}
			notes = append(notes, verb+" "+names(e.Shadowed, layerName))
		}
		if len(notes) > 0 {
			line += "  (" + strings.Join(notes, "; ") + ")"
		}
		fmt.Fprintln(w, line)
	}
	fmt.Fprintln(w)
	// "serves" counts the entries of the view a layer serves; "hidden", its entries that
	// layers above hide: a lower hidden entirely serves 0 but is not empty.
	fmt.Fprintln(w, "layer    serves  hidden  added  modified  deleted  opaque        bytes  hides bytes")
	for _, s := range sums {
		fmt.Fprintf(w, "%-6s %8d %7d %6d %9d %8d %7d %12d %12d\n",
			layerName(s.Layer), s.Entries, s.Hidden, s.Added, s.Modified, s.Deleted, s.Opaque, s.Bytes, s.ShadowedBytes)
	}
}

func names(layers []int, name func(int) string) string {
	var out []string
	for _, l := range layers {
		out = append(out, name(l))
	}
	return strings.Join(out, ",")
}

// isTerminal reports whether w is a terminal that takes colour.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok || os.Getenv("NO_COLOR") != "" || os.Getenv("TERM") == "dumb" {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

func isDir(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}

// stackOfMount asks the server of the layerfs mount at mnt which layers it serves (the
// greeting on its event socket).
func stackOfMount(mnt string) (hello, error) {
	abs, err := filepath.Abs(mnt)
	if err == nil {
		abs, err = filepath.EvalSymlinks(abs)
	}
	if err != nil {
		return hello{}, err
	}
	c, err := dialEvents(abs)
	if err != nil {
		return hello{}, fmt.Errorf("no layerfs server publishes its stack there (%v)", err)
	}
	defer c.Close()
	h, ok := readHello(bufio.NewScanner(c))
	if !ok || len(h.Lowers) == 0 {
		return hello{}, errors.New("the server did not name its layers")
	}
	return h, nil
}
