package merge

import (
	"encoding/binary"
	"encoding/hex"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/layerfs/layerfs/whiteout"
	"golang.org/x/sys/unix"
)

// numbered is a Stack Identity made of the numbering rules alone.
type numbered struct{ Numbering }

func (numbered) OverrideType(*Layer, int, string) (uint32, bool) { return 0, false }

func TestInoOf(t *testing.T) {
	l := &Layer{FsIdx: 3}
	const low = uint64(1)<<(64-fsBits) - 1
	for _, tc := range []struct {
		same      bool
		real, ino uint64
	}{
		{same: true, real: 42, ino: 42},
		{same: true, real: ^uint64(0), ino: ^uint64(0)}, // shown unchanged, as the kernel does
		{real: 42, ino: 3<<(64-fsBits) | 42},
		{real: low + 5, ino: 3<<(64-fsBits) | ((low+5)^(low+5)>>(64-fsBits))&low}, // folded
	} {
		if got := (Numbering{SameFS: tc.same}).InoOf(l, tc.real); got != tc.ino {
			t.Errorf("InoOf(sameFS=%v, %#x) = %#x, want %#x", tc.same, tc.real, got, tc.ino)
		}
	}
	// ^0 is go-fuse's: never handed out.
	top := &Layer{FsIdx: 1<<fsBits - 1}
	if got := (Numbering{}).InoOf(top, low); got == ^uint64(0) {
		t.Errorf("InoOf gave the reserved number")
	}
}

// ovlFB is a struct ovl_fb as the kernel writes overlay.origin: a 32-bit inode number handle.
func ovlFB(ino uint32) []byte {
	b := make([]byte, 29)
	b[1], b[2], b[4] = 0xfb, 29, fileidIno32Gen
	binary.LittleEndian.PutUint32(b[21:], ino)
	return b
}

func TestOriginIno(t *testing.T) {
	dir := t.TempDir()
	put := func(name, attr string, val []byte) {
		p := filepath.Join(dir, name)
		check(t, os.WriteFile(p, nil, 0o644))
		if attr != "" {
			check(t, unix.Lsetxattr(p, attr, val, 0))
		}
	}
	put("ours", whiteout.UserPrefix+OriginAttr, []byte("1234"))
	put("kernels", whiteout.UserPrefix+"origin", ovlFB(777))
	put("bad", whiteout.UserPrefix+"origin", []byte("junk"))
	put("plain", "", nil)
	put("protected", whiteout.UserPrefix+whiteout.ProtAttr, []byte("i"))
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY, 0)
	check(t, err)
	defer unix.Close(fd)
	const some = XattrsListed
	for _, tc := range []struct {
		name  string
		same  bool
		ino   uint64
		ok    bool
		facts XattrFacts
	}{
		{"ours", true, 1234, true, some},
		{"ours", false, 1234, true, some},
		{"kernels", true, 777, true, some},
		{"kernels", false, 0, false, some}, // a lower object's own number is not the merged one then
		{"bad", true, 0, false, some},
		{"plain", true, 0, false, some | XattrsNone},
		{"protected", true, 0, false, some | XattrsProtAttr},
	} {
		ino, ok, facts := Numbering{SameFS: tc.same, Prefix: whiteout.UserPrefix}.OriginIno(fd, tc.name)
		if ino != tc.ino || ok != tc.ok || facts != tc.facts {
			t.Errorf("OriginIno(%s, sameFS=%v) = %d, %v, %b; want %d, %v, %b", tc.name, tc.same, ino, ok, facts, tc.ino, tc.ok, tc.facts)
		}
	}
}

func TestMergedNlink(t *testing.T) {
	dir := t.TempDir()
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY, 0)
	check(t, err)
	defer unix.Close(fd)
	for i, tc := range []struct {
		links int    // names the upper object has
		attr  string // its overlay.nlink, "" for none
		want  uint64
	}{
		{links: 1, want: 1},
		{links: 3, want: 3},
		{links: 3, attr: "U-1", want: 2}, // the index link is not a name
		{links: 3, attr: "U+1", want: 4},
		{links: 2, attr: "L+5", want: 1}, // counted from the lower: all linked up, less the index
		{links: 2, attr: "U-9", want: 1},
		{links: 2, attr: "junk", want: 2},
	} {
		name := "f" + strconv.Itoa(i)
		p := filepath.Join(dir, name)
		check(t, os.WriteFile(p, nil, 0o644))
		for j := 1; j < tc.links; j++ {
			check(t, os.Link(p, p+"-"+strconv.Itoa(j)))
		}
		if tc.attr != "" {
			check(t, unix.Lsetxattr(p, whiteout.UserPrefix+"nlink", []byte(tc.attr), 0))
		}
		var st unix.Stat_t
		check(t, unix.Lstat(p, &st))
		if got := (Numbering{}).MergedNlink(fd, name, &st); got != tc.want {
			t.Errorf("%d links, nlink %q: %d, want %d", tc.links, tc.attr, got, tc.want)
		}
	}
}

// TestResolveNumbers: lookup gives a copied-up file the number it had below, and a merged
// directory its topmost lower part's number.
func TestResolveNumbers(t *testing.T) {
	s := newStack(t, true, []string{"f file", "d dir", "d own"}, []string{"d dir"}, []string{"d dir"})
	s.Identity = numbered{Numbering{SameFS: true, Prefix: whiteout.UserPrefix}}
	check(t, unix.Lsetxattr(filepath.Join(s.Layers[0].Path, "file"), whiteout.UserPrefix+OriginAttr, []byte("99"), 0))
	ino := func(layer int, path string) uint64 {
		var st unix.Stat_t
		check(t, unix.Lstat(filepath.Join(s.Layers[layer].Path, path), &st))
		return st.Ino
	}
	for path, want := range map[string]uint64{"file": 99, "dir": ino(1, "dir"), "own": ino(0, "own")} {
		res, errno := s.ResolvePath(path)
		if errno != 0 || res.Ino != want {
			t.Errorf("%s: ino %d (%v), want %d", path, res.Ino, errno, want)
		}
	}
}

// TestReadKernelIndex: the entries of work/index are found by the inode number in their
// file handle; names that are not handles are passed over; no index is no index.
func TestReadKernelIndex(t *testing.T) {
	work := t.TempDir()
	if idx, fd := ReadKernelIndex(work); idx != nil || fd != -1 {
		t.Fatalf("no index: %v, %d", idx, fd)
	}
	entry := hex.EncodeToString(ovlFB(777))
	check(t, os.MkdirAll(filepath.Join(work, "index"), 0o755))
	check(t, os.WriteFile(filepath.Join(work, "index", entry), nil, 0o644))
	check(t, os.WriteFile(filepath.Join(work, "index", "#junk"), nil, 0o644))
	idx, fd := ReadKernelIndex(work)
	if fd < 0 || len(idx) != 1 || idx[777] != entry {
		t.Fatalf("index %v, fd %d; want 777 -> %s", idx, fd, entry)
	}
	unix.Close(fd)
}
