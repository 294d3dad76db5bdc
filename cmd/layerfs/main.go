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
	"strings"

	"github.com/layerfs/layerfs/unionfs"
	flag "github.com/spf13/pflag"
)

// version is set at build time with -ldflags "-X main.version=…"; otherwise the build info
// names the source: the module version ("go install …@v1.2.0"), or the pseudo-version or VCS
// revision Go stamps a build of a checkout with.
var version = ""

func versionString() string {
	return "layerfs version " + sourceVersion(version)
}

func sourceVersion(v string) string {
	if v != "" {
		return v
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown (no build information)"
	}
	if v := info.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	rev, dirty := "", ""
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "+dirty"
			}
		}
	}
	if rev == "" {
		// -buildvcs=false, or not built from a checkout.
		return "devel (source revision unknown: build with make build, or go build -buildvcs=auto in a checkout)"
	}
	return "devel-" + rev[:min(12, len(rev))] + dirty
}

const usageText = `layerfs — overlay (union) filesystem in userspace

Usage:
  layerfs -o lowerdir=LOWER1:LOWER2[,upperdir=UPPER,workdir=WORK][,OPTION…] MOUNTPOINT
  layerfs --lower LOWER1 [--lower LOWER2…] [--upper UPPER --work WORK] MOUNTPOINT
  layerfs SOURCE MOUNTPOINT -o lowerdir=…   (as mount -t fuse.layerfs and /etc/fstab run it)
  layerfs demo [--step] [--html DIR]
  layerfs inspect [--json|--svg|--html] -o lowerdir=LOWER1:LOWER2[,upperdir=UPPER] [PATH]
  layerfs watch [--json] MOUNTPOINT
  layerfs image unpack|mount|export …      (OCI images; see layerfs image --help)
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
  nobirthtime      statx gives no birth time, and asking for one costs no round trip
  io_uring=on      take requests over io_uring where the kernel offers it (enable_uring=Y):
                   faster round trips; off by default (see README, Performance)
  redirect_dir=on  rename directories that have lower parts (default: EXDEV, so mv copies)
  fsname=NAME      source name shown in /proc/self/mountinfo (default: SOURCE, or layerfs)
  subtype=NAME     mount type fuse.NAME (default fuse.layerfs)
  log=FILE|syslog|stderr   where problems (failed copy-ups, I/O errors, full disks) are logged;
                   default syslog in the background, stderr with -f
  uidmapping=DISK:SHOWN:LEN[:…], gidmapping=…   show stored ids shifted (fuse-overlayfs syntax)
  squash_to_root, squash_to_uid=N, squash_to_gid=N   show every object owned by these ids
  xattr_permissions=1|2   keep chmod/chown of upper objects in an override attribute
  ro, nodev, nosuid, noexec, noatime, relatime, strictatime, nodiratime, …   mount flags
  remount          change ro/rw, nosuid, nodev, noexec of the layerfs mount on MOUNTPOINT
                   (what mount -o remount,ro MOUNTPOINT runs); needs root
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
	if len(args) > 0 && args[0] == "image" {
		return runImage(args[1:], stdout, stderr)
	}
	flags := flag.NewFlagSet("layerfs", flag.ContinueOnError)
	flags.SetOutput(stderr)
	var (
		opts       = flags.StringArrayP("options", "o", nil, "mount `OPTIONS`, comma-separated (see above)")
		lowers     = flags.StringArray("lower", nil, "a read-only layer `DIR`; repeat, topmost first")
		upper      = flags.String("upper", "", "the writable layer `DIR`")
		work       = flags.String("work", "", "the work `DIR` (same filesystem as --upper)")
		foreground = flags.BoolP("foreground", "f", false, "stay in the foreground; SIGINT/SIGTERM unmount")
		debugFlag  = flags.BoolP("debug", "d", false, "trace every FUSE operation to stderr (implies nothing else)")
		traceFlag  = flags.Bool("trace", false, "log every overlay action (copy-up, whiteout, opaque, redirect) to stderr")
		showVer    = flags.BoolP("version", "V", false, "print the version and exit")
		help       = flags.BoolP("help", "h", false, "show this help")
	)
	flags.Usage = func() {
		fmt.Fprint(stderr, usageText)
		printFlags(stderr, flags)
	}
	if err := flags.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "layerfs: %v (see layerfs --help)\n", err)
		return 2
	}
	if *help {
		fmt.Fprint(stdout, usageText)
		printFlags(stdout, flags)
		return 0
	}
	if *showVer {
		fmt.Fprintln(stdout, versionString())
		return 0
	}

	var cfg unionfs.Config
	logDest = ""
	if os.Getenv("LAYERFS_IO_URING") == "on" {
		// The default for every mount of this environment (make test's io_uring pass);
		// -o io_uring= still decides.
		cfg.IOUring = unionfs.IOUringOn
	}
	unknownBare, remount = false, false
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
	case len(rest) == 2:
		// The mount helper's form (mount -t fuse.layerfs, /etc/fstab): mount.fuse3 runs
		// "layerfs SOURCE MOUNTPOINT -o OPTIONS". The source is what mountinfo shows, as
		// for libfuse filesystems, unless fsname= says otherwise.
		if cfg.FsName == "" {
			cfg.FsName = rest[0]
		}
		rest = rest[1:]
	case len(rest) > 2:
		fmt.Fprintf(stderr, "layerfs: one mountpoint expected (or a source and a mountpoint), got %q (see layerfs --help)\n", rest)
		return 2
	}
	mountpoint := rest[0]
	if remount {
		if err := unionfs.Remount(mountpoint, cfg); err != nil {
			fmt.Fprintf(stderr, "layerfs: %s\n", errMessage(err))
			return 1
		}
		return 0
	}
	if err := cfg.Validate(mountpoint); err != nil {
		msg := errMessage(err)
		if unknownBare && strings.Contains(msg, "does not exist") {
			msg += ` (a comma in a path is written \, in -o)`
		}
		fmt.Fprintf(stderr, "layerfs: %s\n", msg)
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
