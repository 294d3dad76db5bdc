package image

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/layerfs/layerfs/unionfs/override"
	"github.com/layerfs/layerfs/unionfs/workdir"
	"github.com/layerfs/layerfs/unionfs/xattrs"
	"github.com/layerfs/layerfs/whiteout"
	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"
)

// Compression is how Export compresses the layer.
type Compression int

// The compressions a layer may have (OCI media types tar, tar+gzip, tar+zstd).
const (
	Uncompressed Compression = iota
	Gzip
	Zstd
)

// MediaType is the OCI media type of a layer with this compression.
func (c Compression) MediaType() string {
	switch c {
	case Gzip:
		return specs.MediaTypeImageLayerGzip
	case Zstd:
		return specs.MediaTypeImageLayerZstd
	}
	return specs.MediaTypeImageLayer
}

// Exported describes a layer Export wrote.
type Exported struct {
	Digest    digest.Digest // of the file as written
	DiffID    digest.Digest // of the uncompressed tar
	Size      int64
	MediaType string
}

// Export writes upper (a layerfs or kernel overlayfs upper directory) to file as an OCI
// layer: whiteouts of every format become ".wh.NAME" entries, opaque directories get
// ".wh..wh..opq", hard links stay links, owners and modes kept in an override attribute are
// written as the view shows them, and the overlay's and layerfs's private attributes are left
// out. A directory moved with redirect_dir=on cannot be written (its lower contents are not
// in the upper, and a layer cannot say they moved): Export fails naming it.
func Export(upper, file string, c Compression) (Exported, error) {
	var ex Exported
	tmp, err := os.CreateTemp(filepath.Dir(file), ".layerfs-export-")
	if err != nil {
		return ex, err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	blob := digest.SHA256.Digester()
	counted := &countWriter{w: io.MultiWriter(tmp, blob.Hash())}
	var zw io.WriteCloser
	switch c {
	case Gzip:
		zw = gzip.NewWriter(counted)
	case Zstd:
		if zw, err = zstd.NewWriter(counted); err != nil {
			return ex, err
		}
	default:
		zw = nopCloser{counted}
	}
	diff := digest.SHA256.Digester()
	tw := tar.NewWriter(io.MultiWriter(zw, diff.Hash()))
	w := &exporter{tw: tw, links: map[[2]uint64]string{}, buf: make([]byte, 1<<20)}
	root, err := unix.Open(upper, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return ex, fmt.Errorf("upper %s: %w", upper, err)
	}
	defer unix.Close(root)
	if err := w.dir(root, ""); err != nil {
		return ex, err
	}
	if err := tw.Close(); err != nil {
		return ex, err
	}
	if err := zw.Close(); err != nil {
		return ex, err
	}
	if err := tmp.Sync(); err != nil {
		return ex, err
	}
	if err := os.Rename(tmp.Name(), file); err != nil {
		return ex, err
	}
	return Exported{Digest: blob.Digest(), DiffID: diff.Digest(), Size: counted.n, MediaType: c.MediaType()}, nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n += int64(n)
	return n, err
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

type exporter struct {
	tw    *tar.Writer
	links map[[2]uint64]string // dev, ino of a hard-linked object -> its first name
	buf   []byte
}

// dir writes the entries of directory rel (open as fd), sorted, each directory before what
// it holds.
func (w *exporter) dir(fd int, rel string) error {
	names, err := workdir.ReadNames(fd)
	if err != nil {
		return fmt.Errorf("list %s: %w", rel, err)
	}
	sort.Strings(names)
	for _, name := range names {
		if err := w.entry(fd, rel, name); err != nil {
			return err
		}
	}
	return nil
}

func (w *exporter) entry(dirfd int, rel, name string) error {
	p := name
	if rel != "" {
		p = rel + "/" + name
	}
	var st unix.Stat_t
	if err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	attrs, err := xattrsOf(dirfd, name)
	if err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	mtime := time.Unix(st.Mtim.Unix())
	wh := func(n string) error {
		return w.tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: n, ModTime: mtime, Format: tar.FormatPAX})
	}
	// Markers first: they become OCI whiteouts. The classifier decides what is one (an
	// upper written by hand or by another tool may hold xattr whiteouts too).
	if name == whiteout.OpaqueFile {
		return nil // written with its directory, from the directory's DirInfo
	}
	if whiteout.IsMarkerName(name) {
		return wh(p) // already an AUFS/OCI whiteout, ".wh.NAME"
	}
	if e, err := whiteout.ClassifyStat(dirfd, name, &st, whiteout.Rule{Xattr: true}); err != nil {
		return fmt.Errorf("%s: %w", p, err)
	} else if e.Kind == whiteout.Whiteout {
		return wh(dirOf(rel) + whiteout.Prefix + name)
	}
	_, kernelMeta := attrs[whiteout.TrustedPrefix+"metacopy"]
	if _, userMeta := attrs[whiteout.UserPrefix+"metacopy"]; kernelMeta || userMeta {
		return fmt.Errorf("%s: a metacopy upper file (its data is in a lower layer): export needs the data copied up", p)
	}
	h := &tar.Header{Name: p, Mode: int64(st.Mode & 0o7777), Uid: int(st.Uid), Gid: int(st.Gid),
		ModTime: mtime, Format: tar.FormatPAX}
	for n, v := range attrs {
		if whiteout.IsPrivateXattr(n) || n == override.Attr || strings.HasSuffix(n, ".override_stat") {
			continue
		}
		if h.PAXRecords == nil {
			h.PAXRecords = map[string]string{}
		}
		h.PAXRecords["SCHILY.xattr."+n] = v
	}
	typ := st.Mode & unix.S_IFMT
	rdev := st.Rdev
	if v, ok := attrs[override.Attr]; ok {
		o, ok := override.Parse(v)
		if !ok {
			return fmt.Errorf("%s: %s %q is malformed", p, override.Attr, v)
		}
		h.Uid, h.Gid, h.Mode = int(o.Uid), int(o.Gid), int64(o.Mode)
		if o.Type != 0 && typ == unix.S_IFREG {
			typ, rdev = o.Type, o.Rdev // a file standing in for what the layer could not hold
		}
	}
	if typ != unix.S_IFDIR && st.Nlink > 1 {
		key := [2]uint64{st.Dev, st.Ino}
		if first, ok := w.links[key]; ok {
			// With the object's owner and mode, as docker and podman write links: their
			// unpackers apply a link's header to the object.
			h.Typeflag, h.Linkname = tar.TypeLink, first
			return w.tw.WriteHeader(h)
		}
		w.links[key] = p
	}
	switch typ {
	case unix.S_IFDIR:
		info, err := whiteout.ReadDirInfo(dirfd, name)
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		if info.HasRedirect {
			return fmt.Errorf("%s: a directory moved with redirect_dir=on (its lower contents are not in the upper); an OCI layer cannot say where it moved", p)
		}
		h.Typeflag, h.Name = tar.TypeDir, p+"/"
		if err := w.tw.WriteHeader(h); err != nil {
			return err
		}
		if info.Opaque {
			if err := wh(p + "/" + whiteout.OpaqueFile); err != nil {
				return err
			}
		}
		fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		defer unix.Close(fd)
		return w.dir(fd, p)
	case unix.S_IFREG:
		h.Typeflag, h.Size = tar.TypeReg, st.Size
		if st.Mode&unix.S_IFMT != unix.S_IFREG {
			h.Size = 0
		}
		if err := w.tw.WriteHeader(h); err != nil {
			return err
		}
		if h.Size == 0 {
			return nil
		}
		fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		f := os.NewFile(uintptr(fd), p)
		defer f.Close()
		n, err := io.CopyBuffer(w.tw, io.LimitReader(f, h.Size), w.buf)
		if err == nil && n != h.Size {
			err = fmt.Errorf("changed while exported (%d of %d bytes)", n, h.Size)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		return nil
	case unix.S_IFLNK:
		buf := make([]byte, unix.PathMax)
		n, err := unix.Readlinkat(dirfd, name, buf)
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		h.Typeflag, h.Linkname = tar.TypeSymlink, string(buf[:n])
	case unix.S_IFCHR, unix.S_IFBLK:
		h.Typeflag = tar.TypeChar
		if typ == unix.S_IFBLK {
			h.Typeflag = tar.TypeBlock
		}
		h.Devmajor, h.Devminor = int64(unix.Major(rdev)), int64(unix.Minor(rdev))
	case unix.S_IFIFO:
		h.Typeflag = tar.TypeFifo
	case unix.S_IFSOCK:
		return nil // sockets are not kept in layers (tar cannot hold them)
	}
	return w.tw.WriteHeader(h)
}

func dirOf(rel string) string {
	if rel == "" {
		return ""
	}
	return rel + "/"
}

// xattrsOf reads every extended attribute of entry name of dirfd.
func xattrsOf(dirfd int, name string) (map[string]string, error) {
	p := xattrs.Path(dirfd, name)
	names, err := xattrs.List(p, false)
	if errors.Is(err, unix.ENOTSUP) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	out := make(map[string]string, len(names))
	for _, a := range names {
		v, err := xattrs.Get(p, a, false)
		if errors.Is(err, unix.ENODATA) {
			continue // gone in between
		}
		if err != nil {
			return nil, fmt.Errorf("attribute %s: %w", a, err)
		}
		out[a] = string(v)
	}
	return out, nil
}
