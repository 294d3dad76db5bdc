package image

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"time"

	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// AppendLayer adds the layer Export wrote to file on top of the image tag of the OCI image
// layout dir (the only image when tag is ""), updating its config (diff_ids, history), its
// manifest and index.json, digests and sizes included. A dir without a layout becomes one,
// holding an image of this layer alone, named tag. The blob is copied into the layout.
func AppendLayer(dir, tag, file string, ex Exported) error {
	var cfg v1.Image
	var m v1.Manifest
	var index v1.Index
	at := -1 // the manifest replaced in index.Manifests
	if _, err := os.Stat(filepath.Join(dir, "index.json")); errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		if err := writeFileAtomic(filepath.Join(dir, v1.ImageLayoutFile), []byte(`{"imageLayoutVersion":"1.0.0"}`)); err != nil {
			return err
		}
		index = v1.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: v1.MediaTypeImageIndex}
		cfg = v1.Image{Platform: v1.Platform{OS: "linux", Architecture: runtime.GOARCH}, RootFS: v1.RootFS{Type: "layers"}}
		m = v1.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: v1.MediaTypeImageManifest}
	} else {
		src := dirBlobs(dir)
		if err := readJSON(src, "index.json", &index, ""); err != nil {
			return fmt.Errorf("layout %s: %w", dir, err)
		}
		for i, d := range index.Manifests {
			if tag == "" || d.Annotations[v1.AnnotationRefName] == tag {
				if at >= 0 {
					return fmt.Errorf("layout %s holds several images: name one with --tag", dir)
				}
				at = i
			}
		}
		if at < 0 {
			return fmt.Errorf("layout %s: no image tagged %q", dir, tag)
		}
		md := index.Manifests[at]
		if err := readJSON(src, blobPath(md.Digest), &m, md.Digest); err != nil {
			return fmt.Errorf("layout %s: manifest: %w", dir, err)
		}
		if err := readJSON(src, blobPath(m.Config.Digest), &cfg, m.Config.Digest); err != nil {
			return fmt.Errorf("layout %s: config: %w", dir, err)
		}
	}
	if err := copyBlob(dir, file, ex.Digest); err != nil {
		return err
	}
	now := time.Now().UTC()
	cfg.Created = &now
	cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, ex.DiffID)
	cfg.History = append(cfg.History, v1.History{Created: &now, CreatedBy: "layerfs image export"})
	cfgDesc, err := writeBlobJSON(dir, cfg, v1.MediaTypeImageConfig)
	if err != nil {
		return err
	}
	m.Config = cfgDesc
	m.Layers = append(m.Layers, v1.Descriptor{MediaType: ex.MediaType, Digest: ex.Digest, Size: ex.Size})
	md, err := writeBlobJSON(dir, m, v1.MediaTypeImageManifest)
	if err != nil {
		return err
	}
	if at >= 0 {
		md.Annotations = index.Manifests[at].Annotations
		index.Manifests[at] = md
	} else {
		if tag != "" {
			md.Annotations = map[string]string{v1.AnnotationRefName: tag}
		}
		index.Manifests = append(index.Manifests, md)
	}
	data, err := json.Marshal(index)
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, "index.json"), data)
}

func writeBlobJSON(dir string, v any, mediaType string) (v1.Descriptor, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return v1.Descriptor{}, err
	}
	d := digest.SHA256.FromBytes(data)
	if err := os.MkdirAll(filepath.Join(dir, "blobs", "sha256"), 0o755); err != nil {
		return v1.Descriptor{}, err
	}
	if err := writeFileAtomic(filepath.Join(dir, blobPath(d)), data); err != nil {
		return v1.Descriptor{}, err
	}
	return v1.Descriptor{MediaType: mediaType, Digest: d, Size: int64(len(data))}, nil
}

func copyBlob(dir, file string, d digest.Digest) error {
	dst := filepath.Join(dir, blobPath(d))
	if _, err := os.Stat(dst); err == nil {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	in, err := os.Open(file)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp, err := os.CreateTemp(filepath.Dir(dst), ".tmp-")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	if _, err := io.Copy(tmp, in); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), dst)
}

// writeFileAtomic replaces name with data in one step.
func writeFileAtomic(name string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(name), ".tmp-")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	if _, err := tmp.Write(data); err != nil {
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), name)
}
