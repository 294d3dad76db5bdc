package whiteout

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestHiddenName(t *testing.T) {
	cases := []struct {
		in     string
		hidden string
		ok     bool
	}{
		{".wh.foo", "foo", true},
		{".wh..hidden", ".hidden", true},
		{".wh..wh..opq", "", false},
		{".wh.", "", false},
		{"foo", "", false},
		{".whfoo", "", false},
	}
	for _, c := range cases {
		h, ok := HiddenName(c.in)
		if h != c.hidden || ok != c.ok {
			t.Errorf("HiddenName(%q) = %q, %v; want %q, %v", c.in, h, ok, c.hidden, c.ok)
		}
		if IsMarkerName(c.in) != (len(c.in) >= 4 && c.in[:4] == ".wh.") {
			t.Errorf("IsMarkerName(%q) wrong", c.in)
		}
	}
}

func TestIsPrivateXattr(t *testing.T) {
	for name, want := range map[string]bool{
		"trusted.overlay.opaque": true,
		"user.overlay.opaque":    true,
		"trusted.overlay.origin": true,
		"user.overlayfoo":        false,
		"user.color":             false,
		"security.selinux":       false,
		"trusted.other":          false,
	} {
		if got := IsPrivateXattr(name); got != want {
			t.Errorf("IsPrivateXattr(%q) = %v", name, got)
		}
	}
}

// fixture makes a directory holding one object per marker kind and returns an O_PATH fd for it.
func fixture(t *testing.T) int {
	t.Helper()
	dir := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(filepath.Join(dir, "plain"), []byte("x"), 0o644))
	must(os.WriteFile(filepath.Join(dir, "empty"), nil, 0o644))
	must(os.WriteFile(filepath.Join(dir, ".wh.gone"), nil, 0o644))
	must(os.Mkdir(filepath.Join(dir, "opaqueY"), 0o755))
	must(os.Mkdir(filepath.Join(dir, "opaqueX"), 0o755))
	must(os.Mkdir(filepath.Join(dir, "opaqueOdd"), 0o755))
	must(os.Mkdir(filepath.Join(dir, "aufsOpaque"), 0o755))
	must(os.WriteFile(filepath.Join(dir, "aufsOpaque", OpaqueFile), nil, 0o644))
	must(os.Mkdir(filepath.Join(dir, "plainDir"), 0o755))
	if os.Geteuid() == 0 {
		must(unix.Mknod(filepath.Join(dir, "wh"), unix.S_IFCHR, 0))
		must(unix.Mknod(filepath.Join(dir, "notwh"), unix.S_IFCHR, int(unix.Mkdev(1, 3))))
		must(unix.Setxattr(filepath.Join(dir, "opaqueY"), TrustedPrefix+OpaqueAttr, []byte("y"), 0))
		must(unix.Setxattr(filepath.Join(dir, "opaqueX"), TrustedPrefix+OpaqueAttr, []byte("x"), 0))
		must(unix.Setxattr(filepath.Join(dir, "empty"), TrustedPrefix+WhiteoutAttr, nil, 0))
	} else {
		must(unix.Setxattr(filepath.Join(dir, "opaqueY"), UserPrefix+OpaqueAttr, []byte("y"), 0))
		must(unix.Setxattr(filepath.Join(dir, "opaqueX"), UserPrefix+OpaqueAttr, []byte("x"), 0))
		must(unix.Setxattr(filepath.Join(dir, "empty"), UserPrefix+WhiteoutAttr, nil, 0))
	}
	must(unix.Setxattr(filepath.Join(dir, "opaqueOdd"), UserPrefix+OpaqueAttr, []byte("yes"), 0))
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY, 0)
	must(err)
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

func TestReadDirInfo(t *testing.T) {
	fd := fixture(t)
	cases := map[string]DirInfo{
		"opaqueY":    {Opaque: true},
		"opaqueX":    {XWhiteouts: true},
		"opaqueOdd":  {}, // an unknown value is neither, as for the kernel
		"aufsOpaque": {Opaque: true},
		"plainDir":   {},
	}
	for name, want := range cases {
		got, err := ReadDirInfo(fd, name)
		if err != nil || got != want {
			t.Errorf("ReadDirInfo(%s) = %+v, %v; want %+v", name, got, err, want)
		}
	}
}

func TestWhiteoutKinds(t *testing.T) {
	fd := fixture(t)
	stat := func(name string) *unix.Stat_t {
		var st unix.Stat_t
		if err := unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			t.Fatal(err)
		}
		return &st
	}
	if os.Geteuid() == 0 {
		if !IsWhiteoutDev(stat("wh")) {
			t.Error("char 0/0 is not a whiteout")
		}
		if IsWhiteoutDev(stat("notwh")) {
			t.Error("char 1/3 is a whiteout")
		}
	}
	if IsWhiteoutDev(stat("plain")) {
		t.Error("a regular file is a whiteout device")
	}
	if ok, err := IsXWhiteout(fd, "empty", stat("empty")); !ok || err != nil {
		t.Errorf("empty file with whiteout xattr: %v %v", ok, err)
	}
	if ok, _ := IsXWhiteout(fd, "plain", stat("plain")); ok {
		t.Error("plain file is an xattr whiteout")
	}
	if ok, err := HasAufsWhiteout(fd, "gone"); !ok || err != nil {
		t.Errorf("HasAufsWhiteout(gone) = %v %v", ok, err)
	}
	if ok, _ := HasAufsWhiteout(fd, "plain"); ok {
		t.Error("HasAufsWhiteout(plain) = true")
	}
}

// FuzzClassifyName: the name classifiers never panic and agree with each other.
func FuzzClassifyName(f *testing.F) {
	for _, s := range []string{".wh.foo", ".wh..wh..opq", ".wh.", "", "foo", ".wh.\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		hidden, ok := HiddenName(name)
		if ok && (!IsMarkerName(name) || Prefix+hidden != name || hidden == "") {
			t.Errorf("HiddenName(%q) = %q, inconsistent", name, hidden)
		}
		if !IsMarkerName(name) && ok {
			t.Errorf("%q hides a name but is no marker", name)
		}
	})
}

// FuzzReadDirInfo: for any opaque attribute value and any entry name, a directory is opaque
// exactly when the value is "y" or it holds ".wh..wh..opq", and marks xattr whiteouts exactly
// when the value is "x" (an opaque directory may hold them too); an empty file with the
// whiteout attribute is a whiteout, others not.
func FuzzReadDirInfo(f *testing.F) {
	f.Add([]byte("y"), ".wh..wh..opq", []byte{})
	f.Add([]byte("x"), "file", []byte("data"))
	f.Add([]byte("yes"), ".wh.foo", []byte{})
	root := f.TempDir()
	prefix := UserPrefix
	if os.Geteuid() == 0 {
		prefix = TrustedPrefix
	}
	n := 0
	f.Fuzz(func(t *testing.T, value []byte, name string, content []byte) {
		if name == "" || name == "." || name == ".." || len(name) > 255 || strings.ContainsAny(name, "/\x00") {
			return
		}
		n++
		dir := filepath.Join(root, strconv.Itoa(n))
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(dir)
		if len(value) > 0 {
			if err := unix.Setxattr(dir, prefix+OpaqueAttr, value, 0); err != nil {
				t.Skip(err)
			}
		}
		entry := filepath.Join(dir, name)
		if err := os.WriteFile(entry, content, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := unix.Setxattr(entry, prefix+WhiteoutAttr, nil, 0); err != nil {
			t.Skip(err)
		}
		fd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(fd)
		info, err := ReadDirInfo(fd, strconv.Itoa(n))
		if err != nil {
			t.Fatal(err)
		}
		wantOpaque := string(value) == "y" || name == OpaqueFile
		if info.Opaque != wantOpaque || info.XWhiteouts != (string(value) == "x") {
			t.Errorf("value %q, entry %q: %+v", value, name, info)
		}
		dfd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(dfd)
		var st unix.Stat_t
		if err := unix.Fstatat(dfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			t.Fatal(err)
		}
		if wh, err := IsXWhiteout(dfd, name, &st); err != nil || wh != (len(content) == 0) {
			t.Errorf("IsXWhiteout(%q, %d bytes) = %v, %v", name, len(content), wh, err)
		}
	})
}
