package integration

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestVersionAndHelp(t *testing.T) {
	out, err := exec.Command(bin, "--version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "layerfs version ") {
		t.Errorf("--version: %q %v", out, err)
	}
	out, err = exec.Command(bin, "--help").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Examples:") || !strings.Contains(string(out), "lowerdir=") {
		t.Errorf("--help: %q %v", out, err)
	}
	out, err = exec.Command(bin, "version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "layerfs version ") {
		t.Errorf("layerfs version: %q %v", out, err)
	}
	if help := string(out); strings.Contains(help, "[=true|false]") || strings.Contains(help, "stringArray") {
		t.Errorf("--help shows pflag's type noise:\n%s", help)
	}
	out, err = exec.Command(bin, "demo", "--help").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "usage: layerfs demo") {
		t.Errorf("layerfs demo --help: %q %v", out, err)
	}
}

// TestBadInput: each malformed invocation gives one line naming the problem, a non-zero exit,
// and no mount.
func TestBadInput(t *testing.T) {
	needMounts(t)
	root := t.TempDir()
	for _, d := range []string{"l1", "l2", "u", "w", "mnt", "l1/inner", "u/w"} {
		mkdir(t, root, d)
	}
	// An upper on a read-only mount: a bind mount of a directory, made read-only.
	roUpper := mkdir(t, root, "ro")
	mkdir(t, roUpper, "u")
	mkdir(t, roUpper, "w")
	if err := unix.Mount(roUpper, roUpper, "", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(roUpper, unix.MNT_DETACH) })
	if err := unix.Mount("", roUpper, "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY, ""); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(root, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	r := func(p string) string { return filepath.Join(root, p) }
	mnt := r("mnt")
	var tooMany []string
	for range 501 {
		tooMany = append(tooMany, r("l1"))
	}
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"no lowerdir", []string{"-o", "upperdir=" + r("u") + ",workdir=" + r("w"), mnt}, "no lower layer"},
		{"missing lower", []string{"-o", "lowerdir=" + r("nope"), mnt}, "does not exist"},
		{"lower is a file", []string{"-o", "lowerdir=" + file, mnt}, "not a directory"},
		{"missing upper", []string{"-o", "lowerdir=" + r("l1") + ",upperdir=" + r("nope") + ",workdir=" + r("w"), mnt}, "does not exist"},
		{"upper not writable", []string{"-o", "lowerdir=" + r("l1") + ",upperdir=" + r("ro/u") + ",workdir=" + r("ro/w"), mnt}, "not writable"},
		{"upper without work", []string{"-o", "lowerdir=" + r("l1") + ",upperdir=" + r("u"), mnt}, "needs a workdir"},
		{"missing work", []string{"-o", "lowerdir=" + r("l1") + ",upperdir=" + r("u") + ",workdir=" + r("nope"), mnt}, "does not exist"},
		{"work inside upper", []string{"-o", "lowerdir=" + r("l1") + ",upperdir=" + r("u") + ",workdir=" + r("u/w"), mnt}, "separate"},
		{"work not on upper fs", []string{"-o", "lowerdir=" + r("l1") + ",upperdir=" + r("u") + ",workdir=/dev/shm", mnt}, "same filesystem"},
		{"mountpoint is a layer", []string{"-o", "lowerdir=" + r("l1"), r("l1")}, "mountpoint"},
		{"mountpoint inside a layer", []string{"-o", "lowerdir=" + r("l1"), r("l1/inner")}, "mountpoint"},
		{"layer inside another", []string{"-o", "lowerdir=" + r("l1") + ":" + r("l1/inner"), mnt}, "overlap"},
		{"layer twice", []string{"-o", "lowerdir=" + r("l1") + ":" + r("l1"), mnt}, "twice"},
		{"empty lowerdir", []string{"-o", "lowerdir=", mnt}, "empty value"},
		{"lowerdir twice", []string{"-o", "lowerdir=" + r("l1"), "-o", "lowerdir=" + r("l2"), mnt}, "given twice"},
		{"empty upperdir", []string{"-o", "lowerdir=" + r("l1") + ",upperdir=,workdir=" + r("w"), mnt}, "empty value"},
		{"empty layer in list", []string{"-o", "lowerdir=" + r("l1") + "::" + r("l2"), mnt}, "empty layer"},
		{"no mountpoint", []string{"-o", "lowerdir=" + r("l1")}, "no mountpoint"},
		{"missing mountpoint", []string{"-o", "lowerdir=" + r("l1"), r("nope")}, "does not exist"},
		{"mountpoint is a file", []string{"-o", "lowerdir=" + r("l1"), file}, "not a directory"},
		{"too many lowers", []string{"-o", "lowerdir=" + strings.Join(tooMany, ":"), mnt}, "at most 500"},
		{"unknown flag", []string{"--frobnicate", mnt}, "unknown flag"},
		{"bad id mapping", []string{"-o", "lowerdir=" + r("l1") + ",uidmapping=0:1000", mnt}, "uidmapping"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var stderr bytes.Buffer
			cmd := exec.Command(bin, c.args...)
			cmd.Stderr = &stderr
			err := cmd.Run()
			if err == nil {
				unmountFuse(t, mnt)
				t.Fatalf("exit 0, want an error")
			}
			msg := strings.TrimRight(stderr.String(), "\n")
			if strings.Count(msg, "\n") != 0 || !strings.HasPrefix(msg, "layerfs: ") || !strings.Contains(msg, c.want) {
				t.Errorf("stderr %q: want one line mentioning %q", msg, c.want)
			}
			for _, m := range []string{mnt, r("l1"), r("l1/inner")} {
				if typ := mountType(t, m); typ != "" {
					unmountFuse(t, m)
					t.Errorf("%s is mounted (%s) after a failed invocation", m, typ)
				}
			}
		})
	}
}

// TestLongFlagsRelativePathsAndSloppyOptions: the friendly long flags, relative paths, and the
// option strings container engines write (empty elements, unknown options) all mount.
func TestLongFlagsRelativePathsAndSloppyOptions(t *testing.T) {
	needMounts(t)
	root := t.TempDir()
	for _, d := range []string{"l1", "l2", "u", "w", "m1", "m2"} {
		mkdir(t, root, d)
	}
	builder{t, root + "/l2"}.file("f", "from l2", 0o644)
	builder{t, root + "/l1"}.file("f", "from l1", 0o644)

	cmd := exec.Command(bin, "--lower", "l1", "--lower", "l2", "--upper", "u", "--work", "w", "m1")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("long flags: %v\n%s", err, out)
	}
	t.Cleanup(func() { unmountFuse(t, root+"/m1") })
	if data, err := os.ReadFile(root + "/m1/f"); err != nil || string(data) != "from l1" {
		t.Errorf("m1/f: %q %v, want the top lower's", data, err)
	}

	cmd = exec.Command(bin, "-o", "lowerdir="+root+"/l2,,upperdir="+root+"/u2,frobnicate,", root+"/m2")
	mkdir(t, root, "u2")
	mkdir(t, root, "w2")
	cmd.Args = []string{bin, "-o", "lowerdir=" + root + "/l2,,upperdir=" + root + "/u2,frobnicate,,workdir=" + root + "/w2,", root + "/m2"}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("sloppy options: %v\n%s", err, out)
	}
	t.Cleanup(func() { unmountFuse(t, root+"/m2") })
	if !strings.Contains(string(out), `unknown option "frobnicate"`) {
		t.Errorf("no warning for an unknown option: %q", out)
	}
	if data, err := os.ReadFile(root + "/m2/f"); err != nil || string(data) != "from l2" {
		t.Errorf("m2/f: %q %v", data, err)
	}
}

// TestDaemonExitsOnUmount: the background server exits by itself when the mount is taken away
// with umount, not only with fusermount3.
func TestDaemonExitsOnUmount(t *testing.T) {
	needMounts(t)
	root := t.TempDir()
	lower, mnt := mkdir(t, root, "l"), mkdir(t, root, "m")
	mountLayerfs(t, stack{Lowers: []string{lower}}, mnt)
	pid := serverPid(t, mnt)
	if err := syscall.Unmount(mnt, 0); err != nil {
		t.Fatal(err)
	}
	waitGone(t, pid)
}

// TestForegroundSignal: with -f, SIGTERM unmounts and the program exits 0.
func TestForegroundSignal(t *testing.T) {
	needMounts(t)
	root := t.TempDir()
	lower, mnt := mkdir(t, root, "l"), mkdir(t, root, "m")
	cmd := exec.Command(bin, "-f", "--lower", lower, mnt)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		unmountFuse(t, mnt)
	})
	waitMounted(t, mnt, done)
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("exit after SIGTERM: %v\n%s", err, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("still running 10s after SIGTERM")
	}
	if typ := mountType(t, mnt); typ != "" {
		t.Errorf("still mounted (%s) after SIGTERM", typ)
	}
}

// waitMounted waits until mountinfo lists a FUSE mount on mnt, failing early when the process
// behind done exits first.
func waitMounted(t testing.TB, mnt string, done <-chan error) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.HasPrefix(mountType(t, mnt), "fuse") {
		select {
		case err := <-done:
			t.Fatalf("exited before mounting: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not mounted after 10s", mnt)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func waitGone(t testing.TB, pid int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for processAlive(pid) {
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("server %d still running 10s after unmount", pid)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestEscapedPathsAndStaleMount: layer paths holding ":" and "," work when escaped the
// fuse-overlayfs way; a dead mount left at the mountpoint gives one clear line, no hang.
func TestEscapedPathsAndStaleMount(t *testing.T) {
	needMounts(t)
	root := t.TempDir()
	odd := mkdir(t, root, "a:b,c")
	builder{t, odd}.file("f", "odd", 0o644)
	up, work := mkdir(t, root, "u,1"), mkdir(t, root, "w:1")
	mnt := mkdir(t, root, "mnt")
	esc := func(p string) string { return strings.NewReplacer(`:`, `\:`, `,`, `\,`).Replace(p) }
	out, err := exec.Command(bin, "-o", "lowerdir="+esc(odd)+",upperdir="+esc(up)+",workdir="+esc(work)+killableTransport, mnt).CombinedOutput()
	if err != nil {
		t.Fatalf("escaped paths: %v\n%s", err, out)
	}
	t.Cleanup(func() { unmountFuse(t, mnt) })
	if data, err := os.ReadFile(filepath.Join(mnt, "f")); err != nil || string(data) != "odd" {
		t.Errorf("f: %q %v", data, err)
	}
	must(t, os.WriteFile(filepath.Join(mnt, "g"), []byte("up"), 0o644))
	if _, err := os.Stat(filepath.Join(up, "g")); err != nil {
		t.Errorf("g not in the upper %s: %v", up, err)
	}

	// The same paths unescaped: the error hints at the escape.
	other := mkdir(t, root, "other")
	out, err = exec.Command(bin, "-o", "lowerdir="+strings.ReplaceAll(odd, ":", `\:`), other).CombinedOutput()
	if lines := strings.Split(strings.TrimSpace(string(out)), "\n"); err == nil || !strings.Contains(lines[len(lines)-1], "does not exist") || !strings.Contains(lines[len(lines)-1], `\,`) {
		t.Errorf("unescaped comma: %v, %q: want the last line to hint at \\,", err, out)
	}
	if typ := mountType(t, other); typ != "" {
		unmountFuse(t, other)
	}

	// Kill the server: the mount stays, dead.
	pid := serverPid(t, mnt)
	must(t, syscall.Kill(pid, syscall.SIGKILL))
	waitGone(t, pid)
	var stderr bytes.Buffer
	cmd := exec.Command(bin, "-o", "lowerdir="+esc(odd), mnt)
	cmd.Stderr = &stderr
	done := make(chan error, 1)
	must(t, cmd.Start())
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		msg := strings.TrimSpace(stderr.String())
		if err == nil || strings.Count(msg, "\n") != 0 || !strings.Contains(msg, "mountpoint") || !strings.Contains(msg, "fusermount3 -u "+mnt) {
			t.Errorf("mount over a dead mount: %v, stderr %q, want one line with the fusermount3 -u hint", err, msg)
		}
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		t.Fatal("mount over a dead mount hangs")
	}
}

// TestManyLowers mounts the most lower layers allowed: the topmost copy of a name wins, every
// layer's own names are listed, and a write reaches the upper.
func TestManyLowers(t *testing.T) {
	needMounts(t)
	root := t.TempDir()
	st := stack{Upper: mkdir(t, root, "upper"), Work: mkdir(t, root, "work")}
	for i := range 500 {
		l := mkdir(t, root, "l"+strconv.Itoa(i))
		b := builder{t, l}
		b.file("f", strconv.Itoa(i), 0o644)
		b.file("only"+strconv.Itoa(i), "", 0o644)
		st.Lowers = append(st.Lowers, l)
	}
	mnt := mkdir(t, root, "mnt")
	mountLayerfs(t, st, mnt)
	if data, err := os.ReadFile(filepath.Join(mnt, "f")); err != nil || string(data) != "0" {
		t.Errorf("f: %q %v, want the topmost layer's", data, err)
	}
	ents, err := os.ReadDir(mnt)
	must(t, err)
	if len(ents) != 501 {
		t.Errorf("%d names listed, want 501", len(ents))
	}
	appendFile(t, filepath.Join(mnt, "only499"), "written")
	if data, err := os.ReadFile(filepath.Join(st.Upper, "only499")); err != nil || string(data) != "written" {
		t.Errorf("upper only499: %q %v", data, err)
	}
}

// TestReadahead: a mount by root reads ahead a whole request (1 MiB) instead of FUSE's
// 128 KiB, which cold sequential reads need (BenchmarkSeqReadCold).
func TestReadahead(t *testing.T) {
	needMounts(t)
	root := t.TempDir()
	st := stack{Lowers: []string{mkdir(t, root, "l")}}
	mnt := mkdir(t, root, "m")
	mountLayerfs(t, st, mnt)
	dev := mountDevice(mnt)
	ra, err := os.ReadFile("/sys/class/bdi/" + dev + "/read_ahead_kb")
	if err != nil || strings.TrimSpace(string(ra)) != "1024" {
		t.Errorf("read_ahead_kb of %s (%s): %q %v, want 1024", mnt, dev, ra, err)
	}
}

// TestNoDescriptorPerInode: opening and closing 20k files leaves the server's descriptor count
// where it was; nodes hold no descriptor.
func TestNoDescriptorPerInode(t *testing.T) {
	needMounts(t)
	root := t.TempDir()
	st := stack{Lowers: []string{mkdir(t, root, "l")}, Upper: mkdir(t, root, "u"), Work: mkdir(t, root, "w")}
	for i := range 2000 {
		must(t, os.WriteFile(filepath.Join(st.Lowers[0], strconv.Itoa(i)), []byte("x"), 0o644))
	}
	mnt := mkdir(t, root, "m")
	mountLayerfs(t, st, mnt)
	pid := serverPid(t, mnt)
	before := fdCount(t, pid)
	for round := range 10 {
		for i := range 2000 {
			flag := os.O_RDONLY
			if round == 0 && i%2 == 0 {
				flag = os.O_WRONLY | os.O_APPEND // copies it up
			}
			f, err := os.OpenFile(filepath.Join(mnt, strconv.Itoa(i)), flag, 0)
			must(t, err)
			f.Close()
		}
	}
	if after := fdCount(t, pid); after > before+8 {
		t.Errorf("the server holds %d descriptors after 20000 opens, %d before", after, before)
	}
}

// TestLogReaderGone: a foreground server logging with --debug into a pipe whose reader went
// away (`layerfs -f --debug … | head`) keeps serving: SIGPIPE does not kill it, and it stops
// logging rather than failing.
func TestLogReaderGone(t *testing.T) {
	needMounts(t)
	root := t.TempDir()
	st := newStack(t, root)
	builder{t, st.Lowers[0]}.file("a", "lower a", 0o644)
	mnt := mkdir(t, root, "mnt")
	r, w, err := os.Pipe()
	must(t, err)
	cmd := exec.Command(bin, "-f", "--debug", "-o", st.options(), mnt)
	cmd.Stdout, cmd.Stderr = w, w
	must(t, cmd.Start())
	w.Close()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		unmountFuse(t, mnt)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			t.Errorf("server still running 10 s after unmount")
		}
	})
	waitMounted(t, mnt, done)
	buf := make([]byte, 512)
	r.Read(buf) // a first piece of the log, as head would
	r.Close()
	for i := range 50 { // each request logs a line or two into the dead pipe
		p := filepath.Join(mnt, "f"+strconv.Itoa(i))
		must(t, os.WriteFile(p, []byte("x"), 0o644))
		if _, err := os.ReadFile(filepath.Join(mnt, "a")); err != nil {
			t.Fatalf("read through the mount after the log reader left: %v", err)
		}
	}
	select {
	case err := <-done:
		t.Fatalf("the server exited when its log reader went away: %v", err)
	default:
	}
	if got, err := os.ReadFile(filepath.Join(mnt, "f49")); err != nil || string(got) != "x" {
		t.Errorf("f49: %q %v", got, err)
	}
}
