package integration

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestIDMappingAsFuseOverlayfs runs the same steps with uidmapping/gidmapping, squashing and
// xattr_permissions on layerfs and on fuse-overlayfs, whose options these are, and compares
// what each shows; it also checks what layerfs stored.
func TestIDMappingAsFuseOverlayfs(t *testing.T) {
	needMounts(t)
	fo, err := exec.LookPath("fuse-overlayfs")
	if err != nil {
		skipTest(t, "fuse-overlayfs is not installed (.ci/run installs it): nothing to compare with")
	}
	const mapping = "uidmapping=0:1000:1:1:100000:65536,gidmapping=0:1000:1:1:100000:65536"
	const show = `stat -c "%n %u:%g %a" a b c d`
	cases := []struct {
		name, opts, steps string
	}{
		{"mapping", mapping, show + `
chown 100005:100006 a && stat -c "%n %u:%g" a
setpriv --reuid=1000 --regid=1000 --clear-groups sh -c "echo x > d/new" && stat -c "%n %u:%g" d/new
chown 70000 b 2>&1 | sed "s/.*: //"; stat -c "%n %u:%g" b`},
		{"squash_to_root", "squash_to_root", show},
		{"squash_to_uid", "squash_to_uid=7,squash_to_gid=8", show},
		{"xattr_permissions", "xattr_permissions=2", `chmod 600 a && chown 3:4 a && stat -c "%n %u:%g %a" a`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			outs := map[string]string{}
			var lst stack
			for _, prog := range []string{fo, bin} {
				root := t.TempDir()
				st := stack{Lowers: []string{mkdir(t, root, "l")}, Upper: mkdir(t, root, "u"), Work: mkdir(t, root, "w")}
				b := builder{t, st.Lowers[0]}
				b.file("a", "a", 0o644)
				b.file("b", "b", 0o644)
				b.chown("b", 1, 1)
				b.file("c", "c", 0o644)
				b.chown("c", 70000, 70000)
				b.dir("d", 0o755)
				must(t, unix.Chmod(b.p("d"), 0o777)) // writable for the mapped caller
				mnt := mkdir(t, root, "m")
				out, err := exec.Command(prog, "-o", st.options()+","+c.opts, mnt).CombinedOutput()
				if err != nil {
					t.Fatalf("%s: %v\n%s", prog, err, out)
				}
				t.Cleanup(func() { unmountFuse(t, mnt) })
				if prog == fo {
					t.Cleanup(func() { exec.Command("fusermount3", "-u", mnt).Run() })
				}
				outs[prog] = execIn(mnt, c.steps)
				if prog == bin {
					lst = st
				}
			}
			if outs[fo] != outs[bin] {
				t.Errorf("fuse-overlayfs:\n%s\n%s:\n%s", outs[fo], testedName(), outs[bin])
			}
			t.Logf("%s:\n%s", testedName(), outs[bin])
			switch c.name {
			case "mapping":
				// a: shown 100005:100006 is stored 1+5:1+6; d/new: the caller's 1000 is stored 0.
				for p, want := range map[string][2]uint32{"a": {6, 7}, "d/new": {0, 0}} {
					var s unix.Stat_t
					must(t, unix.Lstat(filepath.Join(lst.Upper, p), &s))
					if s.Uid != want[0] || s.Gid != want[1] {
						t.Errorf("upper %s is owned by %d:%d, want %d:%d", p, s.Uid, s.Gid, want[0], want[1])
					}
				}
			case "xattr_permissions":
				buf := make([]byte, 64)
				n, err := unix.Lgetxattr(filepath.Join(lst.Upper, "a"), "user.fuseoverlayfs.override_stat", buf)
				var s unix.Stat_t
				must(t, unix.Lstat(filepath.Join(lst.Upper, "a"), &s))
				if err != nil || string(buf[:n]) != "3:4:0600" || s.Uid != 0 || s.Mode&0o777 != 0o644 {
					t.Errorf("upper a: override %q (%v), real %d:%d %o", buf[:max(n, 0)], err, s.Uid, s.Gid, s.Mode&0o777)
				}
			}
			if !strings.Contains(outs[bin], "a ") {
				t.Errorf("no output: %q", outs[bin])
			}
		})
	}
}
