package integration

import (
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/hanwen/go-fuse/v2/posixtest"
	"golang.org/x/sys/unix"
)

// TestPosix runs go-fuse's POSIX conformance set, each test on a fresh mount in a directory
// that merges an (empty) lower directory with an (empty) upper one.
func TestPosix(t *testing.T) {
	needMounts(t)
	t.Run("default", func(t *testing.T) { posix(t) })
	t.Run("noopen", func(t *testing.T) { posix(t, "-o", "noopen") })
}

func posix(t *testing.T, args ...string) {
	var names []string
	for name := range posixtest.All {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		fn := posixtest.All[name]
		t.Run(name, func(t *testing.T) {
			if name == "FcntlFlockLocksFile" {
				// It expects F_SETLK on a second descriptor of the same process to conflict,
				// which is go-fuse's loopback turning them into OFD locks: POSIX (and the
				// kernel, on overlayfs or ext4) grants it. TestLocks checks locks instead.
				skipTest(t, "expects OFD semantics from F_SETLK; POSIX locks belong to the process (see TestLocks)")
			}
			root := t.TempDir()
			st := stack{
				Lowers: []string{mkdir(t, root, "lower")},
				Upper:  mkdir(t, root, "upper"),
				Work:   mkdir(t, root, "work"),
			}
			mkdir(t, st.Lowers[0], "t")
			mkdir(t, st.Upper, "t")
			mnt := mkdir(t, root, "mnt")
			mountLayerfs(t, st, mnt, args...)
			fn(t, filepath.Join(mnt, "t"))
		})
	}
}

// TestLocks: record (OFD) and flock(2) locks belong to the merged file and hold across a
// copy-up, on layerfs as on the kernel's overlayfs: a lock taken through a descriptor opened
// before the copy-up conflicts with one asked for through a descriptor opened after it. With
// passthrough the second open fails instead (TestPassthrough).
func TestLocks(t *testing.T) {
	needMounts(t)
	for _, side := range []string{"kernel", "nopassthrough", "noopen"} {
		t.Run(side, func(t *testing.T) {
			root := t.TempDir()
			st := newStack(t, root)
			builder{t, st.Lowers[0]}.file("f", "data", 0o644)
			mnt := mkdir(t, root, "mnt")
			mountSide(t, side, st, mnt)
			p := filepath.Join(mnt, "f")
			before, err := os.Open(p)
			must(t, err)
			defer before.Close()
			rd := unix.Flock_t{Type: unix.F_RDLCK}
			must(t, unix.FcntlFlock(before.Fd(), unix.F_OFD_SETLK, &rd))
			must(t, unix.Flock(int(before.Fd()), unix.LOCK_EX|unix.LOCK_NB))

			after, err := os.OpenFile(p, os.O_RDWR, 0) // copies f up
			must(t, err)
			defer after.Close()
			wr := unix.Flock_t{Type: unix.F_WRLCK}
			if err := unix.FcntlFlock(after.Fd(), unix.F_OFD_SETLK, &wr); err != unix.EAGAIN {
				t.Errorf("OFD write lock over a read lock taken before the copy-up: %v, want EAGAIN", err)
			}
			if err := unix.Flock(int(after.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != unix.EWOULDBLOCK {
				t.Errorf("flock over one taken before the copy-up: %v, want EWOULDBLOCK", err)
			}
			must(t, unix.Flock(int(before.Fd()), unix.LOCK_UN))
			rd.Type = unix.F_UNLCK
			must(t, unix.FcntlFlock(before.Fd(), unix.F_OFD_SETLK, &rd))
			must(t, unix.FcntlFlock(after.Fd(), unix.F_OFD_SETLK, &wr))
			must(t, unix.Flock(int(after.Fd()), unix.LOCK_EX|unix.LOCK_NB))
		})
	}
}
