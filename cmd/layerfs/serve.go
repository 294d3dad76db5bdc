package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/layerfs/layerfs/unionfs"
	"golang.org/x/sys/unix"
)

// daemonEnv tells a re-executed layerfs that it is the background server and which descriptor
// reports readiness to the parent.
const daemonEnv = "_LAYERFS_DAEMON_FD"

// idleMemory is how long a server goes without requests before it gives the memory its heap
// no longer uses back (unionfs.Server.ReturnMemoryWhenIdle).
const idleMemory = 10 * time.Second

// traceLog receives --trace lines; nil without --trace.
var traceLog io.Writer

// mountWithEvents mounts and publishes the mount's events for layerfs watch (and --trace).
// warn is told when events cannot be published: the mount goes on without them.
func mountWithEvents(mountpoint string, cfg unionfs.Config, warn func(string)) (*unionfs.Server, *events, error) {
	mnt, err := filepath.Abs(mountpoint)
	if err == nil {
		mnt, err = filepath.EvalSymlinks(mnt)
	}
	if err != nil {
		return nil, nil, err
	}
	ev, err := listenEvents(mnt, cfg)
	if err != nil {
		ev = nil
		warn(fmt.Sprintf("events unavailable, layerfs watch will not see this mount: %v", err))
	}
	traceTo(&cfg, ev, traceLog)
	srv, err := unionfs.Mount(mountpoint, cfg)
	if err != nil {
		if ev != nil {
			ev.close()
		}
		return nil, nil, err
	}
	return srv, ev, nil
}

// withProblemLog opens the problem log (-o log=) into cfg; the returned function closes it.
func withProblemLog(cfg *unionfs.Config, foreground bool, stderr io.Writer) (func(), error) {
	w, closeLog, err := openProblemLog(logDest, foreground, stderr)
	if err != nil {
		return nil, err
	}
	if cfg.Debug && foreground && (logDest == "" || logDest == "stderr") {
		w = nil // the operation trace on the terminal shows them already
	}
	cfg.Log = w
	return closeLog, nil
}

// serveForeground mounts and serves until unmounted; SIGINT, SIGTERM and SIGHUP unmount.
func serveForeground(mountpoint string, cfg unionfs.Config, stderr io.Writer) int {
	closeLog, err := withProblemLog(&cfg, true, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "layerfs: %v\n", err)
		return 1
	}
	defer closeLog()
	sigs := catchSignals()
	warn := func(msg string) { fmt.Fprintf(stderr, "layerfs: warning: %s\n", msg) }
	srv, ev, err := mountWithEvents(mountpoint, cfg, warn)
	if err != nil {
		signal.Stop(sigs)
		fmt.Fprintf(stderr, "layerfs: mount %s: %s\n", mountpoint, errMessage(err))
		return 1
	}
	if ev != nil {
		defer ev.close()
	}
	return serve(srv, cfg, stderr, sigs)
}

// catchSignals starts catching SIGINT, SIGTERM and SIGHUP before the mount is made: one that
// arrives while it is being made then unmounts it as soon as it is live, instead of killing
// the server and leaving the mount dead.
// SIGPIPE is ignored: a log reader that went away makes writes fail (stopOnError), not the
// server die with its mount.
func catchSignals() chan os.Signal {
	signal.Ignore(syscall.SIGPIPE)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	return sigs
}

// serve serves srv until it is unmounted; a signal on sigs unmounts it.
func serve(srv *unionfs.Server, cfg unionfs.Config, stderr io.Writer, sigs chan os.Signal) int {
	// A walk of a large tree makes a node per entry the kernel remembers; collecting sooner
	// keeps the server's memory near what it holds rather than twice that, for a little CPU.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(40)
	}
	// Over /dev/fuse, Go code runs on one CPU while requests come one at a time, and on every
	// CPU while they overlap (unionfs.Server.AdaptProcs), unless -o gomaxprocs= or GOMAXPROCS
	// fixes the number. A request costs a few µs of our code and a wake-up; with a second P
	// the runtime wakes a thread on the other CPU for the reader go-fuse starts and for the
	// work it hands off, and the caller's next request pays for it: request-bound work
	// (creates, unlinks, tar, grep -r) gains from one P, parallel callers lose (README,
	// Performance, the shared harness run). The io_uring queues each hold a CPU of their own
	// and keep every P.
	switch {
	case cfg.Procs > 0:
		runtime.GOMAXPROCS(cfg.Procs)
	case os.Getenv("GOMAXPROCS") == "" && !srv.OverIOUring():
		srv.AdaptProcs(runtime.NumCPU()) // starts on one
	}
	if cfg.Debug && cfg.DebugLog != nil {
		fmt.Fprintf(cfg.DebugLog, "layerfs: Go processors: %d\n", runtime.GOMAXPROCS(0))
	}
	prune := cfg.IdlePrune
	switch {
	case prune == 0:
		prune = unionfs.DefaultIdlePrune
	case prune < 0:
		prune = 0
	}
	srv.ReturnMemoryWhenIdle(idleMemory, prune)
	// LAYERFS_CPUPROFILE=FILE writes a CPU profile of the server's life (go tool pprof).
	if p := os.Getenv("LAYERFS_CPUPROFILE"); p != "" {
		if f, err := os.Create(p); err == nil {
			if pprof.StartCPUProfile(f) == nil {
				defer func() {
					pprof.StopCPUProfile()
					f.Close()
				}()
			}
		}
	}
	go func() {
		for range sigs {
			unmount(srv, stderr)
		}
	}()
	srv.Wait()
	signal.Stop(sigs)
	// LAYERFS_MEMPROFILE=FILE writes what the server holds when it is unmounted (go tool
	// pprof -sample_index=inuse_space).
	if p := os.Getenv("LAYERFS_MEMPROFILE"); p != "" {
		if f, err := os.Create(p); err == nil {
			runtime.GC()
			pprof.WriteHeapProfile(f)
			f.Close()
		}
	}
	return 0
}

// unmount takes the mount away; when it is busy, it is detached so that the server can still
// exit, as umount -l would.
func unmount(srv *unionfs.Server, stderr io.Writer) {
	err := srv.Unmount()
	if err == nil {
		return
	}
	if derr := unix.Unmount(srv.Mountpoint(), unix.MNT_DETACH); derr == nil {
		return
	}
	if out, ferr := exec.Command("fusermount3", "-u", "-z", srv.Mountpoint()).CombinedOutput(); ferr != nil {
		fmt.Fprintf(stderr, "layerfs: unmount %s: %v; %s\n", srv.Mountpoint(), err, strings.TrimSpace(string(out)))
	}
}

// serveBackground starts a copy of this program as the server, detached from the terminal,
// and returns 0 once it reports the mount live, or prints its error and returns 1. The server
// closes every inherited stream, so a caller that reads our output (a container engine) sees
// it end when we exit.
func serveBackground(mountpoint string, cfg unionfs.Config, stderr io.Writer) int {
	if fdStr := os.Getenv(daemonEnv); fdStr != "" {
		return runDaemon(fdStr, mountpoint, cfg)
	}
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintf(stderr, "layerfs: cannot find own executable to start the server: %v\n", err)
		return 1
	}
	r, w, err := os.Pipe()
	if err != nil {
		fmt.Fprintf(stderr, "layerfs: %v\n", err)
		return 1
	}
	devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		fmt.Fprintf(stderr, "layerfs: %v\n", err)
		return 1
	}
	defer devnull.Close()
	cmd := exec.Command(exe, os.Args[1:]...)
	cmd.Env = append(os.Environ(), daemonEnv+"=3")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = devnull, devnull, devnull
	if cfg.Debug || traceLog != nil {
		// The trace was asked for: it goes where our stderr goes.
		cmd.Stderr = stderrFile(stderr, devnull)
	}
	cmd.ExtraFiles = []*os.File{w}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(stderr, "layerfs: start server: %v\n", err)
		return 1
	}
	w.Close()
	// The server reports warnings ("warning: …" lines), then "ok" or the error.
	rd := bufio.NewReader(r)
	var msg string
	for {
		line, _ := rd.ReadString('\n')
		msg = strings.TrimSpace(line)
		if !strings.HasPrefix(msg, "warning: ") {
			break
		}
		fmt.Fprintf(stderr, "layerfs: %s\n", msg)
	}
	r.Close()
	if msg == "ok" {
		cmd.Process.Release()
		return 0
	}
	cmd.Wait()
	if msg == "" {
		msg = "the server exited before the mount was live"
	}
	fmt.Fprintf(stderr, "layerfs: %s\n", msg)
	return 1
}

func stderrFile(w io.Writer, fallback *os.File) *os.File {
	if f, ok := w.(*os.File); ok {
		return f
	}
	return fallback
}

// runDaemon is the background server: mount, tell the parent, serve until unmounted.
func runDaemon(fdStr string, mountpoint string, cfg unionfs.Config) int {
	var fd int
	if _, err := fmt.Sscan(fdStr, &fd); err != nil {
		return 1
	}
	report := os.NewFile(uintptr(fd), "ready")
	os.Unsetenv(daemonEnv)
	closeLog, err := withProblemLog(&cfg, false, os.Stderr)
	if err != nil {
		fmt.Fprintln(report, err)
		report.Close()
		return 1
	}
	defer closeLog()
	sigs := catchSignals()
	warn := func(msg string) { fmt.Fprintf(report, "warning: %s\n", strings.ReplaceAll(msg, "\n", " ")) }
	srv, ev, err := mountWithEvents(mountpoint, cfg, warn)
	if err != nil {
		signal.Stop(sigs)
		fmt.Fprintf(report, "mount %s: %s\n", mountpoint, strings.ReplaceAll(errMessage(err), "\n", " "))
		report.Close()
		return 1
	}
	if ev != nil {
		defer ev.close()
	}
	fmt.Fprintln(report, "ok")
	report.Close()
	os.Chdir("/")
	return serve(srv, cfg, os.Stderr, sigs)
}
