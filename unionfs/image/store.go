package image

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	digest "github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

// Limits bound what one layer may unpack to, so a hostile or broken image (a tar bomb) fails
// instead of filling the disk.
type Limits struct {
	MaxBytes   int64 // total size of the regular files
	MaxEntries int   // number of tar entries
}

// DefaultLimits are generous for real images (the largest common ones hold a few GiB in a
// few hundred thousand files).
var DefaultLimits = Limits{MaxBytes: 64 << 30, MaxEntries: 4 << 20}

// Store keeps unpacked layers, one directory per layer content: Dir/layers/sha256/<hex of the
// uncompressed tar's digest>. A layer is unpacked into Dir/layers/.tmp-… and renamed into
// place once complete and verified, so a directory under its digest is always whole.
type Store struct {
	Dir    string
	Limits Limits
	// Progress, if set, is called while a blob is read with the bytes read so far and the
	// blob's size (-1 when unknown).
	Progress func(layer digest.Digest, done, total int64)
	// Unprivileged makes the store write layers as an unprivileged user must, even as root:
	// owners, modes and devices in override attributes, whiteouts as AUFS markers, opaque
	// directories in user.overlay.opaque. Without root it is always so.
	Unprivileged bool
	// Warn, if set, receives what could not be kept (attributes an unprivileged user cannot
	// set), once per layer.
	Warn func(msg string)
}

// DefaultStore is where layerfs keeps layers when not told: /var/lib/layerfs as root,
// $XDG_DATA_HOME/layerfs (or ~/.local/share/layerfs) otherwise.
func DefaultStore() (string, error) {
	if os.Geteuid() == 0 {
		return "/var/lib/layerfs", nil
	}
	if d := os.Getenv("XDG_DATA_HOME"); d != "" {
		return filepath.Join(d, "layerfs"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("no store given and no home directory: %w", err)
	}
	return filepath.Join(home, ".local", "share", "layerfs"), nil
}

// LayerDir is where the layer whose uncompressed digest is diffID lives in the store.
func (s *Store) LayerDir(diffID digest.Digest) string {
	return filepath.Join(s.Dir, "layers", diffID.Algorithm().String(), diffID.Encoded())
}

// Has reports whether the layer is in the store.
func (s *Store) Has(diffID digest.Digest) bool {
	st, err := os.Stat(s.LayerDir(diffID))
	return err == nil && st.IsDir()
}

// UnpackImage unpacks every layer of img that the store lacks and returns the layer
// directories, topmost first (as lowerdir= takes them).
func (s *Store) UnpackImage(img *Image) ([]string, error) {
	dirs := make([]string, len(img.Layers))
	for i, l := range img.Layers {
		dir, err := s.Unpack(l)
		if err != nil {
			return nil, err
		}
		dirs[len(dirs)-1-i] = dir
	}
	return dirs, nil
}

// Unpack makes layer l a directory of the store, unless it is there already, and returns it.
// The blob's digest and the uncompressed tar's are checked while it is read; a layer that
// fails leaves nothing behind.
func (s *Store) Unpack(l Layer) (string, error) {
	if err := l.DiffID.Validate(); err != nil {
		return "", fmt.Errorf("layer %q: %w", l.DiffID, err)
	}
	final := s.LayerDir(l.DiffID)
	if s.Has(l.DiffID) {
		return final, nil
	}
	if err := os.MkdirAll(filepath.Dir(final), 0o755); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(filepath.Join(s.Dir, "layers"), ".tmp-")
	if err != nil {
		return "", err
	}
	done := false
	defer func() {
		if !done {
			os.RemoveAll(tmp) // every directory it made is writable by us (extract.go)
		}
	}()
	if err := s.unpackInto(l, tmp); err != nil {
		return "", fmt.Errorf("layer %s: %w", l.DiffID, err)
	}
	if err := os.Rename(tmp, final); err != nil {
		if errors.Is(err, unix.EEXIST) || errors.Is(err, unix.ENOTEMPTY) {
			return final, nil // unpacked meanwhile by another process: ours goes
		}
		return "", err
	}
	done = true
	return final, nil
}

func (s *Store) unpackInto(l Layer, dir string) error {
	rc, err := l.Open()
	if err != nil {
		return fmt.Errorf("open blob: %w", err)
	}
	defer rc.Close()
	var blob io.Reader = rc
	if s.Progress != nil {
		blob = &progressReader{r: rc, report: func(n int64) { s.Progress(l.DiffID, n, l.Size) }}
	}
	var blobDigest digest.Digester
	if l.Digest != "" {
		blobDigest = l.Digest.Algorithm().Digester()
		blob = io.TeeReader(blob, blobDigest.Hash())
	}
	plain, closeFn, err := decompress(blob)
	if err != nil {
		return err
	}
	defer closeFn()
	diff := l.DiffID.Algorithm().Digester()
	limits := s.Limits
	if limits == (Limits{}) {
		limits = DefaultLimits
	}
	x, err := newExtractor(dir, limits)
	if err != nil {
		return err
	}
	x.privileged = x.privileged && !s.Unprivileged
	defer x.close()
	if err := x.extract(io.TeeReader(plain, diff.Hash())); err != nil {
		return err
	}
	// What follows the tar's end (padding) is part of both digests.
	if _, err := io.Copy(diff.Hash(), plain); err != nil {
		return fmt.Errorf("read blob: %w", err)
	}
	if blobDigest != nil {
		if _, err := io.Copy(io.Discard, blob); err != nil {
			return fmt.Errorf("read blob: %w", err)
		}
		if got := blobDigest.Digest(); got != l.Digest {
			return fmt.Errorf("blob digest %s, expected %s: the blob is corrupt or truncated", got, l.Digest)
		}
	}
	if got := diff.Digest(); got != l.DiffID {
		return fmt.Errorf("uncompressed digest %s, expected %s: the blob is corrupt or truncated", got, l.DiffID)
	}
	if err := x.finish(); err != nil {
		return err
	}
	if s.Warn != nil && x.dropped > 0 {
		s.Warn(fmt.Sprintf("layer %s: %d attributes could not be kept without privileges (e.g. %s)", l.DiffID, x.dropped, x.droppedExample))
	}
	return nil
}

type progressReader struct {
	r      io.Reader
	n      int64
	report func(int64)
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.n += int64(n)
	p.report(p.n)
	return n, err
}
