package integration

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// engine is a private podman/buildah store, configured through CONTAINERS_STORAGE_CONF and
// CONTAINERS_CONF as the sandbox needs: runc, cgroupfs, file events, no network.
type engine struct {
	t    *testing.T
	name string
	root string
	env  []string
}

// newEngine makes a store below dir; with mountProgram set, containers/storage mounts layers
// with it instead of the kernel's overlayfs.
func newEngine(t *testing.T, name, dir, mountProgram string) *engine {
	t.Helper()
	e := &engine{t: t, name: name, root: dir}
	for _, d := range []string{"graph", "run", "tmp"} {
		mkdir(t, dir, d)
	}
	storage := fmt.Sprintf("[storage]\ndriver = \"overlay\"\ngraphroot = %q\nrunroot = %q\n", dir+"/graph", dir+"/run")
	if mountProgram != "" {
		storage += fmt.Sprintf("[storage.options.overlay]\nmount_program = %q\n", mountProgram)
	}
	conf := fmt.Sprintf(`[containers]
default_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]
netns = "none"
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
tmp_dir = %q
`, dir+"/tmp")
	must(t, os.WriteFile(dir+"/storage.conf", []byte(storage), 0o644))
	must(t, os.WriteFile(dir+"/containers.conf", []byte(conf), 0o644))
	e.env = append(os.Environ(), "CONTAINERS_STORAGE_CONF="+dir+"/storage.conf", "CONTAINERS_CONF="+dir+"/containers.conf")
	t.Cleanup(e.cleanup)
	return e
}

// run runs podman or buildah in the engine's store and returns its output; it fails the test
// on a non-zero exit.
func (e *engine) run(tool string, args ...string) string {
	e.t.Helper()
	out, err := e.try(tool, args...)
	if err != nil {
		e.t.Fatalf("%s: %s %s: %v\n%s", e.name, tool, strings.Join(args, " "), err, out)
	}
	return out
}

func (e *engine) try(tool string, args ...string) (string, error) {
	cmd := exec.Command(tool, args...)
	cmd.Env = e.env
	cmd.Dir = e.root
	// Output goes to a file, not a pipe: conmon and mount programs stay behind in the
	// background, and a pipe they inherited would keep the command from ending.
	out, err := os.CreateTemp(e.root, "out")
	if err != nil {
		return "", err
	}
	defer os.Remove(out.Name())
	defer out.Close()
	cmd.Stdout, cmd.Stderr = out, out
	cmd.WaitDelay = 0
	err = cmd.Run()
	data, _ := os.ReadFile(out.Name())
	return filterWarnings(string(data)), err
}

// filterWarnings drops podman's log lines, which differ from run to run.
func filterWarnings(s string) string {
	var keep []string
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "time=") {
			continue
		}
		keep = append(keep, sc.Text())
	}
	return strings.Join(keep, "\n")
}

// cleanup removes every container and mount of the store, so nothing outlives the test.
func (e *engine) cleanup() {
	e.try("podman", "rm", "-af", "-t", "0")
	e.try("buildah", "rm", "--all")
	e.try("podman", "image", "unmount", "--all")
	e.try("podman", "system", "reset", "-f")
	// Whatever is still mounted below the store (after a failure) goes too.
	for _, m := range mountsBelow(e.root) {
		unmountFuse(e.t, m)
		unix.Unmount(m, unix.MNT_DETACH)
	}
}

// mountsBelow lists mountpoints below dir, deepest first.
func mountsBelow(dir string) []string {
	var out []string
	for _, m := range mounts() {
		if strings.HasPrefix(m.Mountpoint, dir+"/") {
			out = append(out, m.Mountpoint)
		}
	}
	sort.Slice(out, func(i, j int) bool { return len(out[i]) > len(out[j]) })
	return out
}

// baseImage imports a busybox root filesystem as localhost/base.
func (e *engine) baseImage(rootfsTar string) {
	e.t.Helper()
	e.run("podman", "import", rootfsTar, "localhost/base:1")
}

func needPodman(t *testing.T) {
	t.Helper()
	needMounts(t)
	for _, tool := range []string{"podman", "buildah", "runc", "busybox"} {
		if _, err := exec.LookPath(tool); err != nil {
			skipTest(t, "%s is not installed (.ci/run installs podman, buildah, runc and busybox-static)", tool)
		}
	}
}

// busyboxRootfs writes a tar of a minimal root filesystem: busybox and its applets.
func busyboxRootfs(t *testing.T, dir string) string {
	t.Helper()
	return rootfsTar(t, dir, false)
}

// capFiles are programs of the capabilities image: copies of busybox carrying cap_net_raw, as
// Debian's ping does. The build chowns one, chmods one, appends to one and leaves one alone.
var capFiles = []string{"/bin/ping-chown", "/bin/ping-chmod", "/bin/ping-write", "/bin/ping-kept"}

// rootfsTar is busyboxRootfs, with capFiles too when caps is set.
func rootfsTar(t *testing.T, dir string, caps bool) string {
	t.Helper()
	bb, err := exec.LookPath("busybox")
	must(t, err)
	root := mkdir(t, dir, "rootfs")
	mkdir(t, root, "bin")
	data, err := os.ReadFile(bb)
	must(t, err)
	must(t, os.WriteFile(root+"/bin/busybox", data, 0o755))
	for _, applet := range []string{"sh", "ls", "cat", "echo", "rm", "mkdir", "mv", "ln", "chmod",
		"touch", "stat", "find", "mkfifo", "dd", "sleep", "true", "test", "sort", "wc", "head", "md5sum", "seq", "sync"} {
		must(t, os.Symlink("busybox", root+"/bin/"+applet))
	}
	args := []string{"-C", root}
	if caps {
		for _, f := range capFiles {
			must(t, os.WriteFile(root+f, data, 0o755))
			must(t, unix.Setxattr(root+f, "security.capability", capNetRaw, 0))
		}
		args = append(args, "--xattrs", "--xattrs-include=security.capability")
	}
	tarball := filepath.Join(dir, "rootfs.tar")
	if out, err := exec.Command("tar", append(args, "-cf", tarball, ".")...).CombinedOutput(); err != nil {
		t.Fatalf("tar: %v %s", err, out)
	}
	return tarball
}

// capBuild is a build over the capabilities image that changes the owner, the mode and the
// data of capability files, as a RUN chown -R or a package's postinst does.
const capBuild = `FROM localhost/base:1
RUN chown 1000:1000 /bin/ping-chown && chmod 4755 /bin/ping-chmod && echo >> /bin/ping-write
`

// capabilities describes owner, mode and attributes of capFiles in the image mounted at mnt.
func capabilities(t *testing.T, mnt string) string {
	t.Helper()
	var out []string
	for _, f := range capFiles {
		out = append(out, f+" "+attrs(filepath.Join(mnt, f)))
	}
	return strings.Join(out, "\n")
}

const buildFile = `FROM localhost/base:1
RUN mkdir -p /data/keep /data/gone /etc/conf && echo v1 > /data/file && echo del > /data/del && echo x > /data/gone/x && echo c > /etc/conf/c && echo l > /data/linked && ln /data/linked /data/linked2
RUN rm /data/del && rm -rf /data/gone && echo v2 >> /data/file && echo new > /data/new && rm -rf /etc/conf && mkdir /etc/conf && echo fresh > /etc/conf/d
`

// listing is the command that shows a container's view of what the tests change.
const listing = `for f in $(find /data /etc/conf /big* 2>/dev/null | sort); do
  if [ -L "$f" ]; then echo "$f -> $(stat -c %N "$f")";
  elif [ -d "$f" ]; then echo "$f/ $(stat -c '%a' "$f")";
  elif [ -f "$f" ]; then echo "$f $(stat -c '%a %h %s' "$f") $(md5sum < "$f" | head -c 8)";
  else echo "$f $(stat -c '%F %a' "$f")"; fi
done`

const containerWrites = `rm /data/file
echo more >> /etc/conf/d
chmod 600 /data/new
ln /data/new /data/hl
echo l2 >> /data/linked
ln -s /data/new /data/sl
mkfifo /data/ff
mkdir -p /data/keep/sub && echo s > /data/keep/sub/s
mv /data/keep /data/moved
dd if=/dev/zero of=/big bs=1M count=16 2>/dev/null
rm -rf /etc/conf && mkdir /etc/conf && echo again > /etc/conf/e
`

// TestPodman runs podman and buildah with layerfs as the mount program, and the same steps
// with the kernel's overlayfs in a second store, and compares what containers see, what
// podman diff reports and what committed images hold.
func TestPodman(t *testing.T) {
	needPodman(t)
	dir := t.TempDir()
	tarball := rootfsTar(t, dir, true)
	ctx := mkdir(t, dir, "ctx")
	must(t, os.WriteFile(ctx+"/Containerfile", []byte(buildFile), 0o644))
	must(t, os.WriteFile(ctx+"/Containerfile.caps", []byte(capBuild), 0o644))
	var many strings.Builder
	many.WriteString("FROM localhost/base:1\n")
	for i := 0; i < 22; i++ {
		fmt.Fprintf(&many, "RUN mkdir -p /data/l%d && echo %d > /data/l%d/f && rm -rf /data/l%d\n", i, i, i, max(i-1, 0))
	}
	must(t, os.WriteFile(ctx+"/Containerfile.many", []byte(many.String()), 0o644))
	must(t, os.WriteFile(ctx+"/copied", []byte("copied by buildah\n"), 0o644))

	results := map[string][]string{}
	for _, side := range []struct{ name, program string }{{"kernel", ""}, {testedName(), bin}} {
		e := newEngine(t, side.name, mkdir(t, dir, side.name), side.program)
		var res []string
		add := func(what, out string) { res = append(res, "## "+what+"\n"+out) }

		e.baseImage(tarball)
		e.run("podman", "build", "--network=none", "-q", "-t", "localhost/test:1", ctx)
		add("image after build", e.run("podman", "run", "--rm", "localhost/test:1", "sh", "-c", listing))

		e.run("podman", "run", "-d", "--name", "c1", "localhost/test:1", "sleep", "600")
		merged := strings.TrimSpace(e.run("podman", "container", "inspect", "--format", "{{.GraphDriver.Data.MergedDir}}", "c1"))
		typ := mountType(t, merged)
		if side.program != "" && typ != "fuse.layerfs" {
			t.Errorf("%s: the running container's rootfs %s is mounted as %q, want fuse.layerfs", e.name, merged, typ)
		}
		e.run("podman", "exec", "c1", "sh", "-ec", containerWrites)
		add("container after writes", e.run("podman", "exec", "c1", "sh", "-c", listing))
		// "podman diff c1" looks for an image first, and c1 is also a prefix of image IDs:
		// one in 256 has it, and then its diff is that image's.
		diff := strings.Split(strings.TrimSpace(e.run("podman", "container", "diff", "c1")), "\n")
		sort.Strings(diff)
		add("podman diff", strings.Join(diff, "\n"))
		e.run("podman", "commit", "-q", "c1", "localhost/test:2")
		e.run("podman", "rm", "-f", "-t", "0", "c1")
		if typ := mountType(t, merged); typ != "" {
			t.Errorf("%s: %s still mounted (%s) after podman rm", e.name, merged, typ)
		}
		if side.program != "" {
			if pids := serverPids(merged); len(pids) > 0 {
				t.Errorf("%s: layerfs servers %v still running after podman rm", e.name, pids)
			}
		}
		add("committed image", e.run("podman", "run", "--rm", "localhost/test:2", "sh", "-c", listing))

		mnt := strings.TrimSpace(e.run("podman", "image", "mount", "localhost/test:2"))
		data, err := os.ReadFile(filepath.Join(mnt, "etc/conf/e"))
		add("image mount", fmt.Sprintf("%q %v", data, err))
		e.run("podman", "image", "unmount", "localhost/test:2")

		b := strings.TrimSpace(e.run("buildah", "from", "localhost/test:2"))
		e.run("buildah", "run", "--network=none", b, "--", "sh", "-c", "echo b > /data/b && rm -rf /data/moved")
		e.run("buildah", "copy", b, ctx+"/copied", "/data/copied")
		e.run("buildah", "commit", "-q", b, "localhost/test:3")
		e.run("buildah", "rm", b)
		add("buildah image", e.run("podman", "run", "--rm", "localhost/test:3", "sh", "-c", listing))

		e.run("podman", "build", "--network=none", "-q", "-f", ctx+"/Containerfile.caps", "-t", "localhost/caps:1", ctx)
		capMnt := strings.TrimSpace(e.run("podman", "image", "mount", "localhost/caps:1"))
		caps := capabilities(t, capMnt)
		if side.program == "" && strings.Count(caps, "security.capability=") != 2 {
			// Only ping-chmod and ping-kept keep theirs (chown and writes drop them): else
			// the image lost them on import and the comparison would prove nothing.
			t.Errorf("kernel store: capability files after the build:\n%s", caps)
		}
		add("capability files after a build", caps)
		e.run("podman", "image", "unmount", "localhost/caps:1")

		e.run("podman", "build", "--network=none", "-q", "-f", ctx+"/Containerfile.many", "-t", "localhost/many:1", ctx)
		layers := e.run("podman", "image", "inspect", "--format", "{{len .RootFS.Layers}}", "localhost/many:1")
		add("image of many layers", layers+"\n"+e.run("podman", "run", "--rm", "localhost/many:1", "sh", "-c", listing))

		results[side.name] = res
		e.cleanup()
		if left := mountsBelow(e.root); len(left) > 0 {
			t.Errorf("%s: mounts left after cleanup: %v", e.name, left)
		}
	}
	k, l := results["kernel"], results[testedName()]
	for i := range k {
		got := ""
		if i < len(l) {
			got = l[i]
		}
		if strings.HasPrefix(k[i], "## podman diff") {
			// The kernel store diffs its upper directory, a mount program's store compares
			// two mounted trees, so they word a replaced directory differently; the mount
			// program's answer is checked against the changes made.
			if want := "## podman diff\n" + podmanDiffWant; got != want {
				t.Errorf("%s: podman diff:\n%s\nwant\n%s", testedName(), got, want)
			}
			continue
		}
		// Without index=on the kernel breaks a hard link on copy-up, which layerfs keeps
		// (README): the linked files are checked on their own.
		if kk, ll := dropLinked(k[i]), dropLinked(got); kk != ll {
			t.Errorf("kernel overlayfs and %s differ:\n--- kernel\n%s\n--- %s\n%s", testedName(), kk, testedName(), ll)
		}
	}
	for _, r := range l {
		if strings.HasPrefix(r, "## container after writes") || strings.HasPrefix(r, "## committed image") {
			if !strings.Contains(r, "/data/linked 644 2 5 f79331a1\n/data/linked2 644 2 5 f79331a1") {
				t.Errorf("%s: hard-linked /data/linked and /data/linked2 do not show one changed file:\n%s", testedName(), r)
			}
		}
	}
	if !t.Failed() {
		t.Logf("%d views agree, e.g.:\n%s", len(k), l[1])
	}
}

// podmanDiffWant is what containerWrites changed, as podman diff words it for a store whose
// layers a mount program mounts.
const podmanDiffWant = `A /big
A /data/ff
A /data/hl
A /data/moved
A /data/moved/sub
A /data/moved/sub/s
A /data/sl
A /etc/conf/e
C /data
C /data/linked
C /data/linked2
C /data/new
C /etc
C /etc/conf
D /data/file
D /data/keep
D /etc/conf/d`

func dropLinked(s string) string {
	var keep []string
	for _, line := range strings.Split(s, "\n") {
		if !strings.HasPrefix(line, "/data/linked") {
			keep = append(keep, line)
		}
	}
	return strings.Join(keep, "\n")
}

// TestPodmanIdlePrune: a running container's rootfs mounted by layerfs, once its server has
// pruned (idle_prune=1), still has every mount the engine made inside it (/proc, /dev,
// /sys, the bind-mounted /etc/hosts and /etc/hostname) and reads its files.
func TestPodmanIdlePrune(t *testing.T) {
	needPodman(t)
	dir := t.TempDir()
	tarball := rootfsTar(t, dir, false)
	logPath := filepath.Join(dir, "server.log")
	// A mount program that traces, so the test sees the prune happen.
	wrapper := filepath.Join(dir, "layerfs-traced")
	must(t, os.WriteFile(wrapper, []byte(fmt.Sprintf("#!/bin/sh\nexec %q --debug -o idle_prune=1 \"$@\" 2>>%q\n", bin, logPath)), 0o755))
	e := newEngine(t, "prune", mkdir(t, dir, "store"), wrapper)
	e.baseImage(tarball)
	e.run("podman", "run", "-d", "--name", "c1", "localhost/base:1", "sleep", "600")
	defer e.run("podman", "rm", "-f", "-t", "0", "c1")
	inside := "grep -c . /proc/self/mountinfo; awk '{print $5}' /proc/self/mountinfo | sort | tr '\\n' ' '; cat /etc/hostname /etc/hosts > /dev/null && echo read; ls -R /etc /bin | wc -l"
	before := e.run("podman", "exec", "c1", "sh", "-c", inside)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		data, err := os.ReadFile(logPath)
		must(t, err)
		if strings.Contains(string(data), "layerfs: idle: asked the kernel to forget") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the container's server never pruned")
		}
	}
	if after := e.run("podman", "exec", "c1", "sh", "-c", inside); after != before {
		t.Errorf("inside the container after the prune:\n%s\nbefore:\n%s", after, before)
	}
}
