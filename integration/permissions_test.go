package integration

import (
	"os"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestPermissionsAndMountFlags: another user reaches a root mount (allow_other) under the
// kernel's own permission checks against the merged attributes (default_permissions), and
// nodev, nosuid and noexec hold, step by step as on the kernel's overlayfs.
func TestPermissionsAndMountFlags(t *testing.T) {
	needMounts(t)
	u, root, _ := userWorkspace(t)
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	lower := mkdir(t, root, "lower")
	b := builder{t, lower}
	b.file("secret", "s\n", 0o600)
	b.file("pub", "p\n", 0o644)
	b.file("mine", "m\n", 0o644)
	b.chown("mine", uid, gid)
	b.dir("userdir", 0o755)
	b.chown("userdir", uid, gid)
	b.dir("private", 0o700)
	b.file("private/x", "x\n", 0o644)
	b.file("script", "#!/bin/sh\necho ran\n", 0o755)
	idData, err := os.ReadFile("/usr/bin/id")
	must(t, err)
	b.file("suid-id", string(idData), 0o755)
	must(t, unix.Chmod(b.p("suid-id"), 0o4755)) // os.Chmod wants os.ModeSetuid
	must(t, unix.Mknod(b.p("null"), unix.S_IFCHR, int(unix.Mkdev(1, 3))))
	must(t, unix.Chmod(b.p("null"), 0o666)) // past the umask
	b.settle()

	steps := []string{
		"cat pub", "cat secret", "ls private", "cat private/x",
		"echo more >> pub", "echo more >> mine && cat mine", "touch new",
		"touch userdir/new && stat -c %U userdir/new", "chmod 777 pub", "rm pub",
		"./script", "./suid-id -u", "cat null && echo read-null", "echo x > null && echo wrote-null",
	}
	for _, flags := range []string{"", "nodev,nosuid", "noexec"} {
		t.Run("flags="+flags, func(t *testing.T) {
			results := map[string][]string{}
			for _, side := range []string{"kernel", testedName()} {
				dir := mkdir(t, root, side+strings.ReplaceAll(flags, ",", "-"))
				st := stack{Lowers: []string{lower}, Upper: mkdir(t, dir, "upper"), Work: mkdir(t, dir, "work")}
				mnt := mkdir(t, dir, "mnt")
				must(t, os.Chmod(dir, 0o755))
				if side == "kernel" {
					var mf uintptr
					for name, f := range map[string]uintptr{"nodev": unix.MS_NODEV, "nosuid": unix.MS_NOSUID, "noexec": unix.MS_NOEXEC} {
						if strings.Contains(flags, name) {
							mf |= f
						}
					}
					must(t, unix.Mount("overlay", mnt, "overlay", mf, st.options()))
					t.Cleanup(func() { unix.Unmount(mnt, unix.MNT_DETACH) })
				} else if flags != "" {
					mountLayerfs(t, st, mnt, "-o", flags)
				} else {
					mountLayerfs(t, st, mnt)
				}
				for _, step := range steps {
					out, err := asUser(t, "cd "+mnt+" && "+step+" 2>&1")
					s := strings.TrimSpace(out)
					if err != nil {
						s += " [failed]"
					}
					results[side] = append(results[side], s)
				}
			}
			k, l := results["kernel"], results[testedName()]
			for i, step := range steps {
				t.Logf("%-44s kernel: %-44q %s: %q", step, k[i], testedName(), l[i])
				if k[i] != l[i] {
					t.Errorf("%s as %s: kernel %q, %s %q", step, rootlessUser, k[i], testedName(), l[i])
				}
			}
			want := map[string]string{"cat secret": "Permission denied", "echo more >> pub": "Permission denied",
				"touch userdir/new && stat -c %U userdir/new": rootlessUser, "chmod 777 pub": "Operation not permitted"}
			want["./suid-id -u"], want["./script"] = "0", "ran"
			want["cat null && echo read-null"], want["echo x > null && echo wrote-null"] = "read-null", "wrote-null"
			if strings.Contains(flags, "nosuid") {
				want["./suid-id -u"] = u.Uid
			}
			if strings.Contains(flags, "nodev") {
				want["cat null && echo read-null"], want["echo x > null && echo wrote-null"] = "Permission denied", "Permission denied"
			}
			if strings.Contains(flags, "noexec") {
				want["./suid-id -u"], want["./script"] = "Permission denied", "Permission denied"
			}
			for i, step := range steps {
				if w, ok := want[step]; ok && l[i] != w && !strings.Contains(l[i], ": "+w) {
					t.Errorf("%s as %s: %q, want %q", step, rootlessUser, l[i], w)
				}
			}
		})
	}
}
