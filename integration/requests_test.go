package integration

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// mountLayerfsDebug mounts st on mnt with --debug, the trace going to a file whose path it
// returns; the mount goes when the test ends.
func mountLayerfsDebug(t *testing.T, st stack, mnt string, extra ...string) string {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), "debug.log")
	log, err := os.Create(logPath)
	must(t, err)
	defer log.Close()
	cmd := exec.Command(bin, append(append([]string{"--debug", "-o", st.options()}, extra...), mnt)...)
	// A file, not a pipe: the server keeps its stderr after the command returns.
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Run(); err != nil {
		data, _ := os.ReadFile(logPath)
		t.Fatalf("%s --debug: %v\n%s", bin, err, data)
	}
	t.Cleanup(func() { unmountFuse(t, mnt) })
	return logPath
}

// requestsBetween counts the requests the trace at logPath shows after a LOOKUP of name from
// and before a LOOKUP of name to, by opcode.
func requestsBetween(t *testing.T, logPath, from, to string) map[string]int {
	t.Helper()
	data, err := os.ReadFile(logPath)
	must(t, err)
	rx := regexp.MustCompile(`rx \d+: (\w+) n\d+ (.*)`)
	counts := map[string]int{}
	in := false
	for _, line := range strings.Split(string(data), "\n") {
		m := rx.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		if m[1] == "LOOKUP" && strings.Contains(m[2], `"`+from+`"`) {
			in = true
			continue
		}
		if m[1] == "LOOKUP" && strings.Contains(m[2], `"`+to+`"`) {
			return counts
		}
		if in {
			key := m[1]
			if key == "GETXATTR" {
				if i := strings.LastIndex(m[2], `"`); i > 0 {
					key += " " + m[2][strings.Index(m[2], `"`)+1:i]
				}
			}
			counts[key]++
		}
	}
	t.Fatalf("no LOOKUP of %q after one of %q in the trace", to, from)
	return nil
}

// TestWritesAskNoCapability: with FUSE_HANDLE_KILLPRIV_V2 the kernel asks for a file's
// capability at most once, not at every write(2) (a GETXATTR round trip each before).
func TestWritesAskNoCapability(t *testing.T) {
	needMounts(t)
	for _, side := range []string{testedName(), "nopassthrough"} {
		t.Run(side, func(t *testing.T) {
			root := t.TempDir()
			st := newStack(t, root)
			mnt := mkdir(t, root, "mnt")
			var extra []string
			if side == "nopassthrough" {
				extra = []string{"-o", "nopassthrough"}
			}
			logPath := mountLayerfsDebug(t, st, mnt, extra...)
			os.Stat(filepath.Join(mnt, "mark-start"))
			f, err := os.Create(filepath.Join(mnt, "f"))
			must(t, err)
			for range 20 {
				_, err := f.WriteString("0123456789")
				must(t, err)
			}
			must(t, f.Close())
			os.Stat(filepath.Join(mnt, "mark-end"))
			counts := requestsBetween(t, logPath, "mark-start", "mark-end")
			if n := counts["GETXATTR security.capability"]; n > 1 {
				t.Errorf("20 writes asked for the capability %d times, want at most once (requests: %v)", n, counts)
			}
			t.Logf("create, 20 writes, close: %v", counts)
			if os.Getenv("LAYERFS_SHOW_TRACE") != "" {
				data, _ := os.ReadFile(logPath)
				t.Logf("%s", data)
			}
		})
	}
}

// requestBudget is what each common operation costs in round trips in steady state (names
// and attributes already cached, as in a build that works in one directory), as the README's
// table says: TestRequestCounts fails when one creeps up.
var requestBudget = []struct {
	what string
	do   func(t *testing.T, mnt string, i int)
	max  map[string]int
}{
	{"create, write 4 KiB, close", func(t *testing.T, mnt string, i int) {
		f, err := os.OpenFile(filepath.Join(mnt, "d", "new"+strconv.Itoa(i)), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
		must(t, err)
		_, err = f.Write(make([]byte, 4096))
		must(t, err)
		must(t, f.Close())
	}, map[string]int{"GETATTR": 1, "LOOKUP": 1, "CREATE": 1, "GETXATTR security.capability": 1, "RELEASE": 1}},
	{"set the times of the file written (tar x)", func(t *testing.T, mnt string, i int) {
		must(t, os.Chtimes(filepath.Join(mnt, "d", "new"+strconv.Itoa(i)), time.Now(), old))
		// The first one walks through the directory whose attributes the creates before
		// left stale: one GETATTR of it, for the permission check.
	}, map[string]int{"SETATTR": 1, "GETATTR": 1}},
	{"stat of the file timed (the SETATTR's reply is cached)", func(t *testing.T, mnt string, i int) {
		_, err := os.Lstat(filepath.Join(mnt, "d", "new"+strconv.Itoa(i)))
		must(t, err)
	}, map[string]int{}},
	{"open, fstat, read, close the file written (tar c after tar x)", func(t *testing.T, mnt string, i int) {
		// Written by passthrough, so not in the page cache: a READ, which moves the atime
		// (the first read after a change does, under relatime) and leaves it stale.
		f, err := os.Open(filepath.Join(mnt, "d", "new"+strconv.Itoa(i)))
		must(t, err)
		_, err = io.ReadAll(f)
		must(t, err)
		_, err = f.Stat()
		must(t, err)
		must(t, f.Close())
	}, map[string]int{"OPEN": 1, "READ": 1, "GETATTR": 1, "RELEASE": 1}},
	{"stat of a known name", func(t *testing.T, mnt string, i int) {
		_, err := os.Lstat(filepath.Join(mnt, "d", "stat"+strconv.Itoa(i)))
		must(t, err)
	}, map[string]int{}},
	{"statx with the birth time of a known name (stat(1)), first time", func(t *testing.T, mnt string, i int) {
		// The kernel holds no birth time from LOOKUP or READDIRPLUS: one STATX, whose answer
		// it keeps with the attributes.
		statBirth(t, filepath.Join(mnt, "d", "stat"+strconv.Itoa(i)))
	}, map[string]int{"STATX": 1}},
	{"the same again", func(t *testing.T, mnt string, i int) {
		statBirth(t, filepath.Join(mnt, "d", "stat"+strconv.Itoa(i)))
	}, map[string]int{}},
	{"stat of a name read since", func(t *testing.T, mnt string, i int) {
		_, err := os.Lstat(filepath.Join(mnt, "d", "lower"+strconv.Itoa(n+i)))
		must(t, err)
	}, map[string]int{"GETATTR": 1}},
	{"open, fstat, read, close a file read once before (page cache)", func(t *testing.T, mnt string, i int) {
		// The earlier READ left the access time stale: fstat asks once.
		_, err := os.ReadFile(filepath.Join(mnt, "d", "lower"+strconv.Itoa(i)))
		must(t, err)
	}, map[string]int{"OPEN": 1, "GETATTR": 1, "RELEASE": 1}},
	{"the same again", func(t *testing.T, mnt string, i int) {
		_, err := os.ReadFile(filepath.Join(mnt, "d", "lower"+strconv.Itoa(i)))
		must(t, err)
	}, map[string]int{"OPEN": 1, "RELEASE": 1}},
	{"unlink a lower file", func(t *testing.T, mnt string, i int) {
		must(t, os.Remove(filepath.Join(mnt, "d", "lower"+strconv.Itoa(i))))
	}, map[string]int{"GETATTR": 1, "UNLINK": 1, "FORGET": 1}},
	{"mkdir", func(t *testing.T, mnt string, i int) {
		must(t, os.Mkdir(filepath.Join(mnt, "d", "dir"+strconv.Itoa(i)), 0o755))
	}, map[string]int{"GETATTR": 1, "LOOKUP": 1, "MKDIR": 1}},
	{"chmod", func(t *testing.T, mnt string, i int) {
		must(t, os.Chmod(filepath.Join(mnt, "d", "new"+strconv.Itoa(i)), 0o600))
	}, map[string]int{"SETATTR": 1}},
	{"chown (tar x as root)", func(t *testing.T, mnt string, i int) {
		// Before any change of owner the kernel asks whether the file has a capability to
		// drop (notify_change's ATTR_KILL_PRIV; it caches no answer): a GETXATTR every time.
		must(t, os.Chown(filepath.Join(mnt, "d", "new"+strconv.Itoa(i)), 0, 0))
	}, map[string]int{"GETXATTR security.capability": 1, "SETATTR": 1}},
}

// statBirth asks for p's attributes and birth time, as stat(1) does.
func statBirth(t *testing.T, p string) {
	t.Helper()
	var x unix.Statx_t
	must(t, unix.Statx(unix.AT_FDCWD, p, unix.AT_SYMLINK_NOFOLLOW, unix.STATX_BASIC_STATS|unix.STATX_BTIME, &x))
	if x.Mask&unix.STATX_BTIME == 0 {
		t.Errorf("%s: no birth time", p)
	}
}

// n is how many times TestRequestCounts repeats each operation.
const n = 5

// TestRequestCounts counts, with --debug, the requests each common operation makes in steady
// state and holds them to requestBudget (FORGET has no reply, so costs no round trip; one
// request more than the budget over the n repetitions is allowed for a name's first use).
func TestRequestCounts(t *testing.T) {
	needMounts(t)
	root := t.TempDir()
	st := newStack(t, root)
	b := builder{t, st.Lowers[0]}
	for i := range 3 * n {
		b.file("d/lower"+strconv.Itoa(i), "lower data", 0o644)
		b.file("d/stat"+strconv.Itoa(i), "stat only", 0o644)
	}
	b.settle()
	mnt := mkdir(t, root, "mnt")
	logPath := mountLayerfsDebug(t, st, mnt)
	// Warm up: the directory is copied up, every name looked up and read once, one file
	// created (the first create and open of a mount also learn what the kernel may skip).
	for i := range 3 * n {
		_, err := os.ReadFile(filepath.Join(mnt, "d", "lower"+strconv.Itoa(i)))
		must(t, err)
		_, err = os.Lstat(filepath.Join(mnt, "d", "stat"+strconv.Itoa(i)))
		must(t, err)
	}
	requestBudget[0].do(t, mnt, 1000)
	for k, op := range requestBudget {
		from, to := "mark-"+strconv.Itoa(2*k), "mark-"+strconv.Itoa(2*k+1)
		os.Stat(filepath.Join(mnt, from))
		for i := range n {
			op.do(t, mnt, i)
		}
		os.Stat(filepath.Join(mnt, to))
		got := requestsBetween(t, logPath, from, to)
		for opcode, c := range got {
			if c > op.max[opcode]*n+1 {
				t.Errorf("%s: %d %s in %d operations, budget %d each (all: %v)", op.what, c, opcode, n, op.max[opcode], got)
			}
		}
		t.Logf("%s: %v per %d", op.what, got, n)
	}
}

// uringEnabled reports whether this kernel offers FUSE over io_uring now.
func uringEnabled() bool {
	data, err := os.ReadFile("/sys/module/fuse/parameters/enable_uring")
	return err == nil && strings.TrimSpace(string(data)) == "Y"
}

// TestTransport: requests arrive over io_uring with -o io_uring=on (or LAYERFS_IO_URING=on)
// where the kernel offers it, and over /dev/fuse otherwise; --debug says which, and both serve
// the same requests (the integration suite runs once per transport: make test).
func TestTransport(t *testing.T) {
	needMounts(t)
	for _, opt := range []string{"", "on", "off"} {
		t.Run("io_uring="+opt, func(t *testing.T) {
			root := t.TempDir()
			st := newStack(t, root)
			builder{t, st.Lowers[0]}.file("f", "lower data", 0o644)
			mnt := mkdir(t, root, "mnt")
			var extra []string
			if opt != "" {
				extra = []string{"-o", "io_uring=" + opt}
			}
			procs := "1" // over /dev/fuse, unless -o gomaxprocs= says otherwise
			if opt == "off" {
				extra, procs = append(extra, "-o", "gomaxprocs=2"), "2"
			}
			logPath := mountLayerfsDebug(t, st, mnt, extra...)
			want := "transport: /dev/fuse"
			if uringEnabled() && (opt == "on" || opt == "" && os.Getenv("LAYERFS_IO_URING") == "on") {
				want, procs = "transport: io_uring", strconv.Itoa(runtime.NumCPU())
			}
			data, err := os.ReadFile(logPath)
			must(t, err)
			if !strings.Contains(string(data), want) {
				t.Errorf("--debug does not say %q:\n%s", want, firstLines(string(data), 3))
			}
			// Each kind of request once: lookups, reads, a copy-up, writes, a listing.
			os.Stat(filepath.Join(mnt, "mark-start"))
			must(t, os.WriteFile(filepath.Join(mnt, "f"), []byte("upper data"), 0o644))
			got, err := os.ReadFile(filepath.Join(mnt, "f"))
			if err != nil || string(got) != "upper data" {
				t.Errorf("read back %q, %v", got, err)
			}
			ents, err := os.ReadDir(mnt)
			if err != nil || len(ents) != 1 {
				t.Errorf("listing: %v %v", ents, err)
			}
			os.Stat(filepath.Join(mnt, "mark-end"))
			counts := requestsBetween(t, logPath, "mark-start", "mark-end")
			if counts["OPEN"] == 0 {
				t.Errorf("no OPEN between the marks: %v", counts)
			}
			// The server says how many CPUs its Go code runs on once it serves.
			line := "layerfs: Go processors: " + procs + "\n"
			for deadline := time.Now().Add(5 * time.Second); ; {
				data, err := os.ReadFile(logPath)
				must(t, err)
				if strings.Contains(string(data), line) {
					break
				}
				if time.Now().After(deadline) {
					t.Errorf("--debug does not say %q:\n%s", line, grepLines(string(data), "processors"))
					break
				}
				time.Sleep(10 * time.Millisecond) // polls the log for a line, not a mount
			}
		})
	}
}

// grepLines are the lines of s that hold word.
func grepLines(s, word string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, word) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func firstLines(s string, n int) string {
	lines := strings.SplitN(s, "\n", n+1)
	return strings.Join(lines[:min(n, len(lines))], "\n")
}

// TestTransportFallback: where the kernel refuses the io_uring queues (here: payload buffers
// smaller than it requires), the mount goes on over /dev/fuse and --debug says why.
func TestTransportFallback(t *testing.T) {
	needMounts(t)
	if !uringEnabled() {
		skipTest(t, "the kernel does not offer FUSE over io_uring now; make test's io_uring pass switches it on")
	}
	root := t.TempDir()
	st := newStack(t, root)
	builder{t, st.Lowers[0]}.file("f", "lower data", 0o644)
	mnt := mkdir(t, root, "mnt")
	logPath := filepath.Join(root, "debug.log")
	log, err := os.Create(logPath)
	must(t, err)
	cmd := exec.Command(bin, "--debug", "-o", st.options()+",io_uring=on", mnt)
	cmd.Env = append(os.Environ(), "LAYERFS_URING_PAYLOAD=4096")
	cmd.Stdout, cmd.Stderr = log, log
	err = cmd.Run()
	log.Close()
	if err != nil {
		data, _ := os.ReadFile(logPath)
		t.Fatalf("mount: %v\n%s", err, data)
	}
	t.Cleanup(func() { unmountFuse(t, mnt) })
	if got, err := os.ReadFile(filepath.Join(mnt, "f")); err != nil || string(got) != "lower data" {
		t.Errorf("read through the mount: %q %v", got, err)
	}
	must(t, os.WriteFile(filepath.Join(mnt, "g"), []byte("new"), 0o644))
	data, err := os.ReadFile(logPath)
	must(t, err)
	if !strings.Contains(string(data), "transport: /dev/fuse (io_uring failed") {
		t.Errorf("--debug does not say the mount fell back to /dev/fuse:\n%s", firstLines(string(data), 4))
	}
}

// TestAdaptiveProcs: over /dev/fuse the server runs on one Go processor while requests come
// one at a time, on every CPU while several callers make them at once, and on one again when
// they stop; --debug says each change.
func TestAdaptiveProcs(t *testing.T) {
	needMounts(t)
	if runtime.NumCPU() < 2 {
		skipTest(t, "one CPU: there is nothing to adapt")
	}
	root := t.TempDir()
	st := newStack(t, root)
	b := builder{t, st.Lowers[0]}
	for i := range 200 {
		b.file("d/f"+strconv.Itoa(i), "x", 0o644)
	}
	b.settle()
	mnt := mkdir(t, root, "mnt")
	logPath := mountLayerfsDebug(t, st, mnt, "-o", "io_uring=off")
	logSays := func(s string) bool {
		data, err := os.ReadFile(logPath)
		must(t, err)
		return strings.Contains(string(data), s)
	}
	if logSays("(requests overlap)") {
		t.Fatal("every processor on before any load")
	}
	// Four callers at once, each asking for names the kernel does not know (a negative
	// LOOKUP each), until the server says it went up.
	up := fmt.Sprintf("Go processors: %d (requests overlap)", runtime.NumCPU())
	done := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-done:
					return
				default:
					os.Lstat(filepath.Join(mnt, "d", fmt.Sprintf("missing-%d-%d", w, i)))
				}
			}
		}()
	}
	waitLog := func(s string) {
		t.Helper()
		for deadline := time.Now().Add(20 * time.Second); !logSays(s); {
			if time.Now().After(deadline) {
				t.Fatalf("--debug never said %q", s)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitLog(up)
	close(done)
	wg.Wait()
	waitLog("Go processors: 1 (requests one at a time)")
}
