package integration

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
)

// TestListingsWithoutOpendir: layerfs answers OPENDIR with ENOSYS once, and the kernel reads
// directories without handles; listings must still be whole and right when readers
// interleave on one directory, stop part-way, or list again after a change, and directories
// read part-way must not pile up descriptors in the server.
func TestListingsWithoutOpendir(t *testing.T) {
	needMounts(t)
	root := t.TempDir()
	st := stack{Lowers: []string{mkdir(t, root, "l1"), mkdir(t, root, "l2")}, Upper: mkdir(t, root, "u"), Work: mkdir(t, root, "w")}
	var want []string
	for i := range 3000 { // many READDIRPLUS replies
		name := "entry-with-a-longish-name-" + strconv.Itoa(i)
		must(t, os.WriteFile(filepath.Join(mkdir(t, st.Lowers[i%2], "big"), name), nil, 0o644))
		want = append(want, name)
	}
	slices.Sort(want)
	for i := range 300 {
		mkdir(t, st.Lowers[0], "many/"+strconv.Itoa(i)+"/sub")
	}
	mnt := mkdir(t, root, "m")
	mountLayerfs(t, st, mnt)
	big := filepath.Join(mnt, "big")

	list := func(n int) []string {
		f, err := os.Open(big)
		must(t, err)
		defer f.Close()
		names, err := f.Readdirnames(n)
		if err != nil {
			t.Errorf("readdir %s: %v", big, err)
		}
		slices.Sort(names)
		return names
	}
	if got := list(-1); !slices.Equal(got, want) {
		t.Fatalf("listing: %d names, want %d", len(got), len(want))
	}

	// Four readers at once, each reading in small steps from its own offset.
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 5 {
				f, err := os.Open(big)
				if err != nil {
					t.Error(err)
					return
				}
				var got []string
				for {
					names, err := f.Readdirnames(7)
					got = append(got, names...)
					if err != nil || len(names) == 0 {
						break
					}
				}
				f.Close()
				slices.Sort(got)
				if !slices.Equal(got, want) {
					t.Errorf("interleaved listing: %d names, want %d", len(got), len(want))
					return
				}
			}
		}()
	}
	wg.Wait()

	// A change after a listing, and a reader that stopped part-way.
	must(t, os.WriteFile(filepath.Join(big, "added"), nil, 0o644))
	must(t, os.Remove(filepath.Join(big, want[0])))
	if part := list(10); len(part) != 10 {
		t.Errorf("partial listing: %d names", len(part))
	}
	now := append(slices.Clone(want[1:]), "added")
	slices.Sort(now)
	if got := list(-1); !slices.Equal(got, now) {
		t.Errorf("listing after a change: %d names, want %d", len(got), len(now))
	}

	// 300 directories each read part-way (with the kernel's cache dropped, so each read
	// reaches the server): the server keeps a bounded number of them open.
	pid := serverPid(t, mnt)
	before := fdCount(t, pid)
	for i := range 300 {
		f, err := os.Open(filepath.Join(mnt, "many", strconv.Itoa(i)))
		must(t, err)
		if _, err := f.Readdirnames(1); err != nil {
			t.Errorf("readdir many/%d: %v", i, err)
		}
		f.Close()
	}
	if after := fdCount(t, pid); after > before+2*64+8 {
		t.Errorf("the server holds %d descriptors after reading 300 directories part-way, %d before", after, before)
	}
}
