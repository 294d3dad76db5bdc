package integration

import (
	"bufio"
	"bytes"
	"debug/elf"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The server as people run it unattended: started by mount(8) and /etc/fstab, guarded against
// a second server on its upper, logging what goes wrong where someone can read it, publishing
// events only where its user alone can reach them.

// helperProgram installs the program under test where mount.fuse3 finds it (mount(8) runs
// helpers with a fixed PATH) under a name of this test's own, so nothing installed is
// touched; it returns the name, for "-t fuse.NAME".
func helperProgram(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("mount.fuse3"); err != nil {
		t.Fatalf("mount.fuse3 (package fuse3) is missing: %v", err)
	}
	name := "layerfs-itest-" + strconv.Itoa(os.Getpid())
	link := filepath.Join("/usr/local/sbin", name)
	must(t, os.MkdirAll(filepath.Dir(link), 0o755))
	os.Remove(link)
	must(t, os.Symlink(bin, link))
	t.Cleanup(func() { os.Remove(link) })
	return name
}

// mountSource returns the source and type of the mount on mnt.
func mountSource(t *testing.T, mnt string) (source, typ string) {
	e, _ := mountAt(mnt)
	return e.Source, e.Type
}

// TestMountHelperAndFstab: "mount -t fuse.layerfs SOURCE MNT -o …" and an fstab line mount
// through mount.fuse3, which runs "layerfs SOURCE MNT -o OPTIONS"; the source shows in
// mountinfo, umount ends the server. subtype= and fsname= set the type and source as libfuse
// filesystems do.
func TestMountHelperAndFstab(t *testing.T) {
	needMounts(t)
	prog := helperProgram(t)
	root := t.TempDir()
	st := stack{Lowers: []string{mkdir(t, root, "l")}, Upper: mkdir(t, root, "u"), Work: mkdir(t, root, "w")}
	builder{t, st.Lowers[0]}.file("a", "from lower\n", 0o644)
	mnt := mkdir(t, root, "m")
	t.Cleanup(func() { unmountFuse(t, mnt) })

	check := func(how, wantSource, wantType string) {
		t.Helper()
		if data, err := os.ReadFile(filepath.Join(mnt, "a")); err != nil || string(data) != "from lower\n" {
			t.Errorf("%s: a: %q %v", how, data, err)
		}
		source, typ := mountSource(t, mnt)
		if source != wantSource || typ != wantType {
			t.Errorf("%s: mount source %q type %q, want %q %q", how, source, typ, wantSource, wantType)
		}
		pids := serverPids(mnt)
		if len(pids) != 1 {
			t.Fatalf("%s: servers of %s: %v, want one", how, mnt, pids)
		}
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Fatalf("%s: umount: %v %s", how, err, out)
		}
		waitGone(t, pids[0])
	}

	out, err := exec.Command("mount", "-t", "fuse."+prog, "mysource", mnt, "-o", st.options()).CombinedOutput()
	if err != nil {
		t.Fatalf("mount -t fuse.%s: %v\n%s", prog, err, out)
	}
	check("mount -t", "mysource", "fuse.layerfs")

	fstab := filepath.Join(root, "fstab")
	line := "layerfs " + mnt + " fuse." + prog + " " + st.options() + ",noauto,subtype=layerfs-fstab 0 0\n"
	must(t, os.WriteFile(fstab, []byte(line), 0o644))
	if out, err := exec.Command("mount", "-T", fstab, mnt).CombinedOutput(); err != nil {
		t.Fatalf("mount -T %s %s: %v\n%s", fstab, mnt, err, out)
	}
	check("fstab", "layerfs", "fuse.layerfs-fstab")

	// The program's own form, with the libfuse options.
	if out, err := exec.Command(bin, "-o", st.options()+",fsname=img,subtype=mytype", mnt).CombinedOutput(); err != nil {
		t.Fatalf("fsname, subtype: %v\n%s", err, out)
	}
	check("fsname, subtype", "img", "fuse.mytype")

	out, err = exec.Command(bin, "-o", st.options()+",subtype=a.b", mnt).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "subtype") {
		t.Errorf("subtype=a.b: %v %s", err, out)
	}
	if typ := mountType(t, mnt); typ != "" {
		t.Errorf("a bad subtype left a %s mount", typ)
	}
}

// TestUpperInUse: a second server on an upper (or work directory) that a live server uses is
// refused with one line naming that server; once it is unmounted the upper mounts again at
// once. The kernel's overlayfs refuses only with index=on, and otherwise mounts with a warning
// in its log (the README says layerfs differs there); both sides are checked.
func TestUpperInUse(t *testing.T) {
	needMounts(t)
	root := t.TempDir()
	st := stack{Lowers: []string{mkdir(t, root, "l")}, Upper: mkdir(t, root, "u"), Work: mkdir(t, root, "w")}
	builder{t, st.Lowers[0]}.file("a", "a\n", 0o644)
	m1, m2 := mkdir(t, root, "m1"), mkdir(t, root, "m2")
	mountLayerfs(t, st, m1)
	must(t, os.WriteFile(filepath.Join(m1, "new"), []byte("1"), 0o644))
	pid := serverPid(t, m1)

	for _, other := range []stack{
		st, // the same upper and work directory
		{Lowers: st.Lowers, Upper: st.Upper, Work: mkdir(t, root, "w2")}, // the same upper
	} {
		out, err := exec.Command(bin, "-o", other.options(), m2).CombinedOutput()
		msg := strings.TrimSpace(string(out))
		if err == nil {
			unmountFuse(t, m2)
			t.Fatalf("second server on upper %s mounted", other.Upper)
		}
		if strings.Count(msg, "\n") != 0 || !strings.Contains(msg, "in use") || !strings.Contains(msg, strconv.Itoa(pid)) || !strings.Contains(msg, m1) {
			t.Errorf("second server: %q, want one line naming process %d and %s", msg, pid, m1)
		}
		if typ := mountType(t, m2); typ != "" {
			t.Errorf("refused mount left a %s mount", typ)
		}
	}
	// The first mount is untouched: its work directory was not cleaned under it.
	if data, err := os.ReadFile(filepath.Join(m1, "new")); err != nil || string(data) != "1" {
		t.Errorf("first mount after the refusal: %q %v", data, err)
	}
	appendFile(t, filepath.Join(m1, "a"), "+")
	unmountFuse(t, m1)
	mountLayerfs(t, st, m2)
	if data, err := os.ReadFile(filepath.Join(m2, "a")); err != nil || string(data) != "a\n+" {
		t.Errorf("remount after unmount: %q %v", data, err)
	}
	unmountFuse(t, m2)

	// The kernel, for the record: with index=off, its default, it mounts a used upper again
	// (and warns in its log); with index=on it refuses.
	kst := stack{Lowers: st.Lowers, Upper: mkdir(t, root, "ku"), Work: mkdir(t, root, "kw")}
	k1, k2 := mkdir(t, root, "k1"), mkdir(t, root, "k2")
	mountKernel(t, kst, k1, "index=off")
	mountKernel(t, kst, k2, "index=off")
	if data, err := os.ReadFile(filepath.Join(k2, "a")); err != nil || string(data) != "a\n" {
		t.Errorf("the kernel's second mount of a used upper: %q %v", data, err)
	}
	ist := stack{Lowers: st.Lowers, Upper: mkdir(t, root, "iu"), Work: mkdir(t, root, "iw")}
	i1, i2 := mkdir(t, root, "i1"), mkdir(t, root, "i2")
	mountKernel(t, ist, i1, "index=on")
	if err := unix.Mount("overlay", i2, "overlay", 0, ist.options()+",index=on"); err == nil {
		unix.Unmount(i2, unix.MNT_DETACH)
		t.Error("the kernel mounted a used upper twice with index=on")
	}
}

// syslogListener receives what is sent to /dev/log for the rest of the test: it listens there
// itself where nothing does, or over the system's socket by a bind mount, undone at the end.
func syslogListener(t *testing.T) <-chan string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "log")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	must(t, err)
	t.Cleanup(func() { conn.Close() })
	const devLog = "/dev/log"
	if _, err := os.Lstat(devLog); errors.Is(err, os.ErrNotExist) {
		must(t, os.Symlink(sock, devLog))
		t.Cleanup(func() { os.Remove(devLog) })
	} else {
		must(t, unix.Mount(sock, devLog, "", unix.MS_BIND, ""))
		t.Cleanup(func() { unix.Unmount(devLog, unix.MNT_DETACH) })
	}
	msgs := make(chan string, 100)
	go func() {
		buf := make([]byte, 64<<10)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				close(msgs)
				return
			}
			msgs <- string(buf[:n])
		}
	}()
	return msgs
}

// waitMessage waits up to 10 s for a message on msgs matching re.
func waitMessage(t *testing.T, msgs <-chan string, re *regexp.Regexp, what string) string {
	t.Helper()
	deadline := time.After(10 * time.Second)
	var seen []string
	for {
		select {
		case m, ok := <-msgs:
			if !ok {
				t.Fatalf("%s: log closed; seen %q", what, seen)
			}
			if re.MatchString(m) {
				return m
			}
			seen = append(seen, m)
		case <-deadline:
			t.Fatalf("%s: no message matching %s in 10 s; seen %q", what, re, seen)
		}
	}
}

// TestProblemLog: a server in the background logs what a person must act on — here a copy-up
// that fails because the work directory was removed under the mount — to syslog by default,
// to a file with -o log=FILE, and to watchers as "error" events; the operation itself fails
// with ENOENT as before.
func TestProblemLog(t *testing.T) {
	needMounts(t)
	msgs := syslogListener(t)
	root := t.TempDir()
	for _, dest := range []string{"syslog", "file"} {
		t.Run(dest, func(t *testing.T) {
			dir := mkdir(t, root, dest)
			st := stack{Lowers: []string{mkdir(t, dir, "l")}, Upper: mkdir(t, dir, "u"), Work: mkdir(t, dir, "w")}
			builder{t, st.Lowers[0]}.file("a", "a\n", 0o644)
			mnt := mkdir(t, dir, "m")
			logFile := filepath.Join(dir, "problems.log")
			var extra []string
			if dest == "file" {
				extra = []string{"-o", "log=" + logFile}
			}
			mountLayerfs(t, st, mnt, extra...)
			pid := serverPid(t, mnt)

			_, stdout := startWatch(t, mnt)

			must(t, os.RemoveAll(filepath.Join(st.Work, "work")))
			f, err := os.OpenFile(filepath.Join(mnt, "a"), os.O_WRONLY|os.O_APPEND, 0)
			if err == nil {
				f.Close()
				t.Fatal("opening a lower file for writing succeeded without a work directory")
			}
			if !errors.Is(err, syscall.ENOENT) {
				t.Errorf("open for writing: %v, want ENOENT", err)
			}

			copyUp := regexp.MustCompile(`copy-up of /a from layer 1 \(` + regexp.QuoteMeta(st.Lowers[0]) + `\) failed: .*no such file`)
			workGone := regexp.MustCompile(`work directory ` + regexp.QuoteMeta(st.Work) + `/work was removed while mounted`)
			if dest == "syslog" {
				tag := regexp.MustCompile(`^<27>\w{3} [ \d]\d \d\d:\d\d:\d\d layerfs\[` + strconv.Itoa(pid) + `\]: `)
				m := waitMessage(t, msgs, copyUp, "syslog")
				if !tag.MatchString(m) {
					t.Errorf("syslog message %q lacks the daemon.err priority or the layerfs[%d] tag", m, pid)
				}
				waitMessage(t, msgs, workGone, "syslog")
			} else {
				deadline := time.Now().Add(10 * time.Second)
				var data []byte
				for time.Now().Before(deadline) {
					data, _ = os.ReadFile(logFile)
					if copyUp.Match(data) && workGone.Match(data) {
						break
					}
					time.Sleep(20 * time.Millisecond)
				}
				if !copyUp.Match(data) || !workGone.Match(data) || !bytes.Contains(data, []byte("layerfs["+strconv.Itoa(pid)+"]: ")) {
					t.Errorf("log file:\n%s", data)
				}
			}

			// The watcher saw them as events.
			found := make(chan bool, 1)
			go func() {
				sc := bufio.NewScanner(stdout)
				for sc.Scan() {
					var ev struct{ Kind, Path, Detail string }
					if json.Unmarshal(sc.Bytes(), &ev) == nil && ev.Kind == "error" && ev.Path == "/a" && copyUp.MatchString(ev.Detail) {
						found <- true
						return
					}
				}
				found <- false
			}()
			select {
			case ok := <-found:
				if !ok {
					t.Error("watch --json ended without an error event for the failed copy-up")
				}
			case <-time.After(10 * time.Second):
				t.Error("watch --json showed no error event for the failed copy-up in 10 s")
			}
		})
	}
}

// TestEventSocketPrivate: without XDG_RUNTIME_DIR an unprivileged server publishes its events
// in a directory of its own, made mode 0700 in $TMPDIR; one that another user made first is
// not used, and the mount says so on stderr (and works).
func TestEventSocketPrivate(t *testing.T) {
	needMounts(t)
	u, root, ubin := userWorkspace(t)
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	st := stack{Lowers: []string{root + "/l"}, Upper: root + "/u", Work: root + "/w"}
	mnt := root + "/m"
	for _, d := range []string{st.Lowers[0], st.Upper, st.Work, mnt} {
		mkdir(t, d, "")
		must(t, os.Lchown(d, uid, gid))
	}
	t.Cleanup(func() {
		asUser(t, "fusermount3 -u "+mnt)
		unmountFuse(t, mnt)
	})
	tmp := mkdir(t, root, "tmp")
	must(t, os.Chmod(tmp, 0o1777))
	dir := filepath.Join(tmp, "layerfs-"+u.Uid)

	// Another user's directory in its place: refused, said, mounted without events.
	must(t, os.Mkdir(dir, 0o777))
	must(t, os.Chmod(dir, 0o777))
	env := "env -u XDG_RUNTIME_DIR TMPDIR=" + tmp + " "
	out, err := asUser(t, env+ubin+" -o "+st.options()+" "+mnt)
	if err != nil {
		t.Fatalf("mount as %s: %v\n%s", u.Username, err, out)
	}
	if !strings.Contains(out, "warning: events unavailable") || !strings.Contains(out, "belongs to uid 0") {
		t.Errorf("mount beside another user's event directory said %q", out)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("server put %d entries into another user's directory", len(ents))
	}
	if out, err := asUser(t, "fusermount3 -u "+mnt); err != nil {
		t.Fatalf("fusermount3 -u: %v %s", err, out)
	}
	must(t, os.Remove(dir))

	// Its own: made private, and layerfs watch finds the server there.
	out, err = asUser(t, env+ubin+" -o "+st.options()+" "+mnt)
	if err != nil || strings.Contains(out, "warning") {
		t.Fatalf("mount as %s: %v\n%s", u.Username, err, out)
	}
	var fst unix.Stat_t
	must(t, unix.Lstat(dir, &fst))
	if int(fst.Uid) != uid || fst.Mode&0o7777 != 0o700 || fst.Mode&unix.S_IFMT != unix.S_IFDIR {
		t.Errorf("event directory %s: uid %d mode %o, want %d and a 0700 directory", dir, fst.Uid, fst.Mode, uid)
	}
	watch := exec.Command("su", rootlessUser, "-s", "/bin/sh", "-c", "exec "+env+ubin+" watch "+mnt)
	var wout syncBuffer
	watch.Stdout, watch.Stderr = &wout, &wout
	must(t, watch.Start())
	waitForText(t, &wout, "watching", "watch as the user")
	if out, err := asUser(t, "fusermount3 -u "+mnt); err != nil {
		t.Fatalf("fusermount3 -u: %v %s", err, out)
	}
	done := make(chan error, 1)
	go func() { done <- watch.Wait() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		watch.Process.Kill()
		t.Error("watch still running 10 s after the unmount")
	}
}

// syncBuffer is a buffer a running command writes while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// waitForText waits up to 10 s for a buffer written by a running command to contain s.
func waitForText(t *testing.T, b *syncBuffer, s, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(b.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: no %q in 10 s: %q", what, s, b.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestDemoWatchable: layerfs watch in a second terminal follows layerfs demo --step.
func TestDemoWatchable(t *testing.T) {
	needMounts(t)
	demo := exec.Command(bin, "demo", "--step")
	demo.Env = append(os.Environ(), "TMPDIR="+t.TempDir())
	stdin, err := demo.StdinPipe()
	must(t, err)
	stdout, err := demo.StdoutPipe()
	must(t, err)
	must(t, demo.Start())
	t.Cleanup(func() {
		stdin.Close()
		demo.Process.Kill()
		demo.Wait()
	})
	rd := bufio.NewReader(stdout)
	re := regexp.MustCompile(`layerfs watch (\S+)`)
	var mnt string
	for mnt == "" {
		line, err := rd.ReadString('\n')
		if err != nil {
			t.Fatalf("demo ended before naming its mount: %v", err)
		}
		if m := re.FindStringSubmatch(line); m != nil {
			mnt = m[1]
		}
	}
	watch := exec.Command(bin, "watch", mnt)
	var wout syncBuffer
	watch.Stdout, watch.Stderr = &wout, &wout
	must(t, watch.Start())
	t.Cleanup(func() { watch.Process.Kill(); watch.Wait() })
	waitForText(t, &wout, "watching", "watch beside the demo")
	go io.Copy(io.Discard, rd)
	for i := 0; i < 20; i++ {
		stdin.Write([]byte("\n"))
	}
	stdin.Close()
	if err := demo.Wait(); err != nil {
		t.Fatalf("demo: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- watch.Wait() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("watch still running 10 s after the demo ended")
	}
	for _, want := range []string{"whiteout created for /f2", "copy-up of /f1 from layer 1"} {
		if !strings.Contains(wout.String(), want) {
			t.Errorf("watch beside the demo lacks %q:\n%s", want, wout.String())
		}
	}
}

// TestStaticBinary: the program as make build (and this suite) builds it is one static
// executable, and says which source it was built from.
func TestStaticBinary(t *testing.T) {
	if os.Getenv("LAYERFS_BIN") != "" {
		skipTest(t, "LAYERFS_BIN names a program the suite did not build (CI builds it)")
	}
	f, err := elf.Open(bin)
	must(t, err)
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("%s has a %v program header: dynamically linked", bin, p.Type)
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("%s needs %v", bin, libs)
	}
	out, err := exec.Command(bin, "--version").CombinedOutput()
	if err != nil {
		t.Fatalf("--version: %v %s", err, out)
	}
	if builtRev == "" {
		t.Fatal("no revision recorded when the suite built the program (the suite runs in a git checkout)")
	}
	if !strings.Contains(string(out), builtRev[:12]) {
		t.Errorf("--version %q does not name the revision %s it was built from", out, builtRev[:12])
	}
}

// TestDemoInterrupted: Ctrl-C at a --step prompt ends the demo with its mount and folder
// gone, as does a reader that goes away (layerfs demo | head).
func TestDemoInterrupted(t *testing.T) {
	needMounts(t)
	tmp := t.TempDir()
	demo := exec.Command(bin, "demo", "--step")
	demo.Env = append(os.Environ(), "TMPDIR="+tmp)
	stdin, err := demo.StdinPipe()
	must(t, err)
	t.Cleanup(func() { stdin.Close() })
	stdout, err := demo.StdoutPipe()
	must(t, err)
	must(t, demo.Start())
	rd := bufio.NewReader(stdout)
	var mnt string
	for mnt == "" {
		line, err := rd.ReadString('\n')
		if err != nil {
			demo.Process.Kill()
			demo.Wait()
			t.Fatalf("demo ended before naming its mount: %v", err)
		}
		if m := regexp.MustCompile(`layerfs watch (\S+)`).FindStringSubmatch(line); m != nil {
			mnt = m[1]
		}
	}
	t.Cleanup(func() { unmountFuse(t, mnt) })
	must(t, demo.Process.Signal(syscall.SIGINT))
	go io.Copy(io.Discard, rd)
	if err := demo.Wait(); err == nil {
		t.Error("interrupted demo exited 0")
	}
	if typ := mountType(t, mnt); typ != "" {
		t.Errorf("interrupted demo left a %s mount on %s", typ, mnt)
	}
	if ents, _ := os.ReadDir(tmp); len(ents) != 0 {
		t.Errorf("interrupted demo left %d entries in TMPDIR", len(ents))
	}

	// A reader that leaves after three lines.
	cmd := exec.Command("sh", "-c", strconv.Quote(bin)+" demo | head -3")
	cmd.Env = demo.Env
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("layerfs demo | head -3: %v %s", err, out)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		ents, _ := os.ReadDir(tmp)
		if len(ents) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("layerfs demo | head left %s in TMPDIR", ents[0].Name())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestRemount: "mount -o remount,ro" and back to rw, as mount(8) runs them through the helper
// (layerfs SOURCE MNT -o ro,relatime,remount,user_id=0,…): the mount turns read-only (a write
// fails with EROFS, a read works) and writable again, keeps nosuid and its one server. An
// access-time option that would change, and a path that is no FUSE mount, are refused with a
// message naming the problem, and nothing changes.
func TestRemount(t *testing.T) {
	needMounts(t)
	prog := helperProgram(t)
	root := t.TempDir()
	st := newStack(t, root)
	builder{t, st.Lowers[0]}.file("a", "from lower\n", 0o644)
	mnt := mkdir(t, root, "m")
	t.Cleanup(func() { unmountFuse(t, mnt) })
	if out, err := exec.Command("mount", "-t", "fuse."+prog, "src", mnt, "-o", st.options()+",nosuid").CombinedOutput(); err != nil {
		t.Fatalf("mount -t fuse.%s: %v\n%s", prog, err, out)
	}
	pids := serverPids(mnt)
	flags := func() string {
		e, _ := mountAt(mnt)
		return e.Options
	}
	write := func() string {
		return errName(os.WriteFile(filepath.Join(mnt, "new"), []byte("x"), 0o644))
	}
	for _, step := range []struct{ opt, wantWrite string }{{"ro", "EROFS"}, {"rw", "ok"}} {
		if out, err := exec.Command("mount", "-t", "fuse."+prog, "-o", "remount,"+step.opt, mnt).CombinedOutput(); err != nil {
			t.Fatalf("mount -o remount,%s: %v\n%s", step.opt, err, out)
		}
		f := "," + flags() + ","
		if !strings.HasPrefix(f, ","+step.opt+",") || !strings.Contains(f, ",nosuid,") {
			t.Errorf("after remount,%s the mount's flags are %s, want %s and nosuid", step.opt, f, step.opt)
		}
		if got := write(); got != step.wantWrite {
			t.Errorf("after remount,%s a write: %s, want %s", step.opt, got, step.wantWrite)
		}
		if data, err := os.ReadFile(filepath.Join(mnt, "a")); err != nil || string(data) != "from lower\n" {
			t.Errorf("after remount,%s a read: %q %v", step.opt, data, err)
		}
	}
	if got := serverPids(mnt); len(got) != 1 || len(pids) != 1 || got[0] != pids[0] {
		t.Errorf("servers %v after the remounts, %v before: want the same one", got, pids)
	}
	before := flags()
	out, err := exec.Command(bin, "-o", "remount,noatime", mnt).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "access-time") {
		t.Errorf("remount,noatime: %v %s, want a refusal naming the access-time options", err, out)
	}
	if after := flags(); after != before {
		t.Errorf("a refused remount changed the flags from %s to %s", before, after)
	}
	out, err = exec.Command(bin, "-o", "remount,ro", root).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "not a fuse mount") {
		t.Errorf("remount of %s, no mount: %v %s", root, err, out)
	}
	// A user who is not root is told so and changes nothing (the mount stays writable).
	_, _, ubin := userWorkspace(t)
	uout, err := asUser(t, ubin+" -o remount,ro "+mnt)
	if err == nil || !strings.Contains(uout, "needs root") {
		t.Errorf("remount,ro by %s: %v %s, want a refusal saying it needs root", rootlessUser, err, uout)
	}
	if after := flags(); after != before {
		t.Errorf("a remount refused to %s changed the flags from %s to %s", rootlessUser, before, after)
	}
	if got := write(); got != "ok" {
		t.Errorf("after a refused remount a write: %s", got)
	}
}
