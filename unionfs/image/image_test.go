package image

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/klauspost/compress/gzip"
	"github.com/layerfs/layerfs/unionfs/override"
	"github.com/layerfs/layerfs/whiteout"
	digest "github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"
)

func check(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// ent is one tar entry of a test layer: "d NAME", "f NAME DATA", "l NAME TARGET" (symlink),
// "h NAME TARGET" (hard link), "c NAME" (char device 1/3).
func tarOf(t *testing.T, ents ...string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range ents {
		f := strings.SplitN(e, " ", 3)
		h := &tar.Header{Name: f[1], Mode: 0o644, Uid: 1000, Gid: 100, Format: tar.FormatPAX}
		switch f[0] {
		case "d":
			h.Typeflag, h.Mode = tar.TypeDir, 0o755
		case "f":
			h.Typeflag, h.Size = tar.TypeReg, int64(len(f[2]))
		case "l":
			h.Typeflag, h.Linkname = tar.TypeSymlink, f[2]
		case "h":
			h.Typeflag, h.Linkname = tar.TypeLink, f[2]
		case "c":
			h.Typeflag, h.Devmajor, h.Devminor = tar.TypeChar, 1, 3
		}
		check(t, tw.WriteHeader(h))
		if f[0] == "f" {
			_, err := tw.Write([]byte(f[2]))
			check(t, err)
		}
	}
	check(t, tw.Close())
	return buf.Bytes()
}

func gz(t *testing.T, data []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	_, err := zw.Write(data)
	check(t, err)
	check(t, zw.Close())
	return buf.Bytes()
}

// layoutOf writes an OCI image layout of the given layer blobs (bottom first); diffIDs are
// the uncompressed tars'.
func layoutOf(t *testing.T, blobs, tars [][]byte) string {
	t.Helper()
	dir := t.TempDir()
	check(t, os.MkdirAll(filepath.Join(dir, "blobs", "sha256"), 0o755))
	put := func(data []byte) digest.Digest {
		d := digest.SHA256.FromBytes(data)
		check(t, os.WriteFile(filepath.Join(dir, blobPath(d)), data, 0o644))
		return d
	}
	cfg := v1.Image{Platform: v1.Platform{OS: "linux", Architecture: "amd64"}, RootFS: v1.RootFS{Type: "layers"}}
	m := v1.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: v1.MediaTypeImageManifest}
	for i, b := range blobs {
		cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, digest.SHA256.FromBytes(tars[i]))
		m.Layers = append(m.Layers, v1.Descriptor{MediaType: v1.MediaTypeImageLayerGzip, Digest: put(b), Size: int64(len(b))})
	}
	data, _ := json.Marshal(cfg)
	m.Config = v1.Descriptor{MediaType: v1.MediaTypeImageConfig, Digest: put(data), Size: int64(len(data))}
	data, _ = json.Marshal(m)
	md := v1.Descriptor{MediaType: v1.MediaTypeImageManifest, Digest: put(data), Size: int64(len(data)),
		Annotations: map[string]string{v1.AnnotationRefName: "t1"}}
	data, _ = json.Marshal(v1.Index{Versioned: specs.Versioned{SchemaVersion: 2}, Manifests: []v1.Descriptor{md}})
	check(t, os.WriteFile(filepath.Join(dir, "index.json"), data, 0o644))
	check(t, os.WriteFile(filepath.Join(dir, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644))
	return dir
}

// unpack unpacks the one-layer image of tarData (gzip'ed, or mangled by blob) into a new store.
func unpack(t *testing.T, st *Store, tarData []byte, mangle func([]byte) []byte) (string, error) {
	t.Helper()
	blob := gz(t, tarData)
	layout := layoutOf(t, [][]byte{blob}, [][]byte{tarData})
	if mangle != nil {
		d := digest.SHA256.FromBytes(blob)
		check(t, os.WriteFile(filepath.Join(layout, blobPath(d)), mangle(blob), 0o644))
	}
	img, err := Open("oci:" + layout + ":t1")
	check(t, err)
	dirs, err := st.UnpackImage(img)
	if err != nil {
		return "", err
	}
	return dirs[0], nil
}

// storeLeft lists what the store holds besides its empty layer directories.
func storeLeft(t *testing.T, st *Store) []string {
	var out []string
	filepath.WalkDir(filepath.Join(st.Dir, "layers"), func(p string, d os.DirEntry, err error) error {
		if err == nil && p != filepath.Join(st.Dir, "layers") && p != filepath.Join(st.Dir, "layers", "sha256") {
			out = append(out, p)
		}
		return nil
	})
	return out
}

// TestBadLayers: a corrupt, truncated, escaping or oversized layer fails with an error that
// names the problem and leaves nothing in the store.
func TestBadLayers(t *testing.T) {
	good := tarOf(t, "d a/", "f a/x hello")
	for _, tc := range []struct {
		name   string
		tar    []byte
		mangle func([]byte) []byte
		limits Limits
		want   string
	}{
		{name: "corrupt blob", tar: good, mangle: func(b []byte) []byte {
			c := bytes.Clone(b)
			c[len(c)/2] ^= 0xff
			return c
		}, want: "corrupt"},
		{name: "truncated blob", tar: good, mangle: func(b []byte) []byte { return b[:len(b)-12] }, want: "unexpected EOF"},
		{name: "other content, same length", tar: good, mangle: func([]byte) []byte { return gz(t, tarOf(t, "d a/", "f a/x HELLO")) }, want: "digest"},
		{name: "dot-dot", tar: tarOf(t, "f ../evil x"), want: "leaves the layer"},
		{name: "dot-dot inside", tar: tarOf(t, "d a/", "f a/../../evil x"), want: "leaves the layer"},
		{name: "absolute", tar: tarOf(t, "f /etc/evil x"), want: "absolute"},
		{name: "through a symlink", tar: tarOf(t, "l out /tmp", "f out/evil x"), want: "symlink"},
		{name: "through a relative symlink", tar: tarOf(t, "d a/", "l a/up ..", "f a/up/evil x"), want: "symlink"},
		{name: "hard link out", tar: tarOf(t, "h evil ../../../etc/passwd"), want: "outside the layer"},
		{name: "hard link to nothing", tar: tarOf(t, "h evil nothing"), want: "not in this layer"},
		{name: "too many entries", tar: tarOf(t, "f a 1", "f b 2", "f c 3", "f d 4"), limits: Limits{MaxBytes: 1 << 20, MaxEntries: 3}, want: "tar bomb"},
		{name: "too large", tar: tarOf(t, "f a 123456", "f b 123456"), limits: Limits{MaxBytes: 10, MaxEntries: 100}, want: "tar bomb"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := &Store{Dir: t.TempDir(), Limits: tc.limits}
			_, err := unpack(t, st, tc.tar, tc.mangle)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("unpack: %v, want an error saying %q", err, tc.want)
			}
			if left := storeLeft(t, st); len(left) > 0 {
				t.Errorf("left behind: %q", left)
			}
			if _, err := os.Lstat("/tmp/evil"); err == nil {
				t.Errorf("/tmp/evil was written")
			}
		})
	}
}

// TestWhiteoutsAndOwners: OCI whiteouts become the overlay's markers and owners stay, as root
// for real and without privileges in override attributes and AUFS markers.
func TestWhiteoutsAndOwners(t *testing.T) {
	layer := tarOf(t, "d dir/", "f dir/.wh..wh..opq ", "f .wh.gone ", "f file data", "h link file", "c dev")
	for _, unpriv := range []bool{false, true} {
		if !unpriv && os.Geteuid() != 0 {
			continue // the privileged form needs root; CI runs as root
		}
		st := &Store{Dir: t.TempDir(), Unprivileged: unpriv}
		dir, err := unpack(t, st, layer, nil)
		check(t, err)
		var s unix.Stat_t
		check(t, unix.Lstat(filepath.Join(dir, "file"), &s))
		if !unpriv {
			check(t, unix.Lstat(filepath.Join(dir, "gone"), &s))
			if !whiteout.IsWhiteoutDev(&s) {
				t.Errorf("privileged: gone is not a whiteout device (mode %o)", s.Mode)
			}
			if v, err := getx(filepath.Join(dir, "dir"), whiteout.TrustedPrefix+"opaque"); v != "y" {
				t.Errorf("privileged: dir not opaque: %q %v", v, err)
			}
			check(t, unix.Lstat(filepath.Join(dir, "file"), &s))
			if s.Uid != 1000 || s.Gid != 100 || s.Mode&0o7777 != 0o644 || s.Nlink != 2 {
				t.Errorf("privileged: file %d:%d %o nlink %d", s.Uid, s.Gid, s.Mode&0o7777, s.Nlink)
			}
			continue
		}
		if _, err := os.Lstat(filepath.Join(dir, ".wh.gone")); err != nil {
			t.Errorf("unprivileged: no AUFS marker: %v", err)
		}
		if v, err := getx(filepath.Join(dir, "dir"), whiteout.UserPrefix+"opaque"); v != "y" {
			t.Errorf("unprivileged: dir not opaque: %q %v", v, err)
		}
		for name, want := range map[string]string{".": "0:0:0755", "file": "1000:100:0644", "dev": "1000:100:0644:char-1-3", "dir": "1000:100:0755"} {
			if v, err := getx(filepath.Join(dir, name), override.Attr); v != want {
				t.Errorf("unprivileged: %s override %q %v, want %q", name, v, err, want)
			}
		}
	}
}

func getx(p, name string) (string, error) {
	var v [128]byte
	n, err := unix.Lgetxattr(p, name, v[:])
	if err != nil {
		return "", err
	}
	return string(v[:n]), nil
}

// TestExportRoundTrip: a layer unpacked and exported again holds the same entries.
func TestExportRoundTrip(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("owners and devices need root; CI runs as root")
	}
	layer := tarOf(t, "d dir/", "f dir/.wh..wh..opq ", "f .wh.gone ", "f file data", "h link file", "c dev", "l sym file")
	dir, err := unpack(t, &Store{Dir: t.TempDir()}, layer, nil)
	check(t, err)
	out := filepath.Join(t.TempDir(), "l.tar")
	ex, err := Export(dir, out, Uncompressed)
	check(t, err)
	data, err := os.ReadFile(out)
	check(t, err)
	if digest.SHA256.FromBytes(data) != ex.Digest || ex.Digest != ex.DiffID || ex.Size != int64(len(data)) {
		t.Errorf("Export says %+v for a file of %d bytes", ex, len(data))
	}
	list := func(b []byte) []string {
		var out []string
		tr := tar.NewReader(bytes.NewReader(b))
		for {
			h, err := tr.Next()
			if err != nil {
				break
			}
			attrs := h.FileInfo().Mode().String() + " " + strconv.Itoa(h.Uid) + ":" + strconv.Itoa(h.Gid)
			switch {
			case strings.HasPrefix(path.Base(h.Name), whiteout.Prefix):
				attrs = "marker" // a marker's owner and mode do not matter
			case h.Typeflag == tar.TypeSymlink:
				attrs = strconv.Itoa(h.Uid) + ":" + strconv.Itoa(h.Gid) // symlinks have no mode
			}
			out = append(out, strings.Join([]string{strings.TrimSuffix(h.Name, "/"), string(h.Typeflag), h.Linkname, attrs}, " "))
		}
		sort.Strings(out)
		return out
	}
	in, got := list(layer), list(data)
	if strings.Join(in, "\n") != strings.Join(got, "\n") {
		t.Errorf("round trip:\n in  %q\n out %q", in, got)
	}
}

// TestExportLayout: layers exported with each compression and added to a new layout are
// read back by Open and unpack to the tree they came from.
func TestExportLayout(t *testing.T) {
	src := t.TempDir()
	check(t, os.MkdirAll(filepath.Join(src, "d"), 0o755))
	check(t, os.WriteFile(filepath.Join(src, "d", "f"), bytes.Repeat([]byte("layer "), 1000), 0o640))
	layout := filepath.Join(t.TempDir(), "layout")
	for _, c := range []Compression{Uncompressed, Gzip, Zstd} {
		out := filepath.Join(t.TempDir(), "layer")
		ex, err := Export(src, out, c)
		check(t, err)
		check(t, AppendLayer(layout, "", out, ex))
	}
	img, err := Open("oci:" + layout)
	check(t, err)
	if len(img.Layers) != 3 || img.Layers[0].DiffID != img.Layers[2].DiffID {
		t.Fatalf("layout has %d layers: %+v", len(img.Layers), img.Layers)
	}
	for i, l := range img.Layers {
		if i == 0 && l.Digest != l.DiffID || i > 0 && l.Digest == l.DiffID {
			t.Errorf("layer %d: digest %s, diff id %s", i, l.Digest, l.DiffID)
		}
		// One store per layer: the same content would be unpacked only once in one store.
		st := &Store{Dir: t.TempDir()}
		dir, err := st.Unpack(l)
		check(t, err)
		data, err := os.ReadFile(filepath.Join(dir, "d", "f"))
		if err != nil || !bytes.Equal(data, bytes.Repeat([]byte("layer "), 1000)) {
			t.Errorf("layer %d: d/f %d bytes, %v", i, len(data), err)
		}
	}
}
