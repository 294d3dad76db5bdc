package integration

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// scenario is a scripted sequence that once showed a union filesystem diverging from the
// kernel. Each runs on the kernel and on the program under test; the views are compared
// after the steps, and then each upper is mounted by the other and compared again.
type scenario struct {
	name  string
	build func(lower, upper builder)
	steps func(t *testing.T, mnt string)
	// documented, if set, changes the kernel's view after the steps into what layerfs
	// documents it shows instead (README, "What differs").
	documented func(k tree)
}

var scenarios = []scenario{
	{
		// layerfs before this was fixed: chown of a capability file failed with ENODATA,
		// and chmod's copy-up lost the capability.
		name: "capability binary chowned and chmodded",
		build: func(lower, upper builder) {
			for _, n := range []string{"bin/ping", "bin/ping6", "bin/arping"} {
				lower.file(n, "ping\n", 0o755)
				lower.xattr(n, "security.capability", string(capNetRaw))
			}
		},
		steps: func(t *testing.T, mnt string) {
			must(t, os.Chown(filepath.Join(mnt, "bin/ping"), 1000, 1000))
			must(t, os.Chmod(filepath.Join(mnt, "bin/ping6"), 0o4711))
			must(t, os.Chmod(filepath.Join(mnt, "bin/arping"), 0o700))
			must(t, os.Chown(filepath.Join(mnt, "bin/arping"), 0, 1000))
		},
	},
	{
		// fuse-overlayfs: the other name of a copied-up lower hard link keeps the old data
		// and nlink.
		name: "hard link copy-up",
		build: func(lower, upper builder) {
			lower.file("h1", "one\n", 0o644)
			lower.link("h1", "h2")
			lower.file("d/x", "x", 0o644)
			lower.link("h1", "d/h3")
		},
		steps: func(t *testing.T, mnt string) {
			appendFile(t, filepath.Join(mnt, "h1"), "two\n")
			must(t, os.Remove(filepath.Join(mnt, "h2")))
		},
		// layerfs links d/h3 into the upper at the first copy-up, so d gets an upper part
		// and reports one link, as every merged directory does; the kernel links lazily.
		documented: func(k tree) {
			e := k["d"]
			e.Nlink = 1
			k["d"] = e
		},
	},
	{
		// fuse-overlayfs: a directory recreated after rm -rf shows its old children again,
		// or leaves marker files that the kernel then shows.
		name: "rm -rf then mkdir",
		build: func(lower, upper builder) {
			lower.file("d/a", "a", 0o644)
			lower.file("d/sub/b", "b", 0o644)
			upper.file("d/u", "u", 0o644)
		},
		steps: func(t *testing.T, mnt string) {
			must(t, os.RemoveAll(filepath.Join(mnt, "d")))
			must(t, os.Mkdir(filepath.Join(mnt, "d"), 0o755))
			must(t, os.WriteFile(filepath.Join(mnt, "d/new"), []byte("new"), 0o644))
			must(t, os.Mkdir(filepath.Join(mnt, "d/sub"), 0o755))
		},
	},
	{
		name: "rename over lower names",
		build: func(lower, upper builder) {
			lower.file("a", "a", 0o644)
			lower.file("b", "b", 0o644)
			lower.file("dir/c", "c", 0o644)
		},
		steps: func(t *testing.T, mnt string) {
			must(t, os.Rename(filepath.Join(mnt, "a"), filepath.Join(mnt, "b")))
			must(t, os.Mkdir(filepath.Join(mnt, "fresh"), 0o755))
			must(t, os.Rename(filepath.Join(mnt, "dir/c"), filepath.Join(mnt, "fresh/c")))
			err := os.Rename(filepath.Join(mnt, "dir"), filepath.Join(mnt, "dir2"))
			if !isErrno(err, unix.EXDEV) {
				t.Errorf("rename of a directory with lower parts: %v, want EXDEV", err)
			}
		},
	},
}

func TestScenarios(t *testing.T) {
	needMounts(t)
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			root := t.TempDir()
			st := stack{Lowers: []string{root + "/l/lower"}, Upper: root + "/l/upper", Work: root + "/l/work"}
			for _, d := range []string{st.Lowers[0], st.Upper, st.Work} {
				mkdir(t, d, "")
			}
			lower, upper := builder{t, st.Lowers[0]}, builder{t, st.Upper}
			sc.build(lower, upper)
			lower.settle()
			upper.settle()
			copyTree(t, root+"/l", root+"/k")
			kst := rebase(st, root+"/l", root+"/k")
			kmnt, lmnt := mkdir(t, root, "kmnt"), mkdir(t, root, "lmnt")
			mountKernel(t, kst, kmnt, kernelOpts...)
			mountLayerfs(t, st, lmnt)
			sc.steps(t, kmnt)
			sc.steps(t, lmnt)
			k, l := snapshot(t, kmnt, false), snapshot(t, lmnt, true)
			kdoc := tree{}
			for p, e := range k {
				kdoc[p] = e
			}
			if sc.documented != nil {
				sc.documented(kdoc)
			}
			compareKeptTimes(t, kdoc, l)

			unmountFuse(t, lmnt)
			unmountKernelNow(t, kmnt)
			k2, l2 := mkdir(t, root, "k2"), mkdir(t, root, "l2")
			mountKernel(t, st, k2, kernelOpts...)
			t.Logf("the kernel mounting the upper written by %s:", testedName())
			compareTrees(t, l, snapshot(t, k2, false))
			mountLayerfs(t, kst, l2)
			t.Logf("%s mounting the upper written by the kernel:", testedName())
			compareTrees(t, k, snapshot(t, l2, true))
			// And the program mounting its own upper again shows what it showed before
			// (a recreated directory must not get its old children back).
			l3 := mkdir(t, root, "l3")
			mountLayerfs(t, st, l3)
			t.Logf("%s mounting its own upper again:", testedName())
			compareTrees(t, l, snapshot(t, l3, true))
		})
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func appendFile(t *testing.T, p, data string) {
	t.Helper()
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	must(t, err)
	_, err = f.WriteString(data)
	must(t, err)
	must(t, f.Close())
}

func isErrno(err error, want unix.Errno) bool {
	var e unix.Errno
	for err != nil {
		if x, ok := err.(unix.Errno); ok {
			e = x
			break
		}
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			break
		}
		err = u.Unwrap()
	}
	return e == want
}
