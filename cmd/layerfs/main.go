// Command layerfs mounts a union of read-only lower directories and one writable upper
// directory with the semantics of Linux overlayfs, in userspace through FUSE.
//
// It is a drop-in for fuse-overlayfs as a container engine's mount_program:
//
//	layerfs -o lowerdir=L1:L2,upperdir=U,workdir=W MOUNTPOINT
//
// Run "layerfs --help" for the whole usage, "layerfs demo" for a guided walkthrough.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"

	"github.com/layerfs/layerfs/unionfs"
	flag "github.com/spf13/pflag"
)

// version is set at build time with -ldflags "-X main.version=…"; otherwise the module
// version or VCS revision is shown.
var version = ""

func versionString() string {
	v := version
	if info, ok := debug.ReadBuildInfo(); ok {
		if v == "" && info.Main.Version != "" && info.Main.Version != "(devel)" {
			v = info.Main.Version
		}
		if v == "" {
			for _, s := range info.Settings {
				if s.Key == "vcs.revision" && len(s.Value) >= 12 {
					v = "0.1.0-dev+" + s.Value[:12]
				}
			}
		}
	}
	if v == "" {
		v = "0.1.0-dev"
	}
	return "layerfs version " + v
}

const usageText = `layerfs — overlay (union) filesystem in userspace

Usage:
  layerfs -o lowerdir=LOWER1:LOWER2[,upperdir=UPPER,workdir=WORK][,OPTION…] MOUNTPOINT
  layerfs --lower LOWER1 [--lower LOWER2…] [--upper UPPER --work WORK] MOUNTPOINT
  layerfs demo [--step]
  layerfs inspect -o lowerdir=LOWER1:LOWER2[,upperdir=UPPER] [PATH]
  layerfs watch [--json] MOUNTPOINT
  layerfs --version

Lowers are listed topmost first, as for the kernel's overlayfs. Without an upper directory
the mount is read-only. layerfs returns once the mount is live and serves it in the
background until it is unmounted (fusermount3 -u MOUNTPOINT or umount MOUNTPOINT).

Examples:
  # two read-only layers and a writable upper, like mount -t overlay
  layerfs -o lowerdir=/img/layer2:/img/layer1,upperdir=/c/upper,workdir=/c/work /c/merged
  # the same with long flags, in the foreground with an operation trace
  layerfs -f --debug --lower /img/layer2 --lower /img/layer1 --upper /c/upper --work /c/work /c/merged
  # a read-only view of one layer
  layerfs -o lowerdir=/img/layer1 /mnt/view
  # unmount
  fusermount3 -u /c/merged
  # watch overlay semantics happen in a temporary stack
  layerfs demo
  # copy-ups, whiteouts and opaque directories of a mount, as they happen
  layerfs watch /c/merged
  # which layer serves /etc, and what each layer adds or deletes (no mount needed)
  layerfs inspect -o lowerdir=/img/layer2:/img/layer1,upperdir=/c/upper /etc

Options (-o, comma-separated; "\," and "\:" escape separators in paths):
  lowerdir=A:B:…   read-only layers, topmost first (required)
  upperdir=DIR     writable layer
  workdir=DIR      empty directory on the upper's filesystem, needed with upperdir
  userxattr        write user.overlay.* markers instead of trusted.overlay.* (rootless)
  volatile         do not fsync (as the kernel's volatile)
  noopen           the kernel opens files without asking: faster opens, copy-up at first write
  nopassthrough    serve every read and write through the daemon (as root, the kernel passes
                   them to the layer's file by default; see README "What differs")
  io_uring=on      take requests over io_uring where the kernel offers it (enable_uring=Y):
                   faster round trips; off by default (see README, Performance)
  redirect_dir=on  rename directories that have lower parts (default: EXDEV, so mv copies)
  fsname=NAME      source name shown in /proc/self/mountinfo (default layerfs)
  uidmapping=DISK:SHOWN:LEN[:…], gidmapping=…   show stored ids shifted (fuse-overlayfs syntax)
  squash_to_root, squash_to_uid=N, squash_to_gid=N   show every object owned by these ids
  xattr_permissions=1|2   keep chmod/chown of upper objects in an override attribute
  ro, nodev, nosuid, noexec, noatime, relatime, strictatime, nodiratime, …   mount flags
  debug            same as --debug
  Unknown options are reported and ignored, as fuse-overlayfs does.

Flags:
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is main without the exit, for tests.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 1 && args[0] == "version" {
		fmt.Fprintln(stdout, versionString())
		return 0
	}
	if len(args) > 0 && args[0] == "demo" {
		return runDemo(args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "inspect" {
		return runInspect(args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "watch" {
		return runWatch(args[1:], stdout, stderr)
	}
	flags := flag.NewFlagSet("layerfs", flag.ContinueOnError)
	flags.SetOutput(stderr)
	var (
		opts       = flags.StringArrayP("options", "o", nil, "mount options, comma-separated (see above)")
		lowers     = flags.StringArray("lower", nil, "a read-only layer; repeat, topmost first")
		upper      = flags.String("upper", "", "the writable layer")
		work       = flags.String("work", "", "the work directory (same filesystem as --upper)")
		foreground = flags.BoolP("foreground", "f", false, "stay in the foreground; SIGINT/SIGTERM unmount")
		debugFlag  = flags.BoolP("debug", "d", false, "trace every FUSE operation to stderr (implies nothing else)")
		traceFlag  = flags.Bool("trace", false, "log every overlay action (copy-up, whiteout, opaque, redirect) to stderr")
		showVer    = flags.BoolP("version", "V", false, "print the version and exit")
		help       = flags.BoolP("help", "h", false, "show this help")
	)
	flags.Usage = func() {
		fmt.Fprint(stderr, usageText)
		flags.PrintDefaults()
	}
	if err := flags.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "layerfs: %v (see layerfs --help)\n", err)
		return 2
	}
	if *help {
		flags.SetOutput(stdout)
		fmt.Fprint(stdout, usageText)
		flags.PrintDefaults()
		return 0
	}
	if *showVer {
		fmt.Fprintln(stdout, versionString())
		return 0
	}

	var cfg unionfs.Config
	if os.Getenv("LAYERFS_IO_URING") == "on" {
		// The default for every mount of this environment (make test's io_uring pass);
		// -o io_uring= still decides.
		cfg.IOUring = unionfs.IOUringOn
	}
	warn := func(msg string) { fmt.Fprintf(stderr, "layerfs: warning: %s\n", msg) }
	for _, o := range *opts {
		if err := parseOptions(o, &cfg, warn); err != nil {
			fmt.Fprintf(stderr, "layerfs: %v\n", err)
			return 2
		}
	}
	for _, l := range *lowers {
		if l == "" {
			fmt.Fprintln(stderr, "layerfs: --lower has an empty value")
			return 2
		}
	}
	cfg.Lowers = append(cfg.Lowers, *lowers...)
	if flags.Changed("upper") {
		if *upper == "" {
			fmt.Fprintln(stderr, "layerfs: --upper has an empty value")
			return 2
		}
		cfg.Upper = *upper
	}
	if flags.Changed("work") {
		if *work == "" {
			fmt.Fprintln(stderr, "layerfs: --work has an empty value")
			return 2
		}
		cfg.Work = *work
	}
	cfg.Debug = cfg.Debug || *debugFlag
	logTo := &stopOnError{w: stderr}
	if cfg.Debug {
		cfg.DebugLog = logTo
	}
	traceLog = nil
	if *traceFlag {
		traceLog = logTo
	}

	rest := flags.Args()
	switch {
	case len(rest) == 0:
		fmt.Fprintln(stderr, "layerfs: no mountpoint given (see layerfs --help)")
		return 2
	case len(rest) > 1:
		fmt.Fprintf(stderr, "layerfs: one mountpoint expected, got %q (see layerfs --help)\n", rest)
		return 2
	}
	mountpoint := rest[0]
	if err := cfg.Validate(mountpoint); err != nil {
		fmt.Fprintf(stderr, "layerfs: %s\n", errMessage(err))
		return 1
	}
	if *foreground {
		return serveForeground(mountpoint, cfg, stderr)
	}
	return serveBackground(mountpoint, cfg, stderr)
}

// errMessage drops the generic "invalid configuration: " lead of configuration errors; the
// rest names the problem.
func errMessage(err error) string {
	msg := err.Error()
	prefix := unionfs.ErrConfig.Error() + ": "
	if len(msg) > len(prefix) && msg[:len(prefix)] == prefix {
		return msg[len(prefix):]
	}
	return msg
}
