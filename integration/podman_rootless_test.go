package integration

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
)

// rootlessEngine runs podman as the unprivileged test user with a store of its own.
type rootlessEngine struct {
	t    *testing.T
	name string
	dir  string
	env  string
}

func newRootlessEngine(t *testing.T, name, dir, mountProgram string) *rootlessEngine {
	t.Helper()
	for _, d := range []string{"graph", "xdg", "tmp", "home"} {
		mkdir(t, dir, d)
	}
	must(t, os.Chmod(dir+"/xdg", 0o700))
	storage := fmt.Sprintf("[storage]\ndriver = \"overlay\"\nrootless_storage_path = %q\n", dir+"/graph")
	if mountProgram != "" {
		storage += fmt.Sprintf("[storage.options.overlay]\nmount_program = %q\n", mountProgram)
	}
	conf := fmt.Sprintf("[containers]\nnetns = \"none\"\n[engine]\nruntime = \"runc\"\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\ntmp_dir = %q\n", dir+"/tmp")
	must(t, os.WriteFile(dir+"/storage.conf", []byte(storage), 0o644))
	must(t, os.WriteFile(dir+"/containers.conf", []byte(conf), 0o644))
	must(t, exec.Command("chown", "-R", rootlessUser, dir).Run())
	e := &rootlessEngine{t: t, name: name, dir: dir,
		env: "HOME=" + dir + "/home XDG_RUNTIME_DIR=" + dir + "/xdg XDG_CONFIG_HOME=" + dir + "/home/.config " +
			"CONTAINERS_STORAGE_CONF=" + dir + "/storage.conf CONTAINERS_CONF=" + dir + "/containers.conf"}
	t.Cleanup(e.cleanup)
	return e
}

// run runs podman with args (a shell word list) as the user; output goes through a file, as
// conmon keeps inherited pipes open.
func (e *rootlessEngine) run(args string) string {
	e.t.Helper()
	out, err := e.try(args)
	if err != nil {
		e.t.Fatalf("%s: podman %s: %v\n%s", e.name, args, err, out)
	}
	return out
}

func (e *rootlessEngine) try(args string) (string, error) {
	outFile := filepath.Join(e.dir, "out")
	_, err := asUser(e.t, "cd "+e.dir+" && env "+e.env+" podman "+args+" >"+outFile+" 2>&1")
	data, _ := os.ReadFile(outFile)
	return filterWarnings(string(data)), err
}

// cleanup removes the containers, the store and the user's podman processes (its pause
// process stays otherwise), and anything still mounted below the store.
func (e *rootlessEngine) cleanup() {
	e.try("rm -af -t 0")
	e.try("system reset -f")
	exec.Command("pkill", "-KILL", "-u", rootlessUser, "-x", "catatonit").Run()
	exec.Command("pkill", "-KILL", "-u", rootlessUser, "-x", "conmon").Run()
	for _, m := range mountsBelow(e.dir) {
		unmountFuse(e.t, m)
	}
}

// rootlessSteps run in containers of each store; their output must match.
const rootlessSteps = `exec 2>&1
id
stat -c "%n %u:%g %a %F" / /bin /bin/busybox /o /o/f
echo hi > /new && stat -c "%n %u:%g %a" /new && cat /new
rm /bin/ls && ls /bin | wc -l
mkdir -p /d/e && stat -c "%n %u:%g" /d/e
chmod 4755 /o/f && stat -c "%n %u:%g %a" /o/f
touch /o/g; ls /o; true`

// TestPodmanRootless runs rootless podman (the unprivileged test user, its subordinate ids
// mapped by newuidmap) with layerfs as the mount program, and the same steps with the kernel's
// own overlayfs (rootless, in podman's user namespace):
// a build that sets owners, then containers in the default user namespace and with
// --userns=keep-id (which passes uidmapping/gidmapping to the mount program) see the same.
func TestPodmanRootless(t *testing.T) {
	needPodman(t)
	u, err := user.Lookup(rootlessUser)
	if err != nil {
		skipTest(t, "no user %s to run as (.ci/run creates it): %v", rootlessUser, err)
	}
	dir := t.TempDir()
	must(t, os.Chmod(dir, 0o755))
	must(t, os.Chmod(filepath.Dir(dir), 0o755))
	tarball := busyboxRootfs(t, dir)
	ctx := mkdir(t, dir, "ctx")
	must(t, os.WriteFile(ctx+"/Containerfile", []byte("FROM localhost/base:1\n"+
		"RUN mkdir /o && touch /o/f && chown 123:456 /o && chown 7:8 /o/f && chmod 700 /o\n"), 0o644))
	prog := filepath.Join(dir, "mount-program")
	data, err := os.ReadFile(bin)
	must(t, err)
	must(t, os.WriteFile(prog, data, 0o755))
	must(t, exec.Command("chown", "-R", rootlessUser, dir).Run())

	sides := []struct{ name, program string }{{"kernel", ""}, {testedName(), prog}}
	results := map[string]string{}
	for _, side := range sides {
		e := newRootlessEngine(t, side.name, mkdir(t, dir, side.name), side.program)
		e.run("import " + tarball + " localhost/base:1")
		e.run("build --network=none -q -t localhost/test:1 " + ctx)
		var res strings.Builder
		for _, userns := range []string{"", "--userns=keep-id"} {
			fmt.Fprintf(&res, "## %s\n%s\n", userns, e.run("run --rm "+userns+" localhost/test:1 sh -c '"+strings.ReplaceAll(rootlessSteps, "'", `'"'"'`)+"'"))
		}
		if side.program == prog {
			if !strings.Contains(e.run("info --format '{{.Store.GraphOptions}}'"), prog) {
				t.Errorf("the store does not use %s as its mount program", prog)
			}
		}
		results[side.name] = res.String()
	}
	want := results["kernel"]
	t.Logf("kernel:\n%s", want)
	if got := results[testedName()]; got != want {
		t.Errorf("%s differs from the kernel:\n%s", testedName(), got)
	}
	if !strings.Contains(want, "uid="+u.Uid) {
		t.Errorf("keep-id did not run as the user %s:\n%s", u.Uid, want)
	}
}
