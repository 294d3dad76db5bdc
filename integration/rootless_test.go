package integration

import (
	"bufio"
	"context"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// rootlessUser is the unprivileged account the rootless tests run layerfs as; .ci/run makes it.
const rootlessUser = "layerfs-test"

// asUser runs a shell script as the unprivileged user and returns its output.
func asUser(t *testing.T, script string) (string, error) {
	t.Helper()
	out, err := exec.Command("su", rootlessUser, "-s", "/bin/sh", "-c", script).CombinedOutput()
	return string(out), err
}

// userWorkspace looks the unprivileged test user up (skipping t without it) and makes a
// directory that user can reach, holding a copy of the program under test it may run; it
// returns the user, the directory and the program's path there.
func userWorkspace(t *testing.T) (*user.User, string, string) {
	t.Helper()
	u, err := user.Lookup(rootlessUser)
	if err != nil {
		skipTest(t, "no user %s to run as (.ci/run creates it): %v", rootlessUser, err)
	}
	root := t.TempDir()
	must(t, os.Chmod(root, 0o755))
	must(t, os.Chmod(filepath.Dir(root), 0o755))
	// Named as the program under test, so serverPids finds the servers it starts.
	ubin := filepath.Join(mkdir(t, root, "bin"), filepath.Base(bin))
	data, err := os.ReadFile(bin)
	must(t, err)
	must(t, os.WriteFile(ubin, data, 0o755))
	return u, root, ubin
}

// TestRootless mounts as an unprivileged user through fusermount3: the markers it writes are
// user.overlay.* and char 0/0 whiteouts, and the kernel's overlayfs in userxattr mode shows
// the upper it wrote the same way.
func TestRootless(t *testing.T) {
	needMounts(t)
	u, root, ubin := userWorkspace(t)
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	st := stack{Lowers: []string{root + "/l"}, Upper: root + "/u", Work: root + "/w"}
	lower := builder{t, st.Lowers[0]}
	lower.file("a", "a\n", 0o644)
	lower.file("gone", "g", 0o644)
	lower.file("d/old", "o", 0o644)
	lower.settle()
	mnt := root + "/m"
	for _, d := range []string{root + "/l", root + "/l/d", st.Upper, st.Work, mnt} {
		mkdir(t, d, "")
		must(t, os.Lchown(d, uid, gid))
	}
	for _, f := range []string{"a", "gone", "d/old"} {
		must(t, os.Lchown(filepath.Join(st.Lowers[0], f), uid, gid))
	}
	t.Cleanup(func() {
		asUser(t, "fusermount3 -u "+mnt)
		unmountFuse(t, mnt)
	})
	out, err := asUser(t, ubin+" -o "+st.options()+" "+mnt+
		" && echo more >> "+mnt+"/a && rm "+mnt+"/gone && rm -rf "+mnt+"/d && mkdir "+mnt+"/d && echo n > "+mnt+"/d/new"+
		" && cat "+mnt+"/a && ls "+mnt+" "+mnt+"/d && fusermount3 -u "+mnt)
	if err != nil {
		t.Fatalf("as %s: %v\n%s", rootlessUser, err, out)
	}
	if !strings.Contains(out, "a\nmore") || strings.Contains(out, "gone") || strings.Contains(out, "old") {
		t.Errorf("the user's view:\n%s", out)
	}
	var ws unix.Stat_t
	must(t, unix.Lstat(filepath.Join(st.Upper, "gone"), &ws))
	if ws.Mode&unix.S_IFMT != unix.S_IFCHR || ws.Rdev != 0 {
		t.Errorf("rootless whiteout is mode %o rdev %d, want a char 0/0 device", ws.Mode, ws.Rdev)
	}
	buf := make([]byte, 8)
	if n, err := unix.Lgetxattr(filepath.Join(st.Upper, "d"), "user.overlay.opaque", buf); err != nil || string(buf[:n]) != "y" {
		t.Errorf("recreated d: user.overlay.opaque %q %v", buf[:n], err)
	}
	if _, err := unix.Lgetxattr(filepath.Join(st.Upper, "d"), "trusted.overlay.opaque", buf); err == nil {
		t.Error("a rootless mount wrote trusted.overlay.opaque")
	}
	// Without access to /dev/fuse the user is told what is missing, not an exit code.
	fi, err := os.Stat("/dev/fuse")
	must(t, err)
	t.Cleanup(func() { os.Chmod("/dev/fuse", fi.Mode().Perm()) })
	must(t, os.Chmod("/dev/fuse", 0o600))
	out, err = asUser(t, ubin+" -o "+st.options()+" "+mnt)
	must(t, os.Chmod("/dev/fuse", fi.Mode().Perm()))
	if err == nil || !strings.Contains(out, "/dev/fuse") || strings.Count(strings.TrimSpace(out), "\n") != 0 {
		t.Errorf("mount without access to /dev/fuse: %v\n%s", err, out)
	}

	kmnt := mkdir(t, root, "k")
	mountKernel(t, st, kmnt, "userxattr")
	view := snapshot(t, kmnt, false)
	if got := strings.Join(sortedKeys(view), " "); got != "a d d/new" {
		t.Errorf("the kernel (userxattr) shows %q of the rootless upper, want \"a d d/new\"", got)
	}
}

func sortedKeys(tr tree) []string {
	var out []string
	for p := range tr {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}

// TestUserNamespace runs layerfs as uid 0 of a user namespace an unprivileged user made
// (unshare -Urm, as podman unshare does): it mounts directly, writes user.overlay.* markers
// (trusted.* is not its to write) and says so under --debug; the kernel's overlayfs mounted
// with userxattr in the same namespace shows the upper the same way.
func TestUserNamespace(t *testing.T) {
	needMounts(t)
	u, root, ubin := userWorkspace(t)
	st := stack{Lowers: []string{root + "/l"}, Upper: root + "/u", Work: root + "/w"}
	mnt, kmnt := root+"/m", root+"/k"
	for _, d := range []string{st.Lowers[0], st.Upper, st.Work, mnt, kmnt, root + "/k-w"} {
		mkdir(t, d, "")
	}
	lower := builder{t, st.Lowers[0]}
	lower.file("a", "a\n", 0o644)
	lower.file("gone", "g\n", 0o644)
	lower.file("d/old", "o\n", 0o644)
	lower.file("keep/x", "x\n", 0o644)
	must(t, exec.Command("chown", "-R", u.Uid+":"+u.Gid, root).Run())
	t.Cleanup(func() { stopNamespaceServers(t, mnt) })
	view := "find . | sort; cat a d/new keep/x"
	script := `set -e
` + ubin + ` --debug -o ` + st.options() + ` ` + mnt + ` 2>` + root + `/debug.log
cd ` + mnt + `
echo more >> a; rm gone; rm -rf d; mkdir d; echo new > d/new; mkdir made
echo "== layerfs"; ` + view + `
cd /; umount ` + mnt + `
mount -t overlay overlay -o lowerdir=` + st.Lowers[0] + `,upperdir=` + st.Upper + `,workdir=` + root + `/k-w,userxattr ` + kmnt + `
cd ` + kmnt + `
echo "== kernel"; ` + view + `
cd /; umount ` + kmnt
	out, err := asUser(t, "unshare -Urm sh -c '"+script+"'")
	if err != nil {
		t.Fatalf("in a user namespace: %v\n%s", err, out)
	}
	parts := strings.SplitN(out, "== kernel\n", 2)
	if len(parts) != 2 || !strings.Contains(parts[0], "== layerfs\n") {
		t.Fatalf("unexpected output:\n%s", out)
	}
	got := strings.SplitN(parts[0], "== layerfs\n", 2)[1]
	if got != parts[1] {
		t.Errorf("layerfs in the namespace:\n%s\nthe kernel (userxattr) on its upper:\n%s", got, parts[1])
	}
	if !strings.Contains(got, "a\nmore\nnew\nx\n") || strings.Contains(got, "gone") || strings.Contains(got, "old") {
		t.Errorf("the view in the namespace:\n%s", got)
	}
	buf := make([]byte, 8)
	if n, err := unix.Lgetxattr(filepath.Join(st.Upper, "d"), "user.overlay.opaque", buf); err != nil || string(buf[:n]) != "y" {
		t.Errorf("recreated d: user.overlay.opaque %q %v", buf[:n], err)
	}
	log, _ := os.ReadFile(root + "/debug.log")
	if first, _, _ := strings.Cut(string(log), "\n"); !strings.Contains(first, "markers user.overlay.* (running in a user namespace); whiteouts: character devices 0/0") {
		t.Errorf("--debug's first line: %q", first)
	}
}

// noMknodNode is a loopback node of a filesystem that refuses to make device nodes and
// RENAME_WHITEOUT, as some filesystems and older kernels do for unprivileged users.
type noMknodNode struct{ *fs.LoopbackNode }

func (n *noMknodNode) WrapChild(ctx context.Context, ops fs.InodeEmbedder) fs.InodeEmbedder {
	return &noMknodNode{ops.(*fs.LoopbackNode)}
}

func (n *noMknodNode) Mknod(ctx context.Context, name string, mode, rdev uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if mode&syscall.S_IFMT == syscall.S_IFCHR || mode&syscall.S_IFMT == syscall.S_IFBLK {
		return nil, syscall.EPERM
	}
	return n.LoopbackNode.Mknod(ctx, name, mode, rdev, out)
}

func (n *noMknodNode) Rename(ctx context.Context, name string, newParent fs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	if flags&unix.RENAME_WHITEOUT != 0 {
		return syscall.EINVAL
	}
	return n.LoopbackNode.Rename(ctx, name, newParent, newName, flags)
}

// Listxattr lists the backing object's attributes (go-fuse's loopback does not).
func (n *noMknodNode) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	sz, err := unix.Llistxattr(filepath.Join(n.RootData.Path, n.EmbeddedInode().Path(nil)), dest)
	return uint32(max(sz, 0)), fs.ToErrno(err)
}

// TestAufsWhiteoutFallback: on an upper that refuses character devices, whiteouts are
// ".wh.<name>" files; the view hides what they hide, also after a remount, and --debug says so.
func TestAufsWhiteoutFallback(t *testing.T) {
	needMounts(t)
	root := t.TempDir()
	backing := mkdir(t, root, "backing")
	mkdir(t, backing, "u")
	mkdir(t, backing, "w")
	fuseDir := mkdir(t, root, "nomknod")
	lb, err := fs.NewLoopbackRoot(backing)
	must(t, err)
	srv, err := fs.Mount(fuseDir, &noMknodNode{lb.(*fs.LoopbackNode)}, &fs.Options{MountOptions: fuse.MountOptions{DirectMount: true, FsName: "nomknod", Name: "nomknod"}})
	must(t, err)
	t.Cleanup(func() { srv.Unmount() })

	st := stack{Lowers: []string{mkdir(t, root, "lower")}, Upper: fuseDir + "/u", Work: fuseDir + "/w"}
	b := builder{t, st.Lowers[0]}
	for _, f := range []string{"a", "gone", "back", "d/old", "src", "dir/x"} {
		b.file(f, f+"\n", 0o644)
	}
	mnt := mkdir(t, root, "mnt")
	cmd := exec.Command(bin, "--debug", "-f", "-o", st.options(), mnt)
	debug, err := cmd.StderrPipe()
	must(t, err)
	must(t, cmd.Start())
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	first, err := bufio.NewReader(debug).ReadString('\n')
	must(t, err)
	go io.Copy(io.Discard, debug)
	waitMounted(t, mnt, done)
	stop := func() {
		unmountFuse(t, mnt)
		if done != nil {
			<-done // the server exits once unmounted
			done = nil
		}
	}
	t.Cleanup(stop)
	if !strings.Contains(first, "whiteouts: .wh.<name> files") {
		t.Errorf("--debug's first line: %q", first)
	}
	out := execIn(mnt, "rm gone back && touch back && mv src moved && rm -rf d && mkdir d && echo new > d/new && rm -r dir && echo more >> a")
	if out != "" {
		t.Fatalf("writes: %s", out)
	}
	want := "a\nback\nd\nd/new\nmoved\n"
	check := func(when string) {
		if got := execIn(mnt, "find . -mindepth 1 | sed s,^./,, | sort"); got+"\n" != want {
			t.Errorf("%s: the view is\n%s\nwant\n%s", when, got, want)
		}
	}
	check("after the writes")
	for _, wh := range []string{".wh.gone", ".wh.src", ".wh.dir"} {
		var s unix.Stat_t
		if err := unix.Lstat(filepath.Join(backing, "u", wh), &s); err != nil || s.Mode&unix.S_IFMT != unix.S_IFREG {
			t.Errorf("%s in the upper: %v (mode %o), want a regular file", wh, err, s.Mode)
		}
	}
	if _, err := os.Lstat(filepath.Join(backing, "u", ".wh.back")); !os.IsNotExist(err) {
		t.Errorf(".wh.back stays after back was made again: %v", err)
	}
	stop()
	mountLayerfs(t, st, mnt)
	check("after a remount")
}

// TestOverrideStat: in a user namespace mapping the user's subordinate ids (as rootless podman
// makes), owners, modes and device nodes the layers cannot hold live in
// user.containers.override_stat, as containers/storage and fuse-overlayfs keep them. A lower
// layer unpacked that way shows its owners, set-uid bits and devices; chown and chmod of such
// a file change its override (copied up with it) and survive a remount; other files change for
// real; the attribute is not visible or settable through the mount.
func TestOverrideStat(t *testing.T) {
	needMounts(t)
	u, root, ubin := userWorkspace(t)
	st := stack{Lowers: []string{root + "/l"}, Upper: root + "/u", Work: root + "/w"}
	mnt := root + "/m"
	for _, d := range []string{st.Lowers[0], st.Upper, st.Work, mnt} {
		mkdir(t, d, "")
	}
	b := builder{t, st.Lowers[0]}
	b.file("etc/shadow", "secret\n", 0o644)
	b.file("bin/su", "#!/bin/sh\n", 0o755)
	b.file("dev/null", "", 0o600)
	b.file("plain", "plain\n", 0o644)
	const ov = "user.containers.override_stat"
	b.xattr(".", ov, "0:0:0755")
	b.xattr("etc/shadow", ov, "0:0:0640")
	b.xattr("bin/su", ov, "0:0:4755")
	b.xattr("dev/null", ov, "0:0:0666:char-1-3")
	must(t, exec.Command("chown", "-R", u.Uid+":"+u.Gid, root).Run())
	t.Cleanup(func() { stopNamespaceServers(t, mnt) })
	show := `stat -c "%n %u:%g %a %F %t:%T" etc/shadow bin/su dev/null plain 2>&1; find . -type c | sort`
	const shownAfter = "etc/shadow 5:6 600 regular file 0:0\nbin/su 0:0 4755 regular file 0:0\ndev/null 0:0 666 character special file 1:3\nplain 7:8 4711 regular file 0:0\n./dev/null\n"
	script := `set -e
` + ubin + ` -o ` + st.options() + ` ` + mnt + `
cd ` + mnt + `
echo "== before"; stat -c "%n %u:%g %a %F %t:%T" etc/shadow bin/su dev/null plain
getfattr -n ` + ov + ` etc/shadow 2>&1 || true
setfattr -n ` + ov + ` -v 1:1:0777 plain 2>&1 || true
chown 5:6 etc/shadow; chmod 600 etc/shadow; chown 7:8 plain; chmod 4711 plain
echo "== after"; ` + show + `
cd /; umount ` + mnt + `
` + ubin + ` -o ` + st.options() + ` ` + mnt + `
cd ` + mnt + `
echo "== remounted"; ` + show + `
cd /; umount ` + mnt
	out, err := asUser(t, "unshare --map-auto --map-root-user --mount sh -c '"+script+"'")
	if err != nil {
		t.Fatalf("in a user namespace: %v\n%s", err, out)
	}
	for _, want := range []string{
		"== before\netc/shadow 0:0 640 regular file 0:0\nbin/su 0:0 4755 regular file 0:0\ndev/null 0:0 666 character special file 1:3\nplain 0:0 644 regular file 0:0\n",
		"etc/shadow: " + ov + ": No such attribute",
		"setfattr: plain: Operation not permitted",
		"== after\n" + shownAfter,
		"== remounted\n" + shownAfter,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the namespace's output lacks %q:\n%s", want, out)
		}
	}
	buf := make([]byte, 64)
	for p, want := range map[string]string{"etc/shadow": "5:6:0600"} {
		n, err := unix.Lgetxattr(filepath.Join(st.Upper, p), ov, buf)
		if err != nil || string(buf[:n]) != want {
			t.Errorf("upper %s: %s %q %v, want %q", p, ov, buf[:max(n, 0)], err, want)
		}
	}
	if _, err := unix.Lgetxattr(st.Upper, ov, buf); err != nil {
		t.Errorf("the upper's root is not marked for overrides: %v", err)
	}
	var ps unix.Stat_t
	must(t, unix.Lstat(filepath.Join(st.Upper, "plain"), &ps))
	if _, err := unix.Lgetxattr(filepath.Join(st.Upper, "plain"), ov, buf); err == nil || ps.Mode&0o7777 != 0o4711 || ps.Uid < 100000 {
		t.Errorf("upper plain: mode %o uid %d, override %v: want a real chmod and chown to a subordinate id", ps.Mode&0o7777, ps.Uid, err)
	}
}

// stopNamespaceServers ends the servers of a mount made inside a user namespace, which the
// test cannot see to unmount: on SIGTERM a server unmounts and exits.
func stopNamespaceServers(t *testing.T, mnt string) {
	t.Helper()
	for _, pid := range serverPids(mnt) {
		unix.Kill(pid, unix.SIGTERM)
		waitGone(t, pid)
	}
}
