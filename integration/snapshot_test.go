package integration

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// entry is what a user can observe of one name in a mounted tree.
type entry struct {
	Type   string // reg, dir, lnk, fifo, sock, chr, blk
	Mode   uint32 // permission bits with setuid/setgid/sticky
	Uid    uint32
	Gid    uint32
	Size   int64 // regular files and symlinks
	Data   string
	Target string
	Xattrs string // sorted name=value pairs of every attribute but the overlay's private ones
	Mtime  int64  // nanoseconds
	Nlink  uint64
	Rdev   uint64
	Flags  string // inode flags (lsattr) of a regular file or directory
	// Birth says whose birth time statx gives: "lower" (a lower layer object's), "copy" (an
	// upper object's), or what else (births.whose); "" where not asked (snapshotBirths).
	// Each side of a comparison has its own copy of the layers, so the times themselves
	// differ.
	Birth string
	ino   uint64 // compared as "which names share an inode", not as a number
}

// tree is a snapshot: relative path -> entry, plus checks made while walking.
type tree map[string]entry

// snapshot walks root with getdents and lstat, recording every name. With strict set it fails
// t when a directory listing and lstat disagree: d_ino must equal st_ino, and d_type the file
// type. The kernel's overlayfs is not strict: in a merged upper directory that it has not yet
// marked impure, readdir answers the upper's own d_ino while stat answers the origin's.
func snapshot(t testing.TB, root string, strict bool) tree {
	t.Helper()
	return snapshotBirths(t, root, strict, nil)
}

// snapshotBirths is snapshot that also records whose birth time each name shows, judged
// against the mounted stack's layers (nil: not recorded).
func snapshotBirths(t testing.TB, root string, strict bool, layers *births) tree {
	t.Helper()
	tr := tree{}
	var walk func(rel string)
	walk = func(rel string) {
		dir := filepath.Join(root, rel)
		ents, err := readDirents(dir)
		if err != nil {
			t.Fatalf("readdir %s: %v", dir, err)
		}
		for _, d := range ents {
			if d.name == "." || d.name == ".." {
				continue
			}
			p := filepath.Join(rel, d.name)
			e := lstatEntry(t, filepath.Join(root, p))
			if strict && d.ino != e.ino {
				t.Errorf("%s: d_ino %d from readdir but st_ino %d from lstat", filepath.Join(root, p), d.ino, e.ino)
			}
			if dt := dtypeName(d.typ); dt != e.Type {
				t.Errorf("%s: d_type %s from readdir but %s from lstat", filepath.Join(root, p), dt, e.Type)
			}
			if layers != nil {
				e.Birth = layers.whose(t, root, p)
			}
			tr[p] = e
			if e.Type == "dir" {
				walk(p)
			}
		}
	}
	walk("")
	return tr
}

// births tells whose birth time a mount of a stack shows.
type births struct {
	upper  string
	lowers map[unix.StatxTimestamp]bool // the birth times of every lower object
}

// layerBirths reads the birth times of every object of st's lower layers.
func layerBirths(t testing.TB, st stack) *births {
	t.Helper()
	b := &births{upper: st.Upper, lowers: map[unix.StatxTimestamp]bool{}}
	for _, l := range st.Lowers {
		must(t, filepath.Walk(l, func(p string, _ os.FileInfo, err error) error {
			if err != nil {
				return err
			}
			if x, err := birthOf(p, 0); err != nil {
				return err
			} else if x.Mask&unix.STATX_BTIME != 0 {
				b.lowers[x.Btime] = true
			}
			return nil
		}))
	}
	return b
}

// whose says whose birth time name rel of the mount at root shows (asked with the basic
// attributes, as stat(1) asks): "copy" where the upper has an object at rel, which must be
// the one shown; else "lower" for a lower object's, "copy" for one made since the mount (a
// hard link's other name, which the kernel without index=on leaves in place in the upper,
// shows the copy of the name copied up, even once that name is gone). Lower objects are told
// by their birth time alone, which several share (file systems take it from a coarse clock):
// they were all made before the mount.
func (b *births) whose(t testing.TB, root, rel string) string {
	t.Helper()
	x, err := birthOf(filepath.Join(root, rel), unix.STATX_BASIC_STATS)
	if err != nil {
		t.Fatalf("statx %s: %v", filepath.Join(root, rel), err)
	}
	if x.Mask&unix.STATX_BTIME == 0 {
		return "none"
	}
	if u, err := birthOf(filepath.Join(b.upper, rel), 0); err == nil {
		if u.Btime == x.Btime {
			return "copy"
		}
		return "not the upper object's"
	}
	if b.lowers[x.Btime] {
		return "lower"
	}
	return "copy"
}

// birthOf is a statx of p asking for the birth time and mask.
func birthOf(p string, mask int) (unix.Statx_t, error) {
	var x unix.Statx_t
	err := unix.Statx(unix.AT_FDCWD, p, unix.AT_SYMLINK_NOFOLLOW, mask|unix.STATX_BTIME, &x)
	return x, err
}

func lstatEntry(t testing.TB, p string) entry {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatalf("lstat %s: %v", p, err)
	}
	e := entry{
		Type:  typeName(st.Mode),
		Mode:  st.Mode & 07777,
		Uid:   st.Uid,
		Gid:   st.Gid,
		Mtime: st.Mtim.Nano(),
		Nlink: uint64(st.Nlink),
		ino:   st.Ino,
	}
	switch e.Type {
	case "reg":
		e.Size = st.Size
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatalf("read %s: %v", p, err)
		}
		sum := sha256.Sum256(data)
		e.Data = hex.EncodeToString(sum[:8])
	case "lnk":
		e.Size = st.Size
		target, err := os.Readlink(p)
		if err != nil {
			t.Fatalf("readlink %s: %v", p, err)
		}
		e.Target = target
	case "chr", "blk":
		e.Rdev = st.Rdev
	}
	e.Xattrs = allXattrs(t, p)
	if e.Type == "reg" || e.Type == "dir" {
		e.Flags = inodeFlags(p)
	}
	return e
}

// inodeFlags describes p's inode flags, or why they cannot be read.
func inodeFlags(p string) string {
	f, err := flagsAt(p)
	if err != nil {
		return errName(err)
	}
	return fmt.Sprintf("%#x", f)
}

// allXattrs lists every extended attribute of p with its value (capabilities, ACLs, trusted.*
// and security.* as well as user.*), but the overlay's private ones, which neither the kernel
// nor layerfs shows in a merged view and which differ between their uppers by design.
func allXattrs(t testing.TB, p string) string {
	t.Helper()
	return xattrsWhere(t, p, keepAllButPrivate)
}

func keepAllButPrivate(name string) bool {
	return !strings.HasPrefix(name, "trusted.overlay.") && !strings.HasPrefix(name, "user.overlay.")
}

func userXattrs(t testing.TB, p string) string {
	t.Helper()
	return xattrsWhere(t, p, func(name string) bool { return strings.HasPrefix(name, "user.") })
}

// xattrsWhere is xattrList, failing t on an error.
func xattrsWhere(t testing.TB, p string, keep func(string) bool) string {
	t.Helper()
	x, err := xattrList(p, keep)
	if err != nil {
		t.Fatalf("attributes of %s: %v", p, err)
	}
	return x
}

// xattrList lists the attributes of p whose names keep accepts, sorted, as name=value pairs
// (the value quoted where it is not printable).
func xattrList(p string, keep func(string) bool) (string, error) {
	sz, err := unix.Llistxattr(p, nil)
	if err != nil || sz == 0 {
		return "", nil
	}
	buf := make([]byte, sz)
	sz, err = unix.Llistxattr(p, buf)
	if err != nil {
		return "", fmt.Errorf("listxattr: %w", err)
	}
	var pairs []string
	for _, name := range strings.Split(string(buf[:sz]), "\x00") {
		if name == "" || !keep(name) {
			continue
		}
		val := make([]byte, 4096)
		n, err := unix.Lgetxattr(p, name, val)
		if err != nil {
			return "", fmt.Errorf("getxattr %s: %w", name, err)
		}
		v := string(val[:n])
		if strings.ContainsFunc(v, func(r rune) bool { return r < ' ' || r > '~' }) {
			v = strconv.Quote(v)
		}
		pairs = append(pairs, name+"="+v)
	}
	sort.Strings(pairs)
	return strings.Join(pairs, ";"), nil
}

func typeName(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFREG:
		return "reg"
	case unix.S_IFDIR:
		return "dir"
	case unix.S_IFLNK:
		return "lnk"
	case unix.S_IFIFO:
		return "fifo"
	case unix.S_IFSOCK:
		return "sock"
	case unix.S_IFCHR:
		return "chr"
	case unix.S_IFBLK:
		return "blk"
	}
	return fmt.Sprintf("mode%o", mode&unix.S_IFMT)
}

func dtypeName(t uint8) string {
	switch t {
	case unix.DT_REG:
		return "reg"
	case unix.DT_DIR:
		return "dir"
	case unix.DT_LNK:
		return "lnk"
	case unix.DT_FIFO:
		return "fifo"
	case unix.DT_SOCK:
		return "sock"
	case unix.DT_CHR:
		return "chr"
	case unix.DT_BLK:
		return "blk"
	}
	return fmt.Sprintf("dtype%d", t)
}

type dirent struct {
	name string
	ino  uint64
	typ  uint8
}

// readDirents lists a directory with getdents64, keeping d_ino and d_type, which os.ReadDir
// does not show.
func readDirents(dir string) ([]dirent, error) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	var out []dirent
	buf := make([]byte, 64<<10)
	for {
		n, err := unix.Getdents(fd, buf)
		if err != nil {
			return nil, err
		}
		if n == 0 {
			return out, nil
		}
		for off := 0; off < n; {
			d := (*unix.Dirent)(unsafe.Pointer(&buf[off]))
			nameBytes := (*[256]byte)(unsafe.Pointer(&d.Name[0]))
			l := 0
			for l < len(nameBytes) && nameBytes[l] != 0 {
				l++
			}
			out = append(out, dirent{name: string(nameBytes[:l]), ino: d.Ino, typ: d.Type})
			off += int(d.Reclen)
		}
	}
}

// inodeGroups lists, for every inode shared by more than one name, the sorted names sharing it.
func (tr tree) inodeGroups() []string {
	byIno := map[uint64][]string{}
	for p, e := range tr {
		byIno[e.ino] = append(byIno[e.ino], p)
	}
	var groups []string
	for _, names := range byIno {
		if len(names) > 1 {
			sort.Strings(names)
			groups = append(groups, strings.Join(names, " = "))
		}
	}
	sort.Strings(groups)
	return groups
}

// compareTrees reports every difference between want (the kernel's view) and got.
func compareTrees(t testing.TB, want, got tree) {
	t.Helper()
	var paths []string
	for p := range want {
		paths = append(paths, p)
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			paths = append(paths, p)
		}
	}
	sort.Strings(paths)
	diffs := 0
	for _, p := range paths {
		w, inW := want[p]
		g, inG := got[p]
		switch {
		case !inW:
			t.Errorf("%s: shown by %s (%+v) but not by the kernel", p, testedName(), g)
		case !inG:
			t.Errorf("%s: shown by the kernel (%+v) but not by %s", p, w, testedName())
		case w != g && !equalButIno(w, g):
			t.Errorf("%s differs:\n kernel  %+v\n %-7s %+v", p, w, testedName(), g)
		default:
			continue
		}
		if diffs++; diffs > 30 {
			t.Fatalf("too many differences")
		}
	}
	wg, gg := want.inodeGroups(), got.inodeGroups()
	if strings.Join(wg, "\n") != strings.Join(gg, "\n") {
		t.Errorf("names sharing an inode differ:\n kernel  %q\n %-7s %q", wg, testedName(), gg)
	}
}

func equalButIno(a, b entry) bool {
	a.ino, b.ino = 0, 0
	return a == b
}
