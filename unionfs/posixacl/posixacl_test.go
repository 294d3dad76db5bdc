package posixacl

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestRoundTrip(t *testing.T) {
	acl := []Entry{{TagUserObj, 7, 0}, {TagUser, 5, 1234}, {TagGroupObj, 5, 0}, {TagMask, 7, 0}, {TagOther, 0, 0}}
	for i := range acl {
		if acl[i].Tag != TagUser && acl[i].Tag != TagGroup {
			acl[i].ID = 0xffffffff
		}
	}
	got, err := Parse(Marshal(acl))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(acl) {
		t.Fatalf("got %v", got)
	}
	for i := range acl {
		if got[i] != acl[i] {
			t.Errorf("entry %d: %v, want %v", i, got[i], acl[i])
		}
	}
	for _, bad := range [][]byte{nil, {2, 0, 0}, {1, 0, 0, 0}, {2, 0, 0, 0, 1}} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("Parse(%x) accepted", bad)
		}
	}
}

func TestInherit(t *testing.T) {
	full := func(entries ...Entry) []byte { return Marshal(entries) }
	// default: user::rwx user:1234:rwx group::r-x mask::rwx other::r-x
	withUser := full(Entry{TagUserObj, 7, 0}, Entry{TagUser, 7, 1234}, Entry{TagGroupObj, 5, 0}, Entry{TagMask, 7, 0}, Entry{TagOther, 5, 0})
	// default: user::rwx group::r-x other::---
	minimal := full(Entry{TagUserObj, 7, 0}, Entry{TagGroupObj, 5, 0}, Entry{TagOther, 0, 0})
	cases := []struct {
		def        []byte
		mode, want uint32
		access     bool
	}{
		{withUser, 0o666, 0o664, true},
		{withUser, 0o777 | unix.S_IFDIR, 0o775 | unix.S_IFDIR, true},
		{withUser, 0o600, 0o600, true},
		{minimal, 0o666, 0o640, false},
		{minimal, 0o4777, 0o4750, false},
	}
	for _, c := range cases {
		got, access, err := Inherit(c.def, c.mode)
		if err != nil {
			t.Fatal(err)
		}
		if got != c.want || (access != nil) != c.access {
			t.Errorf("Inherit(mode %o) = %o, access %v; want %o, %v", c.mode, got, access != nil, c.want, c.access)
		}
	}
}

// TestInheritMatchesKernel creates files and directories under a directory with a default
// ACL on the real filesystem and checks that Inherit predicts the mode and the ACL the kernel
// gave them.
func TestInheritMatchesKernel(t *testing.T) {
	if _, err := exec.LookPath("setfacl"); err != nil {
		t.Skip("setfacl not installed (Debian package acl; CI installs it)")
	}
	dir := t.TempDir()
	defaults := []string{"u:1234:rwx", "g:99:r", "o::-", "m::rw"}
	for i, d := range defaults {
		sub := filepath.Join(dir, "d"+string(rune('0'+i)))
		if err := os.Mkdir(sub, 0o755); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command("setfacl", "-d", "-m", d, sub).CombinedOutput(); err != nil {
			if strings.Contains(string(out), "Operation not supported") {
				t.Skip("the temporary directory's filesystem has no ACLs")
			}
			t.Fatalf("setfacl: %v %s", err, out)
		}
		def := getxattr(t, sub, DefaultXattr)
		old := unix.Umask(0o022)
		for _, mode := range []uint32{0o666, 0o640, 0o777, 0o711} {
			f := filepath.Join(sub, "f")
			fd, err := unix.Open(f, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY, mode)
			if err != nil {
				t.Fatal(err)
			}
			unix.Close(fd)
			checkInherit(t, f, def, mode)
			os.Remove(f)
			if err := unix.Mkdir(f, mode); err != nil {
				t.Fatal(err)
			}
			checkInherit(t, f, def, mode|unix.S_IFDIR)
			if got := getxattr(t, f, DefaultXattr); !bytes.Equal(got, def) {
				t.Errorf("%s: directory's default ACL %x, want the parent's %x", d, got, def)
			}
			os.Remove(f)
		}
		unix.Umask(old)
	}
}

func checkInherit(t *testing.T, p string, def []byte, mode uint32) {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	want, access, err := Inherit(def, mode)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode&07777 != want&07777 {
		t.Errorf("mode %o in %x: kernel gave %o, Inherit %o", mode, def, st.Mode&07777, want&07777)
	}
	got := getxattr(t, p, AccessXattr)
	if !bytes.Equal(got, access) {
		t.Errorf("mode %o in %x: kernel's access ACL %x, Inherit's %x", mode, def, got, access)
	}
}

func getxattr(t *testing.T, p, name string) []byte {
	t.Helper()
	buf := make([]byte, 1024)
	n, err := unix.Lgetxattr(p, name, buf)
	if err == unix.ENODATA {
		return nil
	}
	if err != nil {
		t.Fatalf("getxattr %s %s: %v", p, name, err)
	}
	return buf[:n]
}
