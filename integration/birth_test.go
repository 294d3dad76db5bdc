package integration

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestBirthTime: statx's birth time is the topmost layer object's, as the kernel's overlayfs
// gives it: a lower object's, then the copy's once a chmod, an open for writing, a new name in
// a directory, a hard link or an extended attribute has copied the object up (each asked for
// before the copy-up, so that the kernel's FUSE client holds the old one). Run on the kernel
// and layerfs, each on its own copy of the stack, the script names the layer whose object's
// birth time the mount shows.
func TestBirthTime(t *testing.T) {
	needMounts(t)
	mnts := twoMounts(t, func(lower, upper builder) {
		for _, f := range []string{"chmod", "open", "linked", "xattr"} {
			lower.file(f, "lower data\n", 0o644)
		}
		lower.file("d/old", "lower data\n", 0o644)
		upper.file("new", "upper data\n", 0o644)
		lower.settle()
		upper.settle()
	}, 0, nil, testedName(), "nopassthrough")
	sameAnswers(t, mnts, func(m string) []string {
		p := func(n string) string { return filepath.Join(m, n) }
		const all = unix.STATX_BASIC_STATS | unix.STATX_BTIME
		var out []string
		for _, n := range []string{"", "chmod", "open", "linked", "xattr", "d", "d/old", "new"} {
			out = append(out, birthLayer(m, n, all))
		}
		out = append(out,
			errName(unix.Chmod(p("chmod"), 0o600)),
			// Asked alone: only the SETATTR's reply can have told the kernel to ask again.
			birthLayer(m, "chmod", unix.STATX_BTIME),
			birthLayer(m, "chmod", all))
		fd, err := unix.Open(p("open"), unix.O_WRONLY|unix.O_CLOEXEC, 0)
		if err == nil {
			unix.Close(fd)
		}
		out = append(out, errName(err), birthLayer(m, "open", all))
		out = append(out, errName(unix.Link(p("linked"), p("link2"))),
			birthLayer(m, "link2", unix.STATX_BTIME), birthLayer(m, "linked", all))
		out = append(out, errName(unix.Setxattr(p("xattr"), "user.x", []byte("1"), 0)), birthLayer(m, "xattr", all))
		out = append(out, errName(os.WriteFile(p("d/new"), []byte("data\n"), 0o644)),
			birthLayer(m, "d", all), birthLayer(m, "d/new", all), birthLayer(m, "d/old", all))
		// A plain stat after it all asks nothing new of the birth time.
		var st unix.Stat_t
		out = append(out, errName(unix.Lstat(p("chmod"), &st)), birthLayer(m, "chmod", unix.STATX_BTIME))
		return out
	})
}

// birthLayer names the layer of the stack mounted at m (twoMounts's layout) whose object at
// rel has the birth time a statx of the mount asking for mask gives.
func birthLayer(m, rel string, mask int) string {
	var got unix.Statx_t
	if err := unix.Statx(unix.AT_FDCWD, filepath.Join(m, rel), unix.AT_SYMLINK_NOFOLLOW, mask, &got); err != nil {
		return rel + ": " + errName(err)
	}
	if got.Mask&unix.STATX_BTIME == 0 {
		return rel + ": no birth time"
	}
	side := filepath.Join(filepath.Dir(m), strings.TrimPrefix(filepath.Base(m), "mnt-"))
	for _, layer := range []string{"upper", "lower"} {
		var x unix.Statx_t
		if unix.Statx(unix.AT_FDCWD, filepath.Join(side, layer, rel), unix.AT_SYMLINK_NOFOLLOW, unix.STATX_BTIME, &x) == nil {
			if x.Btime == got.Btime {
				return rel + ": born in " + layer
			}
			return rel + ": birth time of no layer object (the " + layer + "'s differs)"
		}
	}
	return rel + ": in no layer"
}

// TestNoBirthTime: with -o nobirthtime statx gives no birth time, and asking for one costs a
// single STATX for the whole mount (answered ENOSYS, after which the kernel never asks).
func TestNoBirthTime(t *testing.T) {
	needMounts(t)
	root := t.TempDir()
	st := newStack(t, root)
	b := builder{t, st.Lowers[0]}
	for i := range 5 {
		b.file("f"+strconv.Itoa(i), "lower data\n", 0o644)
	}
	mnt := mkdir(t, root, "mnt")
	logPath := mountLayerfsDebug(t, st, mnt, "-o", "nobirthtime")
	os.Stat(filepath.Join(mnt, "mark-from"))
	for i := range 5 {
		n := "f" + strconv.Itoa(i)
		if got := birthLayer(mnt, n, unix.STATX_BASIC_STATS|unix.STATX_BTIME); got != n+": no birth time" {
			t.Errorf("%s", got)
		}
	}
	os.Stat(filepath.Join(mnt, "mark-to"))
	if got := requestsBetween(t, logPath, "mark-from", "mark-to"); got["STATX"] != 1 {
		t.Errorf("requests for 5 statx asking for the birth time: %v, want one STATX", got)
	}
}
