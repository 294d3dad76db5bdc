package integration

import (
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// kernelOpts are the kernel overlayfs options the differential runs compare against: index=on
// keeps hard links and inode numbers across copy-up, as layerfs always does; directory renames
// with lower parts give EXDEV in both (redirect_dir=off).
var kernelOpts = []string{"index=on", "redirect_dir=off", "metacopy=off"}

// diffSeeds is how many seeds a run covers: a fixed set in CI, more with LAYERFS_DIFF_SEEDS
// (a soak run).
func diffSeeds(t *testing.T) []int64 {
	n := 6
	if s := os.Getenv("LAYERFS_DIFF_SEEDS"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil {
			t.Fatalf("LAYERFS_DIFF_SEEDS=%q: %v", s, err)
		}
		n = v
	}
	first := int64(1)
	if s := os.Getenv("LAYERFS_DIFF_SEED"); s != "" {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			t.Fatalf("LAYERFS_DIFF_SEED=%q: %v", s, err)
		}
		first, n = v, 1
	}
	seeds := make([]int64, n)
	for i := range seeds {
		seeds[i] = first + int64(i)
	}
	return seeds
}

// envCount is the positive number the environment variable name holds, def when it is unset;
// anything else fails t.
func envCount(t testing.TB, name string, def int) int {
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	v, err := strconv.Atoi(s)
	if err != nil || v < 1 {
		t.Fatalf("%s=%q: want a positive number", name, s)
	}
	return v
}

// forSeeds runs fn as a subtest per seed. LAYERFS_DIFF_PARALLEL=N runs N seeds at once, each
// on mounts of its own; LAYERFS_DIFF_DURATION (e.g. 30m) keeps taking the next seed until that
// long has passed, however many LAYERFS_DIFF_SEEDS says: a soak run for as long as asked.
func forSeeds(t *testing.T, fn func(t *testing.T, seed int64)) {
	workers := envCount(t, "LAYERFS_DIFF_PARALLEL", 1)
	var deadline time.Time
	if s := os.Getenv("LAYERFS_DIFF_DURATION"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("LAYERFS_DIFF_DURATION=%q: %v", s, err)
		}
		deadline = time.Now().Add(d)
	}
	seeds := diffSeeds(t)
	var next atomic.Int64
	take := func() (int64, bool) {
		i := next.Add(1) - 1
		if !deadline.IsZero() {
			return seeds[0] + i, time.Now().Before(deadline)
		}
		if i >= int64(len(seeds)) {
			return 0, false
		}
		return seeds[i], true
	}
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seed, ok := take(); ok; seed, ok = take() {
				t.Run(fmt.Sprintf("seed%d", seed), func(t *testing.T) { fn(t, seed) })
			}
		}()
	}
	wg.Wait()
}

func diffOps() int {
	if s := os.Getenv("LAYERFS_DIFF_OPS"); s != "" {
		if v, err := strconv.Atoi(s); err == nil {
			return v
		}
	}
	return 300
}

// TestDifferential runs seeded random operation sequences on the same stack mounted by the
// kernel and by the program under test, comparing every result and, at checkpoints, the whole
// tree. Reproduce one seed with LAYERFS_DIFF_SEED=N go test -run TestDifferential ./integration/
func TestDifferential(t *testing.T) {
	needMounts(t)
	forSeeds(t, func(t *testing.T, seed int64) {
		runDifferential(t, seed, diffOps(), mode{kernel: kernelOpts})
	})
}

// TestDifferentialRedirect is TestDifferential with redirect_dir=on on both sides: directories
// with lower parts can be renamed, and each upper must show the same under the other.
func TestDifferentialRedirect(t *testing.T) {
	needMounts(t)
	m := mode{
		kernel:  []string{"index=on", "redirect_dir=on", "metacopy=off"},
		layerfs: []string{"-o", "redirect_dir=on"},
	}
	forSeeds(t, func(t *testing.T, seed int64) {
		runDifferential(t, seed, diffOps(), m)
	})
}

// TestDifferentialNoOpen is TestDifferential with layerfs mounted -o noopen: the kernel opens
// files without asking, and reads and writes reach layerfs without a handle.
func TestDifferentialNoOpen(t *testing.T) {
	needMounts(t)
	forSeeds(t, func(t *testing.T, seed int64) {
		runDifferential(t, seed, diffOps(), mode{kernel: kernelOpts, layerfs: []string{"-o", "noopen"}})
	})
}

// TestDifferentialForget is TestDifferential with the kernel made to forget every name it
// does not use, every 15 ms and at each checkpoint, as under memory pressure or after an idle
// server's prune: layerfs serves operations from nodes made afresh, its FORGETs racing with
// them, and every name must show the same, inode numbers included, as just before.
func TestDifferentialForget(t *testing.T) {
	needMounts(t)
	forSeeds(t, func(t *testing.T, seed int64) {
		runDifferential(t, seed, diffOps(), mode{kernel: kernelOpts, forget: true})
	})
}

// mode is how both sides of a differential run are mounted.
type mode struct {
	kernel  []string // kernel overlayfs options
	layerfs []string // extra arguments for the program under test
	// forget makes the kernel drop its unused names and inodes at each checkpoint.
	forget bool
}

// prevTimes remembers, per path, whether its mtime was still the stack's original one.
type prevTimes map[string]int64

func runDifferential(t *testing.T, seed int64, nops int, m mode) {
	root := t.TempDir()
	// The user-* operations run as testUID, who must reach the mounts.
	must(t, os.Chmod(root, 0o755))
	must(t, os.Chmod(filepath.Dir(root), 0o755))
	st := buildReadStack(t, filepath.Join(root, "l"))
	copyTree(t, filepath.Join(root, "l"), filepath.Join(root, "k"))
	kst := rebase(st, filepath.Join(root, "l"), filepath.Join(root, "k"))
	kmnt, lmnt := mkdir(t, root, "kmnt"), mkdir(t, root, "lmnt")
	mountKernel(t, kst, kmnt, m.kernel...)
	mountLayerfs(t, st, lmnt, m.layerfs...)

	repro := fmt.Sprintf("LAYERFS_DIFF_SEED=%d LAYERFS_DIFF_OPS=%d go test -count=1 -run '%s' ./integration/", seed, nops, t.Name())
	// A divergence is reported with the operations before it; the run goes on, so that a
	// program with several known divergences shows them all (later ones may be consequences).
	r := &divergences{t: t, seed: seed, repro: repro}
	defer r.report()

	// The lowers must come out as they went in, to the byte and the timestamp.
	lowersBefore := map[string]tree{}
	for _, l := range append(append([]string{}, st.Lowers...), kst.Lowers...) {
		lowersBefore[l] = snapshot(t, l, false)
	}
	defer func() {
		for l, before := range lowersBefore {
			r.trees("lower layer "+l+" changed", compareTrees, before, snapshot(t, l, false))
		}
	}()

	if m.forget {
		// Besides the checkpoints, at any moment: the kernel's FORGETs race with the
		// operations and lookups, as memory pressure makes them.
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			for {
				select {
				case <-stop:
					return
				case <-time.After(15 * time.Millisecond):
					os.WriteFile("/proc/sys/vm/drop_caches", []byte("2"), 0o200)
				}
			}
		}()
		defer func() { close(stop); <-done }()
	}

	// Whose birth time each name shows, judged against each side's own copy of the lowers.
	kBirths, lBirths := layerBirths(t, kst), layerBirths(t, st)
	ksnap := func(mnt string) tree { return snapshotBirths(t, mnt, false, kBirths) }
	lsnap := func(mnt string) tree { return snapshotBirths(t, mnt, true, lBirths) }
	g := &opGen{rnd: rand.New(rand.NewSource(seed))}
	kprev := ksnap(kmnt)
	lprev := lsnap(lmnt)
	r.trees("before any operation", compareTrees, kprev, lprev)
	g.update(kprev)
	for i := 0; i < nops && !r.full(); i++ {
		o := g.next()
		var want, got string
		if doc, ok := documented[o.Kind]; ok {
			want, got = doc(o, kmnt), o.apply(lmnt)
		} else {
			want, got = o.apply(kmnt), o.apply(lmnt)
		}
		r.history = append(r.history, fmt.Sprintf("%4d %-60s %s", i, o, want))
		if want != got {
			r.add(fmt.Sprintf("op %d: %s\n kernel:  %s\n %-8s %s", i, o, want, testedName()+":", got))
		}
		if (i+1)%25 == 0 || i == nops-1 {
			k := ksnap(kmnt)
			l := lsnap(lmnt)
			r.trees(fmt.Sprintf("trees after op %d", i), func(t testing.TB, a, b tree) {
				compareKeptTimes(t, a, b)
			}, k, l)
			kprev, lprev = k, l
			g.update(k)
			if m.forget {
				forgetNames(t)
				r.trees(fmt.Sprintf("%s after op %d, once the kernel forgot its names, vs before", testedName(), i),
					compareSameInodes, l, lsnap(lmnt))
			}
		}
	}

	// The uppers each one wrote must show the same under the other.
	unmountFuse(t, lmnt)
	unmountKernelNow(t, kmnt)
	k2, l2 := mkdir(t, root, "k2"), mkdir(t, root, "l2")
	mountKernel(t, st, k2, m.kernel...)
	r.trees("the kernel mounting layerfs's upper (kernel) vs layerfs before unmount", compareTrees, snapshotBirths(t, k2, false, lBirths), lprev)
	mountLayerfs(t, kst, l2, m.layerfs...)
	r.trees("layerfs mounting the kernel's upper (layerfs) vs the kernel before unmount", compareTrees, kprev, snapshotBirths(t, l2, true, kBirths))
}

// divergences collects what one seed's run found.
type divergences struct {
	t       *testing.T
	seed    int64
	repro   string
	history []string
	found   []string
}

func (r *divergences) full() bool { return len(r.found) >= 12 }

func (r *divergences) add(what string) {
	r.found = append(r.found, fmt.Sprintf("%s\nlast ops:\n%s", what, tail(r.history, 12)))
}

// trees compares two trees with cmp and records the differences, if any, as one divergence.
func (r *divergences) trees(what string, cmp func(testing.TB, tree, tree), a, b tree) {
	rec := &recorder{TB: r.t}
	cmp(rec, a, b)
	if len(rec.msgs) > 0 {
		r.add(what + ":\n" + strings.Join(rec.msgs, "\n"))
	}
}

func (r *divergences) report() {
	if len(r.found) == 0 {
		return
	}
	r.t.Errorf("seed %d: %d divergences from the kernel\n\n%s\n\nreproduce: %s",
		r.seed, len(r.found), strings.Join(r.found, "\n\n"), r.repro)
}

// recorder is a testing.TB that keeps what a comparison reports instead of failing; what it
// does not override goes to the test it records for.
type recorder struct {
	testing.TB
	msgs []string
}

func (r *recorder) Helper() {}
func (r *recorder) Errorf(format string, args ...any) {
	if len(r.msgs) < 20 {
		r.msgs = append(r.msgs, fmt.Sprintf(format, args...))
	}
}
func (r *recorder) Fatalf(format string, args ...any) { r.Errorf(format, args...) }

// compareKeptTimes compares two trees like compareTrees, but mtimes only where they tell:
// a time the stack was built with must be kept by both or changed by both.
func compareKeptTimes(t testing.TB, k, l tree) {
	t.Helper()
	oldNs := old.UnixNano()
	kk, ll := tree{}, tree{}
	for p, e := range k {
		kk[p] = e
	}
	for p, e := range l {
		ll[p] = e
	}
	for p, ke := range kk {
		le, ok := ll[p]
		if !ok {
			continue
		}
		kOld, lOld := ke.Mtime == oldNs, le.Mtime == oldNs
		if kOld != lOld {
			t.Errorf("%s: mtime kept by one, changed by the other (kernel %d, layerfs %d)", p, ke.Mtime, le.Mtime)
		}
		if !kOld {
			ke.Mtime, le.Mtime = 0, 0
			kk[p], ll[p] = ke, le
		}
	}
	compareTrees(t, kk, ll)
}

func tail(lines []string, n int) string {
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func unmountKernelNow(t testing.TB, mnt string) {
	t.Helper()
	if err := syscallUnmount(mnt); err != nil {
		t.Fatalf("umount %s: %v", mnt, err)
	}
}

// forgetNames makes the kernel drop every dentry and inode nothing uses, in every filesystem
// (drop_caches 2): for a FUSE mount, a FORGET for each of them.
func forgetNames(t testing.TB) {
	t.Helper()
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("2"), 0o200); err != nil {
		t.Fatalf("drop_caches: %v", err)
	}
}

// compareSameInodes compares two snapshots of one mount like compareTrees, and each name's
// inode number too.
func compareSameInodes(t testing.TB, before, after tree) {
	t.Helper()
	compareTrees(t, before, after)
	for p, b := range before {
		if a, ok := after[p]; ok && a.ino != b.ino {
			t.Errorf("%s: inode %d, then %d", p, b.ino, a.ino)
		}
	}
}
