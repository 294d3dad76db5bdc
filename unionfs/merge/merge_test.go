package merge

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// plainIdentity shows every object's own number and link count.
type plainIdentity struct{}

func (plainIdentity) InoOf(l *Layer, ino uint64) uint64                { return ino }
func (plainIdentity) OriginIno(int, string) (uint64, bool, XattrFacts) { return 0, false, 0 }
func (plainIdentity) OverrideType(*Layer, int, string) (uint32, bool)  { return 0, false }
func (plainIdentity) MergedNlink(_ int, _ string, st *unix.Stat_t) uint64 {
	return uint64(st.Nlink)
}

// newStack builds one layer per spec, topmost first, and opens them as a Stack; with upper
// the first is the upper layer. A spec line is one object:
//
//	d PATH           a directory
//	f PATH           a file
//	w PATH           a whiteout: character device 0/0 (needs root)
//	x PATH           an xattr whiteout: an empty file with user.overlay.whiteout
//	a PATH           an AUFS whiteout: the file .wh.NAME beside where NAME would be
//	o PATH VALUE     user.overlay.opaque=VALUE on directory PATH
//	r PATH VALUE     user.overlay.redirect=VALUE on directory PATH
//
// Parents are made as needed.
func newStack(t *testing.T, upper bool, specs ...[]string) *Stack {
	t.Helper()
	s := &Stack{FollowRedirects: true, Identity: plainIdentity{}}
	for i, spec := range specs {
		dir := t.TempDir()
		for _, line := range spec {
			f := strings.Fields(line)
			p := filepath.Join(dir, f[1])
			if f[0] != "o" && f[0] != "r" {
				check(t, os.MkdirAll(filepath.Dir(p), 0o755))
			}
			switch f[0] {
			case "d":
				check(t, os.MkdirAll(p, 0o755))
			case "f":
				check(t, os.WriteFile(p, []byte(f[1]), 0o644))
			case "w":
				if os.Geteuid() != 0 {
					t.Skip("a character-device whiteout needs root (CI runs as root)")
				}
				check(t, unix.Mknod(p, unix.S_IFCHR, 0))
			case "x":
				check(t, os.WriteFile(p, nil, 0o644))
				check(t, unix.Lsetxattr(p, "user.overlay.whiteout", nil, 0))
			case "a":
				check(t, os.WriteFile(filepath.Join(filepath.Dir(p), ".wh."+filepath.Base(p)), nil, 0o644))
			case "o", "r":
				attr := map[string]string{"o": "user.overlay.opaque", "r": "user.overlay.redirect"}[f[0]]
				check(t, unix.Lsetxattr(p, attr, []byte(f[2]), 0))
			default:
				t.Fatalf("bad spec line %q", line)
			}
		}
		l, err := OpenLayer(dir)
		check(t, err)
		l.Index, l.Upper = i, upper && i == 0
		l.Alone = []Part{{Layer: i}}
		t.Cleanup(l.Close)
		s.Layers = append(s.Layers, l)
	}
	return s
}

func check(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// where renders a resolution's parts as "layer:path …".
func where(r Resolution) string {
	var out []string
	for _, p := range r.Parts {
		out = append(out, strings.Join([]string{string(rune('0' + p.Layer)), p.Path}, ":"))
	}
	return strings.Join(out, " ")
}

func TestResolve(t *testing.T) {
	for _, tc := range []struct {
		name   string
		upper  bool
		layers [][]string
		path   string
		want   string        // the parts, topmost first
		errno  syscall.Errno // or the error
	}{
		{name: "lower only", layers: [][]string{{"d x"}, {"f a"}}, path: "a", want: "1:a"},
		{name: "upper hides lower file", upper: true, layers: [][]string{{"f a"}, {"f a"}}, path: "a", want: "0:a"},
		{name: "absent everywhere", layers: [][]string{{"d x"}, {"d y"}}, path: "a", errno: syscall.ENOENT},
		{name: "device whiteout", upper: true, layers: [][]string{{"w a"}, {"f a"}}, path: "a", errno: syscall.ENOENT},
		{name: "device whiteout hides a directory", layers: [][]string{{"w a"}, {"d a"}}, path: "a", errno: syscall.ENOENT},
		{name: "device whiteout in the bottom layer", layers: [][]string{{"d x"}, {"w a"}}, path: "a", errno: syscall.ENOENT},
		{name: "xattr whiteout in a lower", layers: [][]string{{"x a"}, {"f a"}}, path: "a", errno: syscall.ENOENT},
		{name: "xattr whiteout in the upper is a file", upper: true, layers: [][]string{{"x a"}, {"f a"}}, path: "a", want: "0:a"},
		{name: "aufs whiteout hides below", layers: [][]string{{"a a"}, {"f a"}}, path: "a", errno: syscall.ENOENT},
		{name: "aufs whiteout hides every layer below", layers: [][]string{{"a a"}, {"d y"}, {"f a"}}, path: "a", errno: syscall.ENOENT},
		{name: "aufs marker is not a name", layers: [][]string{{"a a"}, {"d y"}}, path: ".wh.a", want: "0:.wh.a"},
		{name: "directories merge", upper: true, layers: [][]string{{"d a"}, {"d a"}, {"d a"}}, path: "a", want: "0:a 1:a 2:a"},
		{name: "opaque stops the merge", upper: true, layers: [][]string{{"d a", "o a y"}, {"d a"}}, path: "a", want: "0:a"},
		{name: "opaque in the middle", layers: [][]string{{"d a"}, {"d a", "o a y"}, {"d a"}}, path: "a", want: "0:a 1:a"},
		{name: "opaque=x is not opaque", layers: [][]string{{"d a", "o a x"}, {"d a"}}, path: "a", want: "0:a 1:a"},
		{name: "opaque marker file", layers: [][]string{{"d a", "f a/.wh..wh..opq"}, {"d a"}}, path: "a", want: "0:a"},
		{name: "file below ends the merge", layers: [][]string{{"d a"}, {"f a"}, {"d a"}}, path: "a", want: "0:a"},
		{name: "file over a directory", upper: true, layers: [][]string{{"f a"}, {"d a"}}, path: "a", want: "0:a"},
		{name: "whiteout below a directory ends the merge", layers: [][]string{{"d a"}, {"w a"}, {"d a"}}, path: "a", want: "0:a"},
		{name: "deep path", layers: [][]string{{"d a/b"}, {"f a/b/c"}}, path: "a/b/c", want: "1:a/b/c"},
		{name: "whiteout of a parent", layers: [][]string{{"d x", "w a"}, {"f a/b"}}, path: "a/b", errno: syscall.ENOENT},
		{name: "relative redirect", upper: true, layers: [][]string{{"d b", "r b a"}, {"d a", "f a/in"}}, path: "b", want: "0:b 1:a"},
		{name: "relative redirect, child", upper: true, layers: [][]string{{"d b", "r b a"}, {"d a", "f a/in"}}, path: "b/in", want: "1:a/in"},
		{name: "absolute redirect", upper: true, layers: [][]string{{"d n/b", "r n/b /o/a"}, {"d o/a"}}, path: "n/b", want: "0:n/b 1:o/a"},
		{name: "redirect to nothing", upper: true, layers: [][]string{{"d b", "r b gone"}, {"d a"}}, path: "b", want: "0:b"},
		{name: "dot redirect", layers: [][]string{{"d b", "r b ."}, {"d a"}}, path: "b", errno: syscall.EACCES},
		{name: "relative redirect with a slash", layers: [][]string{{"d b", "r b a/c"}, {"d a/c"}}, path: "b", errno: syscall.EINVAL},
		{name: "empty element", layers: [][]string{{"d b", "r b /a//c"}, {"d a/c"}}, path: "b", errno: syscall.EINVAL},
		{name: "dot-dot element", layers: [][]string{{"d b", "r b /a/.."}, {"d a"}}, path: "b", errno: syscall.EACCES},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newStack(t, tc.upper, tc.layers...)
			res, errno := s.ResolvePath(tc.path)
			if errno != tc.errno {
				t.Fatalf("resolve %s: errno %v, want %v (parts %s)", tc.path, errno, tc.errno, where(res))
			}
			if errno == 0 && where(res) != tc.want {
				t.Errorf("resolve %s: parts %s, want %s", tc.path, where(res), tc.want)
			}
		})
	}
}

// TestRedirectNoFollow: with redirect_dir=nofollow a redirect is not followed, and a
// malformed one does not fail the lookup.
func TestRedirectNoFollow(t *testing.T) {
	s := newStack(t, true, []string{"d b", "r b a", "d c", "r c /x//y"}, []string{"d a", "d b"})
	s.FollowRedirects = false
	for path, want := range map[string]string{"b": "0:b 1:b", "c": "0:c"} {
		res, errno := s.ResolvePath(path)
		if errno != 0 || where(res) != want {
			t.Errorf("resolve %s: %s, %v; want %s", path, where(res), errno, want)
		}
	}
}

// TestEntries: a listing applies the same rules as lookup, except that an xattr whiteout
// hides its name only in a directory marked opaque=x (as the kernel lists it).
func TestEntries(t *testing.T) {
	s := newStack(t, true,
		[]string{"f top", "f both", "a gone", "d dir", "f dir/u"},
		[]string{"f both", "f low", "x xwh", "f gone", "d dir", "f dir/l", "d xdir", "o xdir x", "x xdir/hidden", "f xdir/shown"},
		[]string{"f bottom", "f low", "f gone"})
	if os.Geteuid() == 0 {
		check(t, unix.Mknod(filepath.Join(layerPath(s, 0), "bottom"), unix.S_IFCHR, 0))
	}
	root := []Part{{Layer: 0}, {Layer: 1}, {Layer: 2}}
	ents, from, errno := s.Entries(root, 0)
	if errno != 0 {
		t.Fatal(errno)
	}
	got := map[string]int{}
	for i, e := range ents {
		got[e.Name] = from[i]
	}
	want := map[string]int{"top": 0, "both": 0, "dir": 0, "low": 1, "xwh": 1, "xdir": 1, "bottom": 2}
	if os.Geteuid() == 0 {
		delete(want, "bottom") // whited out by the device made above
	}
	if !mapsEqual(got, want) {
		t.Errorf("root lists %v, want %v (name: part)", got, want)
	}
	// The listing shows xwh; a lookup of it finds nothing.
	if _, errno := s.ResolvePath("xwh"); errno != syscall.ENOENT {
		t.Errorf("lookup of xwh: %v, want ENOENT", errno)
	}
	res, errno := s.ResolvePath("xdir")
	check(t, errnoErr(errno))
	ents, _, errno = s.Entries(res.Parts, 0)
	check(t, errnoErr(errno))
	if names := entryNames(ents); !slices.Equal(names, []string{"shown"}) {
		t.Errorf("xdir lists %v, want [shown]", names)
	}
	// A limit stops the listing.
	if ents, _, _ := s.Entries(root, 2); len(ents) != 2 {
		t.Errorf("limit 2: %d entries", len(ents))
	}
}

func layerPath(s *Stack, i int) string { return s.Layers[i].Path }

func entryNames(ents []Entry) []string {
	var out []string
	for _, e := range ents {
		out = append(out, e.Name)
	}
	slices.Sort(out)
	return out
}

func mapsEqual(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func errnoErr(e syscall.Errno) error {
	if e == 0 {
		return nil
	}
	return e
}

// countingIdentity counts the identity reads of upper non-directories.
type countingIdentity struct {
	plainIdentity
	origins, nlinks int
}

func (c *countingIdentity) OriginIno(int, string) (uint64, bool, XattrFacts) {
	c.origins++
	return 7, true, XattrsListed | XattrsNone
}

func (c *countingIdentity) MergedNlink(_ int, _ string, st *unix.Stat_t) uint64 {
	c.nlinks++
	return uint64(st.Nlink)
}

// TestResolvePlace: ResolvePlace finds what Resolve finds, where it lives, without reading
// an upper file's merged identity (a removal's lookup: remove.go).
func TestResolvePlace(t *testing.T) {
	s := newStack(t, true, []string{"f up", "d dir"}, []string{"f low", "d dir"})
	id := &countingIdentity{}
	s.Identity = id
	for _, name := range []string{"up", "low", "dir"} {
		dirs := s.NewDirs([]Part{{Layer: 0}, {Layer: 1}})
		full, errno := s.Resolve(dirs, name)
		dirs.Release()
		if errno != 0 {
			t.Fatalf("Resolve %s: %v", name, errno)
		}
		before := *id
		dirs = s.NewDirs([]Part{{Layer: 0}, {Layer: 1}})
		place, errno := s.ResolvePlace(dirs, name)
		dirs.Release()
		if errno != 0 {
			t.Fatalf("ResolvePlace %s: %v", name, errno)
		}
		if where(place) != where(full) || place.St.Ino != full.St.Ino || place.St.Mode != full.St.Mode {
			t.Errorf("%s: ResolvePlace found %s (ino %d), Resolve %s (ino %d)", name, where(place), place.St.Ino, where(full), full.St.Ino)
		}
		if id.origins != before.origins || id.nlinks != before.nlinks {
			t.Errorf("%s: ResolvePlace read the merged identity", name)
		}
		if place.Xattrs != 0 {
			t.Errorf("%s: ResolvePlace reports xattr facts %b", name, place.Xattrs)
		}
	}
	if id.origins != 1 || id.nlinks != 1 {
		t.Errorf("Resolve read %d origins and %d link counts for one upper file, want 1 and 1", id.origins, id.nlinks)
	}
}
