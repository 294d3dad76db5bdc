package integration

import (
	"path/filepath"
	"sort"
	"testing"

	"github.com/hanwen/go-fuse/v2/posixtest"
)

// TestPosix runs go-fuse's POSIX conformance set, each test on a fresh mount in a directory
// that merges an (empty) lower directory with an (empty) upper one.
func TestPosix(t *testing.T) {
	needMounts(t)
	var names []string
	for name := range posixtest.All {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		fn := posixtest.All[name]
		t.Run(name, func(t *testing.T) {
			root := t.TempDir()
			st := stack{
				Lowers: []string{mkdir(t, root, "lower")},
				Upper:  mkdir(t, root, "upper"),
				Work:   mkdir(t, root, "work"),
			}
			mkdir(t, st.Lowers[0], "t")
			mkdir(t, st.Upper, "t")
			mnt := mkdir(t, root, "mnt")
			mountLayerfs(t, st, mnt)
			fn(t, filepath.Join(mnt, "t"))
		})
	}
}
