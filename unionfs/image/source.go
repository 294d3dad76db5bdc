// Package image turns OCI images into layer stacks and uppers back into OCI layers, without a
// container engine: Open reads an image (an OCI image layout directory, or a docker save /
// podman save archive), Store.Unpack makes each of its layers a directory layerfs mounts
// (whiteouts and opaque directories in the overlay's on-disk format), and Export writes an
// upper directory as an OCI layer tar.
package image

import (
	"archive/tar"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go/v1"
)

// Layer is one layer of an image, bottom first in Image.Layers.
type Layer struct {
	// Digest is the blob's digest (of the compressed bytes, as the manifest names it);
	// DiffID the digest of the uncompressed tar (the config's rootfs.diff_ids), which names
	// the layer in a Store: one content, however compressed, is stored once.
	Digest, DiffID digest.Digest
	Size           int64 // of the blob; -1 when the source does not say
	open           func() (io.ReadCloser, error)
}

// Open opens the layer's blob.
func (l Layer) Open() (io.ReadCloser, error) { return l.open() }

// Image is an image's layers and configuration.
type Image struct {
	Layers []Layer // bottom first
	Config specs.Image
}

// Open reads the image named by src:
//
//	oci:DIR[:TAG]   an OCI image layout (skopeo copy … oci:DIR:TAG, podman save --format oci-dir)
//	DIR[:TAG]       the same, when DIR holds an oci-layout file
//	FILE            a docker save / podman save archive (docker-archive or oci-archive)
//
// Without a TAG a layout must hold one image.
func Open(src string) (*Image, error) {
	ref := strings.TrimPrefix(src, "oci:")
	dir, tag := ref, ""
	if _, err := os.Stat(ref); err != nil {
		// DIR:TAG, where a tag may hold colons itself (localhost/img:1): the first split
		// whose DIR exists.
		for i := 0; i < len(ref); i++ {
			if ref[i] != ':' || i == 0 {
				continue
			}
			if st, err := os.Stat(ref[:i]); err == nil && st.IsDir() {
				dir, tag = ref[:i], ref[i+1:]
				break
			}
		}
	}
	st, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", src, err)
	}
	if st.IsDir() {
		return openLayout(dirBlobs(dir), tag, src)
	}
	return openArchive(dir)
}

// blobSource reads the files of an image layout or an archive by their path in it.
type blobSource interface {
	open(name string) (io.ReadCloser, error)
}

type dirBlobs string

func (d dirBlobs) open(name string) (io.ReadCloser, error) {
	name = path.Clean("/" + name)[1:] // stays inside the layout
	return os.Open(filepath.Join(string(d), name))
}

func blobPath(d digest.Digest) string { return "blobs/" + d.Algorithm().String() + "/" + d.Encoded() }

// readJSON decodes file name of src into v, reading at most 16 MiB (a manifest or a config).
func readJSON(src blobSource, name string, v any, want digest.Digest) error {
	f, err := src.open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, 16<<20))
	if err != nil {
		return fmt.Errorf("read %s: %w", name, err)
	}
	if want != "" {
		if err := want.Validate(); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		if got := want.Algorithm().FromBytes(data); got != want {
			return fmt.Errorf("%s: digest %s, expected %s: corrupt image", name, got, want)
		}
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// openLayout reads an OCI image layout: index.json, the manifest of tag (its
// org.opencontainers.image.ref.name annotation), the config and the layers it names.
func openLayout(src blobSource, tag, name string) (*Image, error) {
	var index specs.Index
	if err := readJSON(src, "index.json", &index, ""); err != nil {
		return nil, fmt.Errorf("image %s is not an OCI image layout: %w", name, err)
	}
	var chosen []specs.Descriptor
	var tags []string
	for _, m := range index.Manifests {
		t := m.Annotations[specs.AnnotationRefName]
		tags = append(tags, t)
		if tag == "" || t == tag {
			chosen = append(chosen, m)
		}
	}
	switch {
	case len(chosen) == 0 && tag != "":
		return nil, fmt.Errorf("image %s: no tag %q in the layout (it has %q)", name, tag, tags)
	case len(chosen) == 0:
		return nil, fmt.Errorf("image %s: the layout holds no image", name)
	case len(chosen) > 1:
		return nil, fmt.Errorf("image %s: the layout holds %d images (%q): name one as %s:TAG", name, len(chosen), tags, name)
	}
	md := chosen[0]
	if md.MediaType == specs.MediaTypeImageIndex {
		return nil, fmt.Errorf("image %s: %s is an index of several platforms; copy one platform's image (skopeo copy --override-arch …)", name, md.Digest)
	}
	var m specs.Manifest
	if err := readJSON(src, blobPath(md.Digest), &m, md.Digest); err != nil {
		return nil, fmt.Errorf("image %s: manifest: %w", name, err)
	}
	img := &Image{}
	if err := readJSON(src, blobPath(m.Config.Digest), &img.Config, m.Config.Digest); err != nil {
		return nil, fmt.Errorf("image %s: config: %w", name, err)
	}
	if len(img.Config.RootFS.DiffIDs) != len(m.Layers) {
		return nil, fmt.Errorf("image %s: the manifest names %d layers, the config %d", name, len(m.Layers), len(img.Config.RootFS.DiffIDs))
	}
	for i, d := range m.Layers {
		if err := d.Digest.Validate(); err != nil {
			return nil, fmt.Errorf("image %s: layer %d: %w", name, i, err)
		}
		p := blobPath(d.Digest)
		img.Layers = append(img.Layers, Layer{
			Digest: d.Digest, DiffID: img.Config.RootFS.DiffIDs[i], Size: d.Size,
			open: func() (io.ReadCloser, error) { return src.open(p) },
		})
	}
	return img, nil
}

// archive is a tar file read member by member (docker save and podman save write them).
type archive string

func (a archive) open(name string) (io.ReadCloser, error) {
	f, err := os.Open(string(a))
	if err != nil {
		return nil, err
	}
	tr := tar.NewReader(f)
	want := path.Clean(name)
	for {
		h, err := tr.Next()
		if err != nil {
			f.Close()
			if errors.Is(err, io.EOF) {
				return nil, fmt.Errorf("%s: no %s in the archive: %w", a, name, os.ErrNotExist)
			}
			return nil, fmt.Errorf("%s: %w", a, err)
		}
		if path.Clean(h.Name) == want && h.Typeflag == tar.TypeReg {
			return struct {
				io.Reader
				io.Closer
			}{tr, f}, nil
		}
	}
}

// dockerManifest is one image of a docker save archive's manifest.json.
type dockerManifest struct {
	Config   string
	RepoTags []string
	Layers   []string
}

// openArchive reads a docker-archive (manifest.json, a config and layer tars by path) or an
// oci-archive (an image layout in a tar).
func openArchive(file string) (*Image, error) {
	a := archive(file)
	var ms []dockerManifest
	err := readJSON(a, "manifest.json", &ms, "")
	if errors.Is(err, os.ErrNotExist) {
		return openLayout(a, "", file)
	}
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", file, err)
	}
	if len(ms) != 1 {
		return nil, fmt.Errorf("image %s: the archive holds %d images; layerfs reads archives of one", file, len(ms))
	}
	img := &Image{}
	cfgDigest := digest.Digest("")
	if strings.HasPrefix(ms[0].Config, "blobs/") {
		// Docker 25 and later name blobs by digest.
		parts := strings.Split(ms[0].Config, "/")
		cfgDigest = digest.NewDigestFromEncoded(digest.Algorithm(parts[1]), parts[len(parts)-1])
	} else if hexName := strings.TrimSuffix(ms[0].Config, ".json"); digest.SHA256.Validate(hexName) == nil {
		cfgDigest = digest.NewDigestFromEncoded(digest.SHA256, hexName)
	}
	if err := readJSON(a, ms[0].Config, &img.Config, cfgDigest); err != nil {
		return nil, fmt.Errorf("image %s: config: %w", file, err)
	}
	if len(img.Config.RootFS.DiffIDs) != len(ms[0].Layers) {
		return nil, fmt.Errorf("image %s: manifest.json names %d layers, the config %d", file, len(ms[0].Layers), len(img.Config.RootFS.DiffIDs))
	}
	for i, p := range ms[0].Layers {
		p := p
		img.Layers = append(img.Layers, Layer{
			// Layers of a docker archive are tars; their names are not digests to trust.
			DiffID: img.Config.RootFS.DiffIDs[i], Size: -1,
			open: func() (io.ReadCloser, error) { return a.open(p) },
		})
	}
	return img, nil
}
