package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/layerfs/layerfs/unionfs/image"
	digest "github.com/opencontainers/go-digest"
	flag "github.com/spf13/pflag"
)

const imageUsage = `layerfs image — OCI images as layer stacks, without a container engine

Usage:
  layerfs image unpack SRC [STORE]          unpack what the store lacks; print the layers
  layerfs image mount [--upper DIR --work DIR] [-o OPTIONS] SRC MOUNTPOINT
  layerfs image export [--gzip|--zstd] [--oci DIR [--tag TAG]] UPPER FILE.tar

SRC is an OCI image layout (oci:DIR[:TAG], as skopeo copy, buildah push and podman save
--format oci-dir write one) or a docker save / podman save archive. Each layer is stored
once, by the digest of its content, under STORE/layers (default: /var/lib/layerfs as root,
$XDG_DATA_HOME/layerfs or ~/.local/share/layerfs otherwise). Without --upper the mount is
read-only.

Examples:
  podman save --format oci-dir -o /tmp/alpine alpine
  layerfs image mount oci:/tmp/alpine /mnt/alpine
  layerfs image mount --upper /c/upper --work /c/work oci:/tmp/alpine /c/merged
  # after a build in /c/merged: the upper as a layer on top of the image
  layerfs image export --gzip --oci /tmp/alpine /c/upper /tmp/layer.tar.gz

Flags:
`

// runImage is "layerfs image …".
func runImage(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprint(stdout, strings.TrimSuffix(imageUsage, "Flags:\n"))
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	flags := flag.NewFlagSet("layerfs image "+args[0], flag.ContinueOnError)
	flags.SetOutput(stderr)
	var (
		store      = flags.String("store", "", "where layers are kept (`DIR`; see above for the default)")
		maxSize    = flags.Int64("max-size", image.DefaultLimits.MaxBytes, "refuse a layer whose files hold more than `BYTES` (a tar bomb)")
		maxEntries = flags.Int("max-entries", image.DefaultLimits.MaxEntries, "refuse a layer of more than `N` entries")
		upper      = flags.String("upper", "", "mount: the writable layer `DIR`")
		work       = flags.String("work", "", "mount: the work `DIR` (same filesystem as --upper)")
		opts       = flags.StringArrayP("options", "o", nil, "mount: more mount `OPTIONS`, as for layerfs -o")
		foreground = flags.BoolP("foreground", "f", false, "mount: stay in the foreground")
		gz         = flags.Bool("gzip", false, "export: compress with gzip")
		zst        = flags.Bool("zstd", false, "export: compress with zstd")
		oci        = flags.String("oci", "", "export: also add the layer on top of the image in the OCI layout `DIR`")
		tag        = flags.String("tag", "", "export --oci: the image `TAG` in the layout (default: its only image)")
	)
	flags.Usage = func() {
		fmt.Fprint(stderr, imageUsage)
		printFlags(stderr, flags)
	}
	if err := flags.Parse(args[1:]); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		fmt.Fprintf(stderr, "layerfs image: %v\n", err)
		return 2
	}
	rest := flags.Args()
	fail := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "layerfs image %s: %s\n", args[0], fmt.Sprintf(format, a...))
		return 1
	}
	switch args[0] {
	case "unpack", "mount":
		// unpack SRC [STORE]; mount SRC MOUNTPOINT
		if len(rest) != 2 && !(args[0] == "unpack" && len(rest) == 1) {
			fmt.Fprintf(stderr, "layerfs image %s: wrong arguments %q (see layerfs image --help)\n", args[0], rest)
			return 2
		}
		st := &image.Store{Dir: *store, Limits: image.Limits{MaxBytes: *maxSize, MaxEntries: *maxEntries}}
		if args[0] == "unpack" && len(rest) == 2 {
			st.Dir = rest[1]
		}
		if st.Dir == "" {
			d, err := image.DefaultStore()
			if err != nil {
				return fail("%v", err)
			}
			st.Dir = d
		}
		st.Warn = func(msg string) { fmt.Fprintf(stderr, "layerfs image: warning: %s\n", msg) }
		img, err := image.Open(rest[0])
		if err != nil {
			return fail("%v", err)
		}
		if isTerminal(stderr) && os.Getenv(daemonEnv) == "" {
			st.Progress = progressBar(stderr, img)
		}
		dirs, err := st.UnpackImage(img)
		if st.Progress != nil {
			fmt.Fprint(stderr, "\r\033[K")
		}
		if err != nil {
			return fail("%v", err)
		}
		if args[0] == "unpack" {
			for _, d := range dirs {
				fmt.Fprintln(stdout, d)
			}
			return 0
		}
		mountArgs := []string{"-o", "lowerdir=" + joinLowers(dirs)}
		if *upper != "" || *work != "" {
			mountArgs = append(mountArgs, "--upper", *upper, "--work", *work)
		}
		for _, o := range *opts {
			mountArgs = append(mountArgs, "-o", o)
		}
		if *foreground {
			mountArgs = append(mountArgs, "-f")
		}
		return run(append(mountArgs, rest[1]), stdout, stderr)
	case "export":
		if len(rest) != 2 {
			fmt.Fprintf(stderr, "layerfs image export: wrong arguments %q: an upper directory and a file (see layerfs image --help)\n", rest)
			return 2
		}
		c := image.Uncompressed
		switch {
		case *gz && *zst:
			return fail("--gzip and --zstd: choose one")
		case *gz:
			c = image.Gzip
		case *zst:
			c = image.Zstd
		}
		if !isDir(rest[0]) {
			return fail("upper %s is not a directory", rest[0])
		}
		ex, err := image.Export(rest[0], rest[1], c)
		if err != nil {
			return fail("%v", err)
		}
		fmt.Fprintf(stdout, "%s %s (uncompressed %s)\n", rest[1], ex.Digest, ex.DiffID)
		if *oci != "" {
			if err := image.AppendLayer(*oci, *tag, rest[1], ex); err != nil {
				return fail("%v", err)
			}
		}
		return 0
	}
	fmt.Fprintf(stderr, "layerfs image: unknown command %q: unpack, mount or export (see layerfs image --help)\n", args[0])
	return 2
}

// joinLowers writes dirs as lowerdir= takes them, separators escaped.
func joinLowers(dirs []string) string {
	esc := make([]string, len(dirs))
	for i, d := range dirs {
		d = strings.ReplaceAll(d, `\`, `\\`)
		d = strings.ReplaceAll(d, ",", `\,`)
		esc[i] = strings.ReplaceAll(d, ":", `\:`)
	}
	return strings.Join(esc, ":")
}

// progressBar draws one line on a terminal per layer being unpacked, at most ten times a
// second.
func progressBar(w io.Writer, img *image.Image) func(digest.Digest, int64, int64) {
	var last time.Time
	return func(d digest.Digest, done, total int64) {
		if time.Since(last) < 100*time.Millisecond {
			return
		}
		last = time.Now()
		n := 0
		for i, l := range img.Layers {
			if l.DiffID == d {
				n = i + 1
			}
		}
		short := d.Encoded()
		if len(short) > 12 {
			short = short[:12]
		}
		line := fmt.Sprintf("unpacking layer %d/%d %s: %.1f MiB", n, len(img.Layers), short, float64(done)/(1<<20))
		if total > 0 {
			line += fmt.Sprintf(" of %.1f MiB (%d%%)", float64(total)/(1<<20), done*100/total)
		}
		fmt.Fprintf(w, "\r\033[K%s", line)
	}
}
