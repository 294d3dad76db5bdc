package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// imageBuild makes an image whose layers delete files, replace a directory, change owners and
// modes of capability files, hard-link, and hold a device, a fifo and a symlink.
const imageBuild = `FROM localhost/base:1
RUN mkdir -p /data/keep /data/gone /etc/conf && echo v1 > /data/file && echo del > /data/del && echo x > /data/gone/x && echo c > /etc/conf/c && echo l > /data/linked && ln /data/linked /data/linked2 && chown 1000:1000 /data/file
RUN rm /data/del && rm -rf /data/gone && rm -rf /etc/conf && mkdir /etc/conf && echo fresh > /etc/conf/d && chown 1000:1000 /bin/ping-chown && chmod 4755 /bin/ping-chmod && mknod /data/null c 1 3 && mkfifo /data/fifo && ln -s /data/file /data/sym && chmod 2750 /data/keep
`

// buildWrites is a build step done in a layerfs mount of the image, exported as a layer.
const buildWrites = `set -e
rm data/file
rm -rf etc/conf && mkdir etc/conf && echo e > etc/conf/e
echo n > data/new && ln data/new data/newlink
chmod 600 data/linked
mkdir -p data/keep/sub && echo s > data/keep/sub/s
rm bin/ping-kept
`

// TestImage builds an image with podman (busybox base, from Debian's busybox-static), saves it
// as an OCI layout and as a docker archive, and mounts each with layerfs image mount: the view
// must be podman's own (podman image mount, on the kernel's overlayfs), name by name (owner,
// mode, data, attributes, links, times). Then a build in a layerfs mount of the image is
// exported as a layer on top of the layout, loaded into podman, and podman must show what the
// mount showed.
func TestImage(t *testing.T) {
	needPodman(t)
	dir := t.TempDir()
	e := newEngine(t, "kernel", mkdir(t, dir, "engine"), "")
	e.baseImage(rootfsTar(t, dir, true))
	ctx := mkdir(t, dir, "ctx")
	must(t, os.WriteFile(ctx+"/Containerfile", []byte(imageBuild), 0o644))
	e.run("podman", "build", "--network=none", "-q", "-t", "localhost/img:1", ctx)
	layout := filepath.Join(dir, "layout")
	e.run("podman", "save", "--format", "oci-dir", "-o", layout, "localhost/img:1")
	archive := filepath.Join(dir, "img.tar")
	e.run("podman", "save", "--format", "docker-archive", "-o", archive, "localhost/img:1")
	want := snapshot(t, strings.TrimSpace(e.run("podman", "image", "mount", "localhost/img:1")), false)
	if len(want) < 30 {
		t.Fatalf("podman's view of the image has %d names", len(want))
	}

	store := mkdir(t, dir, "store")
	for i, src := range []string{"oci:" + layout, archive} {
		mnt := mkdir(t, dir, "view"+string(rune('0'+i)))
		out, err := exec.Command(bin, "image", "mount", "--store", store, src, mnt).CombinedOutput()
		if err != nil {
			t.Fatalf("image mount %s: %v\n%s", src, err, out)
		}
		t.Cleanup(func() { unmountFuse(t, mnt) })
		compareTrees(t, want, snapshot(t, mnt, false))
		if err := os.WriteFile(mnt+"/x", nil, 0o644); err == nil {
			t.Errorf("%s: a mount without --upper took a write", src)
		}
		unmountFuse(t, mnt)
	}
	// The two sources hold the same layers: each is stored once.
	layers, err := filepath.Glob(filepath.Join(store, "layers", "sha256", "*"))
	must(t, err)
	if len(layers) != 3 {
		t.Errorf("store holds %d layers, want 3 (base and two RUN steps): %q", len(layers), layers)
	}

	// A build in a mount of the image, exported as a layer on top of it.
	upper, work, mnt := mkdir(t, dir, "upper"), mkdir(t, dir, "work"), mkdir(t, dir, "build")
	out, err := exec.Command(bin, "image", "mount", "--store", store, "--upper", upper, "--work", work, "oci:"+layout, mnt).CombinedOutput()
	if err != nil {
		t.Fatalf("image mount with an upper: %v\n%s", err, out)
	}
	t.Cleanup(func() { unmountFuse(t, mnt) })
	sh := exec.Command("sh", "-c", buildWrites)
	sh.Dir = mnt
	if out, err := sh.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	built := snapshot(t, mnt, false)
	unmountFuse(t, mnt)
	layer := filepath.Join(dir, "layer.tar.gz")
	if out, err := exec.Command(bin, "image", "export", "--gzip", "--oci", layout, upper, layer).CombinedOutput(); err != nil {
		t.Fatalf("image export: %v\n%s", err, out)
	}
	ociArchive := filepath.Join(dir, "built.tar")
	if out, err := exec.Command("tar", "-C", layout, "-cf", ociArchive, ".").CombinedOutput(); err != nil {
		t.Fatalf("tar: %v\n%s", err, out)
	}
	loaded := e.run("podman", "load", "-q", "-i", ociArchive)
	id := regexp.MustCompile(`[0-9a-f]{64}`).FindString(loaded)
	if id == "" {
		if m := regexp.MustCompile(`Loaded image: (\S+)`).FindStringSubmatch(loaded); m != nil {
			id = m[1]
		}
	}
	if id == "" {
		t.Fatalf("podman load said %q", loaded)
	}
	compareTrees(t, built, snapshot(t, strings.TrimSpace(e.run("podman", "image", "mount", id)), false))
	e.run("podman", "image", "unmount", id)

	// And layerfs mounts the layout with the new layer as podman does.
	view := mkdir(t, dir, "view-built")
	if out, err := exec.Command(bin, "image", "mount", "--store", store, "oci:"+layout, view).CombinedOutput(); err != nil {
		t.Fatalf("image mount of the built layout: %v\n%s", err, out)
	}
	t.Cleanup(func() { unmountFuse(t, view) })
	compareTrees(t, built, snapshot(t, view, false))
}

// imageListing describes every name below the current directory: type, mode, owner (not a
// symlink's: an unprivileged store cannot keep it), size, links, device numbers, data.
const imageListing = `find . -mindepth 1 2>/dev/null | LC_ALL=C sort | while read -r f; do
  if [ -L "$f" ]; then echo "$f link -> $(readlink "$f")"; continue; fi
  line="$f $(stat -c '%F %a %u:%g %h' "$f")"
  case "$(stat -c %F "$f")" in
  "regular file"|"regular empty file") line="$line $(md5sum < "$f" | cut -c1-8)";;
  *special*) line="$line $(stat -c '%t,%T' "$f")";;
  esac
  echo "$line"
done`

// TestImageRootless: an unprivileged user unpacks and mounts the image (overrides, AUFS
// markers, user.overlay.opaque) and sees what podman shows as root, owners and devices
// included.
func TestImageRootless(t *testing.T) {
	needPodman(t)
	u, root, ubin := userWorkspace(t)
	uid, _ := strconv.Atoi(u.Uid)
	dir := t.TempDir()
	e := newEngine(t, "kernel", mkdir(t, dir, "engine"), "")
	e.baseImage(rootfsTar(t, dir, true)) // its capabilities cannot be kept: a warning
	ctx := mkdir(t, dir, "ctx")
	must(t, os.WriteFile(ctx+"/Containerfile", []byte(imageBuild), 0o644))
	e.run("podman", "build", "--network=none", "-q", "-t", "localhost/img:1", ctx)
	layout := filepath.Join(root, "layout")
	e.run("podman", "save", "--format", "oci-dir", "-o", layout, "localhost/img:1")
	if out, err := exec.Command("chmod", "-R", "a+rX", layout).CombinedOutput(); err != nil {
		t.Fatalf("chmod: %v %s", err, out)
	}
	kernelView := strings.TrimSpace(e.run("podman", "image", "mount", "localhost/img:1"))
	sh := exec.Command("sh", "-c", imageListing)
	sh.Dir = kernelView
	want, err := sh.CombinedOutput()
	if err != nil {
		t.Fatalf("listing podman's view: %v\n%s", err, want)
	}

	mnt, store := mkdir(t, root, "mnt"), mkdir(t, root, "store")
	must(t, os.Chown(mnt, uid, -1))
	must(t, os.Chown(store, uid, -1))
	t.Cleanup(func() {
		asUser(t, "fusermount3 -u "+mnt)
		unmountFuse(t, mnt)
	})
	out, err := asUser(t, ubin+" image mount --store "+store+" oci:"+layout+" "+mnt+" 2>"+store+"/warnings"+
		" && cd "+mnt+" && "+imageListing+" && cd / && fusermount3 -u "+mnt)
	if err != nil {
		t.Fatalf("as %s: %v\n%s", rootlessUser, err, out)
	}
	warnings, err := os.ReadFile(store + "/warnings")
	must(t, err)
	if !strings.Contains(string(warnings), "security.capability") {
		t.Errorf("no warning that capabilities could not be kept: %q", warnings)
	}
	if out != string(want) {
		t.Errorf("the user's view of the image differs from podman's:\n--- podman (root, kernel overlayfs)\n%s--- layerfs (%s)\n%s", want, rootlessUser, out)
	}
}
