package integration

import (
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
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
	for _, seed := range diffSeeds(t) {
		t.Run(fmt.Sprintf("seed%d", seed), func(t *testing.T) {
			runDifferential(t, seed, diffOps())
		})
	}
}

// prevTimes remembers, per path, whether its mtime was still the stack's original one.
type prevTimes map[string]int64

func runDifferential(t *testing.T, seed int64, nops int) {
	root := t.TempDir()
	st := buildReadStack(t, filepath.Join(root, "l"))
	copyTree(t, filepath.Join(root, "l"), filepath.Join(root, "k"))
	kst := rebase(st, filepath.Join(root, "l"), filepath.Join(root, "k"))
	kmnt, lmnt := mkdir(t, root, "kmnt"), mkdir(t, root, "lmnt")
	mountKernel(t, kst, kmnt, kernelOpts...)
	mountLayerfs(t, st, lmnt)

	repro := fmt.Sprintf("LAYERFS_DIFF_SEED=%d LAYERFS_DIFF_OPS=%d go test -count=1 -run TestDifferential ./integration/", seed, nops)
	g := &opGen{rnd: rand.New(rand.NewSource(seed))}
	kprev := snapshot(t, kmnt, false)
	lprev := snapshot(t, lmnt, true)
	compareTrees(t, kprev, lprev)
	if t.Failed() {
		t.Fatalf("views differ before any operation; reproduce: %s", repro)
	}
	g.update(kprev)
	var history []string
	for i := 0; i < nops; i++ {
		o := g.next()
		want := o.apply(kmnt)
		got := o.apply(lmnt)
		history = append(history, fmt.Sprintf("%4d %-60s %s", i, o, want))
		if want != got {
			t.Fatalf("seed %d op %d: %s\n kernel:  %s\n layerfs: %s\nlast ops:\n%s\nreproduce: %s",
				seed, i, o, want, got, tail(history, 15), repro)
		}
		if (i+1)%25 == 0 || i == nops-1 {
			k := snapshot(t, kmnt, false)
			l := snapshot(t, lmnt, true)
			compareCheckpoint(t, kprev, lprev, k, l)
			if t.Failed() {
				t.Fatalf("seed %d: trees differ after op %d\nlast ops:\n%s\nreproduce: %s", seed, i, tail(history, 25), repro)
			}
			kprev, lprev = k, l
			g.update(k)
		}
	}

	// The uppers each one wrote must show the same under the other.
	unmountFuse(t, lmnt)
	unmountKernelNow(t, kmnt)
	k2, l2 := mkdir(t, root, "k2"), mkdir(t, root, "l2")
	mountKernel(t, st, k2, kernelOpts...)
	compareTrees(t, lprev, snapshot(t, k2, false))
	if t.Failed() {
		t.Fatalf("seed %d: the kernel shows layerfs's upper differently; reproduce: %s", seed, repro)
	}
	mountLayerfs(t, kst, l2)
	compareTrees(t, kprev, snapshot(t, l2, true))
	if t.Failed() {
		t.Fatalf("seed %d: layerfs shows the kernel's upper differently; reproduce: %s", seed, repro)
	}
}

// compareCheckpoint compares two trees like compareTrees, but mtimes only where they tell:
// a time the stack was built with must be kept by both or changed by both.
func compareCheckpoint(t testing.TB, kprev, lprev, k, l tree) {
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
