package integration

import (
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/layerfs/layerfs/unionfs"
	"golang.org/x/sys/unix"
)

// The benchmarks mount one reproducible stack with each implementation and run the same
// workloads on each: BenchmarkX/kernel, BenchmarkX/layerfs and, when it is installed,
// BenchmarkX/fuse-overlayfs. integration/bench.sh runs them and prints each implementation's
// time as a ratio to the kernel's. They need root, like the other mount tests.

// benchStack is built once per run, below LAYERFS_BENCH_DATA or a temporary directory.
var (
	benchOnce  sync.Once
	benchLayer struct {
		lowers []string
		err    error
	}
)

const (
	benchDirs    = 100  // directories per lower, each with benchFiles files
	benchFiles   = 100  // files per directory
	benchBig     = 5000 // entries each lower adds to the big merged directory
	benchSeqSize = 256 << 20
)

// buildBenchStack writes two lowers: in each, benchDirs directories of benchFiles small files
// (the upper lower makes d0 opaque and, in the others, deletes every tenth file of the one
// below with a whiteout), half of a 10k-entry merged directory "big", and in the bottom one a
// 256 MiB file. A version mark makes a changed layout rebuild.
func buildBenchStack(dir string) ([]string, error) {
	done := filepath.Join(dir, ".complete-2")
	l1, l2 := filepath.Join(dir, "l1"), filepath.Join(dir, "l2")
	if _, err := os.Stat(done); err == nil {
		return []string{l1, l2}, nil
	}
	os.RemoveAll(l1)
	os.RemoveAll(l2)
	content := bytes.Repeat([]byte("layerfs bench line\n"), 50)
	for li, l := range []string{l2, l1} {
		for d := 0; d < benchDirs; d++ {
			sub := filepath.Join(l, "tree", "d"+strconv.Itoa(d))
			if err := os.MkdirAll(sub, 0o755); err != nil {
				return nil, err
			}
			for f := 0; f < benchFiles; f++ {
				name := filepath.Join(sub, fmt.Sprintf("f%d-%d", li, f))
				if err := os.WriteFile(name, content, 0o644); err != nil {
					return nil, err
				}
			}
		}
		big := filepath.Join(l, "big")
		if err := os.MkdirAll(big, 0o755); err != nil {
			return nil, err
		}
		for i := 0; i < benchBig; i++ {
			if err := os.WriteFile(filepath.Join(big, fmt.Sprintf("e%d-%d", li, i)), nil, 0o644); err != nil {
				return nil, err
			}
		}
	}
	for d := 1; d < benchDirs; d++ { // d0 is opaque: nothing below it to white out
		for f := 0; f < benchFiles; f += 10 {
			wh := filepath.Join(l1, "tree", "d"+strconv.Itoa(d), fmt.Sprintf("f0-%d", f))
			if err := unix.Mknod(wh, unix.S_IFCHR, 0); err != nil {
				return nil, err
			}
		}
	}
	if err := unix.Setxattr(filepath.Join(l1, "tree", "d0"), "trusted.overlay.opaque", []byte("y"), 0); err != nil {
		return nil, err
	}
	f, err := os.Create(filepath.Join(l2, "seq"))
	if err != nil {
		return nil, err
	}
	chunk := bytes.Repeat([]byte{0xa5}, 1<<20)
	for i := 0; i < benchSeqSize>>20; i++ {
		chunk[0] = byte(i)
		if _, err := f.Write(chunk); err != nil {
			f.Close()
			return nil, err
		}
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	return []string{l1, l2}, os.WriteFile(done, nil, 0o644)
}

func benchLowers(b *testing.B) []string {
	b.Helper()
	needMounts(b)
	benchOnce.Do(func() {
		dir := os.Getenv("LAYERFS_BENCH_DATA")
		if dir == "" {
			dir = filepath.Join(os.TempDir(), "layerfs-bench-data")
		}
		benchLayer.lowers, benchLayer.err = buildBenchStack(dir)
	})
	if benchLayer.err != nil {
		b.Fatalf("building the bench stack: %v", benchLayer.err)
	}
	return benchLayer.lowers
}

// benchImpls are the implementations compared: the kernel, the program under test (also
// with -o nopassthrough and -o noopen, and with -o io_uring=on where the kernel's switch is
// on: bench.sh turns it on for its run), and fuse-overlayfs when installed.
func benchImpls() []string {
	impls := []string{"kernel", testedName(), testedName() + "-nopassthrough", testedName() + "-noopen"}
	if on, err := os.ReadFile("/sys/module/fuse/parameters/enable_uring"); err == nil && bytes.HasPrefix(on, []byte("Y")) {
		impls = append(impls, testedName()+"-uring")
	}
	if _, err := exec.LookPath("fuse-overlayfs"); err == nil {
		impls = append(impls, "fuse-overlayfs")
	}
	return impls
}

// benchMount mounts the bench stack with impl on a fresh, empty upper and returns the mountpoint.
func benchMount(b *testing.B, impl string) string {
	b.Helper()
	return benchMountOn(b, impl, benchLowers(b))
}

// benchMountOn mounts lowers with impl on a fresh, empty upper and returns the mountpoint.
func benchMountOn(b *testing.B, impl string, lowers []string) string {
	b.Helper()
	root := b.TempDir()
	st := stack{Lowers: lowers, Upper: mkdir(b, root, "upper"), Work: mkdir(b, root, "work")}
	mnt := mkdir(b, root, "mnt")
	switch impl {
	case "kernel":
		mountKernel(b, st, mnt)
	case "fuse-overlayfs":
		out, err := exec.Command("fuse-overlayfs", "-o", st.options(), mnt).CombinedOutput()
		if err != nil {
			b.Fatalf("fuse-overlayfs: %v\n%s", err, out)
		}
		b.Cleanup(func() { exec.Command("fusermount3", "-u", mnt).Run() })
	case testedName() + "-noopen":
		mountLayerfs(b, st, mnt, "-o", "noopen")
	case testedName() + "-nopassthrough":
		mountLayerfs(b, st, mnt, "-o", "nopassthrough")
	case testedName() + "-uring":
		mountLayerfs(b, st, mnt, "-o", "io_uring=on")
	default:
		mountLayerfs(b, st, mnt)
	}
	return mnt
}

// dropCaches empties the page, dentry and inode caches, so the next pass reads through.
func dropCaches(b *testing.B) {
	b.Helper()
	unix.Sync()
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0o200); err != nil {
		b.Fatalf("drop caches: %v", err)
	}
}

// warmRuns runs pass once untimed, so the caches hold what it reads, then b.N times timed.
func warmRuns(b *testing.B, pass func()) {
	pass()
	b.ResetTimer()
	for range b.N {
		pass()
	}
}

// coldRuns runs pass b.N times, each timed from a cold cache (dropCaches, untimed).
func coldRuns(b *testing.B, pass func()) {
	for range b.N {
		b.StopTimer()
		dropCaches(b)
		b.StartTimer()
		pass()
	}
}

// forImpls runs body as a sub-benchmark per implementation, each on a fresh mount.
func forImpls(b *testing.B, body func(b *testing.B, mnt string)) {
	for _, impl := range benchImpls() {
		b.Run(impl, func(b *testing.B) {
			mnt := benchMount(b, impl)
			body(b, mnt)
		})
	}
}

func statWalk(b *testing.B, root string) int {
	n := 0
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		var st unix.Stat_t
		n++
		return unix.Lstat(p, &st)
	})
	if err != nil {
		b.Fatal(err)
	}
	return n
}

// BenchmarkStatWalk: lstat every name of the 20k-file tree, caches warm (find -ls).
func BenchmarkStatWalk(b *testing.B) {
	forImpls(b, func(b *testing.B, mnt string) {
		warmRuns(b, func() { statWalk(b, mnt+"/tree") })
	})
}

// BenchmarkStatWalkCold: the same walk after dropping every cache.
func BenchmarkStatWalkCold(b *testing.B) {
	forImpls(b, func(b *testing.B, mnt string) {
		coldRuns(b, func() { statWalk(b, mnt+"/tree") })
	})
}

// BenchmarkBigDirLs: list the 10k-entry merged directory and lstat each entry (ls -l), warm.
func BenchmarkBigDirLs(b *testing.B) {
	forImpls(b, func(b *testing.B, mnt string) {
		ls := func() {
			ents, err := os.ReadDir(mnt + "/big")
			if err != nil || len(ents) != 2*benchBig {
				b.Fatalf("big: %d entries, %v", len(ents), err)
			}
			for _, e := range ents {
				var st unix.Stat_t
				if err := unix.Lstat(mnt+"/big/"+e.Name(), &st); err != nil {
					b.Fatal(err)
				}
			}
		}
		warmRuns(b, ls)
	})
}

// BenchmarkReadTree: read every file of the tree (grep -r), warm.
func BenchmarkReadTree(b *testing.B) {
	forImpls(b, func(b *testing.B, mnt string) {
		buf := make([]byte, 64<<10)
		read := func() {
			err := filepath.WalkDir(mnt+"/tree", func(p string, d fs.DirEntry, err error) error {
				if err != nil || d.IsDir() {
					return err
				}
				f, err := os.Open(p)
				if err != nil {
					return err
				}
				_, err = io.CopyBuffer(io.Discard, f, buf)
				f.Close()
				return err
			})
			if err != nil {
				b.Fatal(err)
			}
		}
		warmRuns(b, read)
	})
}

// BenchmarkParallelWalk: four walkers over the tree at once, warm.
func BenchmarkParallelWalk(b *testing.B) {
	forImpls(b, func(b *testing.B, mnt string) {
		warmRuns(b, func() {
			var wg sync.WaitGroup
			for range 4 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					statWalk(b, mnt+"/tree")
				}()
			}
			wg.Wait()
		})
	})
}

// BenchmarkSeqReadCold: read the 256 MiB lower file from a cold cache.
func BenchmarkSeqReadCold(b *testing.B) {
	forImpls(b, func(b *testing.B, mnt string) {
		buf := make([]byte, 1<<20)
		b.SetBytes(benchSeqSize)
		coldRuns(b, func() {
			f, err := os.Open(mnt + "/seq")
			if err != nil {
				b.Fatal(err)
			}
			if n, err := io.CopyBuffer(io.Discard, f, buf); err != nil || n != benchSeqSize {
				b.Fatalf("read %d bytes: %v", n, err)
			}
			f.Close()
		})
	})
}

// BenchmarkRandReadCold: 2000 reads of 4 KiB at random offsets of the 256 MiB lower file,
// from a cold cache.
func BenchmarkRandReadCold(b *testing.B) {
	forImpls(b, func(b *testing.B, mnt string) {
		buf := make([]byte, 4096)
		rnd := rand.New(rand.NewSource(1))
		coldRuns(b, func() {
			f, err := os.Open(mnt + "/seq")
			if err != nil {
				b.Fatal(err)
			}
			for range 2000 {
				off := rnd.Int63n(benchSeqSize/4096) * 4096
				if _, err := f.ReadAt(buf, off); err != nil {
					b.Fatal(err)
				}
			}
			f.Close()
		})
	})
}

// BenchmarkCreateStorm: create 1000 files of 4 KiB in a new directory.
func BenchmarkCreateStorm(b *testing.B) {
	forImpls(b, func(b *testing.B, mnt string) {
		data := bytes.Repeat([]byte("x"), 4096)
		for i := range b.N {
			dir := filepath.Join(mnt, "storm"+strconv.Itoa(i))
			if err := os.Mkdir(dir, 0o755); err != nil {
				b.Fatal(err)
			}
			for f := range 1000 {
				if err := os.WriteFile(filepath.Join(dir, strconv.Itoa(f)), data, 0o644); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
}

// BenchmarkUnlinkStorm: unlink the lower files of ten directories (900 whiteouts).
func BenchmarkUnlinkStorm(b *testing.B) {
	for _, impl := range benchImpls() {
		b.Run(impl, func(b *testing.B) {
			for range b.N {
				b.StopTimer()
				mnt := benchMount(b, impl)
				var names []string
				for d := 0; d < 10; d++ {
					ents, err := os.ReadDir(filepath.Join(mnt, "tree", "d"+strconv.Itoa(d+1)))
					if err != nil {
						b.Fatal(err)
					}
					for _, e := range ents {
						names = append(names, filepath.Join(mnt, "tree", "d"+strconv.Itoa(d+1), e.Name()))
					}
				}
				b.StartTimer()
				for _, p := range names {
					if err := os.Remove(p); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}

// BenchmarkCopyUpSmall: append a byte to 500 lower files, copying each up.
func BenchmarkCopyUpSmall(b *testing.B) {
	for _, impl := range benchImpls() {
		b.Run(impl, func(b *testing.B) {
			for range b.N {
				b.StopTimer()
				mnt := benchMount(b, impl)
				b.StartTimer()
				for d := 0; d < 5; d++ {
					for f := 0; f < benchFiles; f++ {
						p := filepath.Join(mnt, "tree", "d"+strconv.Itoa(d+1), fmt.Sprintf("f1-%d", f))
						fh, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
						if err != nil {
							b.Fatal(err)
						}
						fh.Write([]byte("+"))
						fh.Close()
					}
				}
			}
		})
	}
}

// serverStatus reads a field (kB) of the layerfs server's /proc status serving mnt.
func serverStatus(b testing.TB, mnt, field string) float64 {
	b.Helper()
	return procStatus(b, serverPid(b, mnt), field)
}

// procStatus reads a field (kB) of a process's /proc status.
func procStatus(b testing.TB, pid int, field string) float64 {
	b.Helper()
	return procField(b, pid, "status", field)
}

// procField reads a field (kB) of a process's /proc file (status, smaps_rollup).
func procField(b testing.TB, pid int, file, field string) float64 {
	b.Helper()
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/" + file)
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range bytes.Split(data, []byte("\n")) {
		if f := bytes.Fields(line); len(f) >= 2 && string(f[0]) == field+":" {
			v, _ := strconv.ParseFloat(string(f[1]), 64)
			return v
		}
	}
	b.Fatalf("no %s in /proc/%d/%s", field, pid, file)
	return 0
}

// BenchmarkServerMemory walks the whole stack (40k entries) three times on one layerfs mount
// and reports the server's resident memory after the first walk and after the third (it
// must not grow with repeated walks) and its peak.
func BenchmarkServerMemory(b *testing.B) {
	for range b.N {
		mnt := benchMount(b, testedName())
		statWalk(b, mnt)
		first := serverStatus(b, mnt, "VmRSS")
		statWalk(b, mnt)
		statWalk(b, mnt)
		b.ReportMetric(first/1024, "MiB-rss-1walk")
		b.ReportMetric(serverStatus(b, mnt, "VmRSS")/1024, "MiB-rss-3walks")
		b.ReportMetric(serverStatus(b, mnt, "VmHWM")/1024, "MiB-peak")
	}
}

// BenchmarkDensity mounts the stack LAYERFS_DENSITY_MOUNTS times (20 unless set; the layers of
// LAYERFS_DENSITY_LOWERS, topmost first and colon-separated, instead if set) with layerfs
// and with fuse-overlayfs (when installed), walks each mount once, and reports the servers'
// resident memory in all after the walks and once they have been idle a while (layerfs gives
// memory back after 10 s without requests, and after five minutes asks the kernel to forget the
// names nothing uses, which frees its nodes), and per mount: a container host runs a mount per
// container, most of them idle most of the time.
func BenchmarkDensity(b *testing.B) {
	mounts := envCount(b, "LAYERFS_DENSITY_MOUNTS", 20)
	var lowers []string
	if l := os.Getenv("LAYERFS_DENSITY_LOWERS"); l != "" {
		lowers = strings.Split(l, ":")
	} else {
		lowers = benchLowers(b)
	}
	impls := []string{testedName()}
	if _, err := exec.LookPath("fuse-overlayfs"); err == nil {
		impls = append(impls, "fuse-overlayfs")
	}
	for _, impl := range impls {
		b.Run(impl, func(b *testing.B) {
			for range b.N {
				mnts := make([]string, mounts)
				for i := range mnts {
					mnts[i] = benchMountOn(b, impl, lowers)
				}
				names := 0
				for _, m := range mnts {
					names = statWalk(b, m)
				}
				// The servers' memory in all, MiB: resident (which counts the pages of the
				// binary they share once per server) and proportional (which shares them out).
				total := func() (rss, pss float64) {
					for _, m := range mnts {
						pids := daemonPids(m, filepath.Base(impl))
						if impl == testedName() {
							pids = serverPids(m)
						}
						if len(pids) != 1 {
							b.Fatalf("servers of %s: %v, want one", m, pids)
						}
						rss += procStatus(b, pids[0], "VmRSS") / 1024
						pss += procField(b, pids[0], "smaps_rollup", "Pss") / 1024
					}
					return rss, pss
				}
				rssWalked, pssWalked := total()
				// Idle: past layerfs's prune and the memory return after it (10 s later; the
				// first idle period may end just after the walk), until the total stops
				// falling.
				rss, pss := rssWalked, pssWalked
				settled := 22 // seconds
				if impl == testedName() {
					settled += int(unionfs.DefaultIdlePrune / time.Second)
				}
				for waited := 0; waited < settled+20; waited++ {
					time.Sleep(time.Second)
					r, p := total()
					done := waited >= settled && r > rss*0.99
					rss, pss = min(rss, r), min(pss, p)
					if done {
						break
					}
				}
				b.ReportMetric(rssWalked, "MiB-rss-walked")
				b.ReportMetric(rss, "MiB-rss-idle")
				b.ReportMetric(pssWalked, "MiB-pss-walked")
				b.ReportMetric(pss, "MiB-pss-idle")
				b.ReportMetric(pss/float64(mounts), "MiB-pss-per-mount-idle")
				b.ReportMetric(float64(names), "names-per-mount")
			}
		})
	}
}

// The round-trip benchmarks time one kind of call 1000 times on a warm cache, so their
// "ms per op" reads as µs per call. Each call is what the README's request table counts:
// a getxattr is one round trip, an open+close of a cached file two (OPEN, RELEASE), a create
// four and a RELEASE, an unlink two.
const rtCalls = 1000

// rtWarm times rtCalls calls of call on the lower file tree/d1/f1-1 of each implementation,
// its name and attributes cached.
func rtWarm(b *testing.B, call func(p string) error) {
	forImpls(b, func(b *testing.B, mnt string) {
		p := mnt + "/tree/d1/f1-1"
		warmRuns(b, func() {
			for range rtCalls {
				if err := call(p); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
}

// BenchmarkRTGetxattr: getxattr of an attribute a lower file does not have (ENODATA).
func BenchmarkRTGetxattr(b *testing.B) {
	buf := make([]byte, 64)
	rtWarm(b, func(p string) error {
		if _, err := unix.Lgetxattr(p, "user.layerfs-bench", buf); err != unix.ENODATA {
			return fmt.Errorf("getxattr: %v, want ENODATA", err)
		}
		return nil
	})
}

// BenchmarkRTOpen: open and close a lower file whose name and attributes are cached.
func BenchmarkRTOpen(b *testing.B) {
	rtWarm(b, func(p string) error {
		fd, err := unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err == nil {
			unix.Close(fd)
		}
		return err
	})
}

// BenchmarkRTCreate: create and close an empty new file (creat(2)), in a new directory.
func BenchmarkRTCreate(b *testing.B) {
	forImpls(b, func(b *testing.B, mnt string) {
		for i := range b.N {
			b.StopTimer()
			dir := filepath.Join(mnt, "rtc"+strconv.Itoa(i))
			must(b, os.Mkdir(dir, 0o755))
			b.StartTimer()
			for f := range rtCalls {
				fd, err := unix.Open(dir+"/"+strconv.Itoa(f), unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, 0o644)
				if err != nil {
					b.Fatal(err)
				}
				unix.Close(fd)
			}
		}
	})
}

// BenchmarkRTUnlink: unlink an upper file the kernel knows (made untimed just before).
func BenchmarkRTUnlink(b *testing.B) {
	forImpls(b, func(b *testing.B, mnt string) {
		for i := range b.N {
			b.StopTimer()
			dir := filepath.Join(mnt, "rtu"+strconv.Itoa(i))
			must(b, os.Mkdir(dir, 0o755))
			for f := range rtCalls {
				must(b, os.WriteFile(dir+"/"+strconv.Itoa(f), nil, 0o644))
			}
			b.StartTimer()
			for f := range rtCalls {
				if err := unix.Unlink(dir + "/" + strconv.Itoa(f)); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
}

// BenchmarkImageUnpack unpacks one gzip'ed layer of Go's source tree (made once with layerfs
// image export): layerfs image unpack, tar xzf of the same blob, and podman load of the image
// (as an oci-archive, into a private store). Reported: MB/s of uncompressed data and files/s.
func BenchmarkImageUnpack(b *testing.B) {
	needMounts(b)
	src := filepath.Join(runtime.GOROOT(), "src")
	dir := b.TempDir()
	layout := filepath.Join(dir, "layout")
	blob := filepath.Join(dir, "layer.tar.gz")
	if out, err := exec.Command(bin, "image", "export", "--gzip", "--oci", layout, "--tag", "go:src", src, blob).CombinedOutput(); err != nil {
		b.Fatalf("image export: %v\n%s", err, out)
	}
	var size int64
	files := 0
	filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err == nil {
			files++
			if fi, err := d.Info(); err == nil && d.Type().IsRegular() {
				size += fi.Size()
			}
		}
		return nil
	})
	archive := filepath.Join(dir, "image.tar")
	if out, err := exec.Command("tar", "-C", layout, "-cf", archive, ".").CombinedOutput(); err != nil {
		b.Fatalf("tar: %v\n%s", err, out)
	}
	ways := map[string]func(target string) *exec.Cmd{
		testedName(): func(target string) *exec.Cmd {
			return exec.Command(bin, "image", "unpack", "oci:"+layout+":go:src", target)
		},
		"tar": func(target string) *exec.Cmd { return exec.Command("tar", "-C", target, "-xzf", blob) },
	}
	if _, err := exec.LookPath("podman"); err == nil {
		ways["podman-load"] = func(target string) *exec.Cmd {
			return exec.Command("podman", "--root", target+"/root", "--runroot", podmanRunroot(b, target), "--storage-driver", "overlay", "load", "-q", "-i", archive)
		}
	}
	for _, name := range []string{testedName(), "tar", "podman-load"} {
		way, ok := ways[name]
		if !ok {
			continue
		}
		b.Run(name, func(b *testing.B) {
			b.SetBytes(size)
			for range b.N {
				b.StopTimer()
				target := b.TempDir()
				unix.Sync()
				b.StartTimer()
				if out, err := way(target).CombinedOutput(); err != nil {
					b.Fatalf("%s: %v\n%s", name, err, out)
				}
				b.StopTimer()
				if name == "podman-load" {
					exec.Command("podman", "--root", target+"/root", "--runroot", podmanRunroot(b, target), "--storage-driver", "overlay", "system", "reset", "-f").Run()
				}
				b.StartTimer()
			}
			b.ReportMetric(float64(files)*float64(b.N)/b.Elapsed().Seconds(), "files/s")
		})
	}
}

// podmanRunroot is a short run directory for a podman store at target (podman refuses one of
// more than 50 characters), removed with the benchmark.
func podmanRunroot(b *testing.B, target string) string {
	p := "/run/layerfs-bench-" + strconv.FormatUint(uint64(len(target))^uint64(os.Getpid())<<8, 36)
	if err := os.MkdirAll(p, 0o700); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(p) })
	return p
}
