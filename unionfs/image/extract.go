package image

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/layerfs/layerfs/unionfs/override"
	"github.com/layerfs/layerfs/unionfs/workdir"
	"github.com/layerfs/layerfs/unionfs/xattrs"
	"github.com/layerfs/layerfs/whiteout"
	"golang.org/x/sys/unix"
)

// extractor writes one layer's tar into a directory, beneath it only: every name is opened
// relative to the layer root with RESOLVE_BENEATH and no symlinks, so neither a "../" nor a
// symlink met on the way can lead out.
type extractor struct {
	root       int // O_PATH descriptor of the layer directory
	privileged bool
	limits     Limits
	entries    int
	bytes      int64
	buf        []byte
	// dirTimes are set last, deepest first: adding entries moves a directory's mtime.
	dirTimes map[string]time.Time
	// rootHdr is the tar's entry for the layer root itself ("./"), if any.
	rootHdr *tar.Header
	// dropped counts attributes that could not be set without privileges.
	dropped        int
	droppedExample string
}

func newExtractor(dir string, limits Limits) (*extractor, error) {
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	return &extractor{root: fd, privileged: os.Geteuid() == 0, limits: limits, buf: make([]byte, 1<<20), dirTimes: map[string]time.Time{}}, nil
}

func (x *extractor) close() { unix.Close(x.root) }

// cleanName turns a tar entry name into a path relative to the layer root ("" for the root),
// refusing names that leave it.
func cleanName(name string) (string, error) {
	if strings.HasPrefix(name, "/") {
		return "", fmt.Errorf("entry %q: absolute name", name)
	}
	c := path.Clean(name)
	if c == ".." || strings.HasPrefix(c, "../") {
		return "", fmt.Errorf("entry %q: leaves the layer", name)
	}
	if c == "." {
		return "", nil
	}
	return c, nil
}

func (x *extractor) extract(r io.Reader) error {
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read tar: %w", err)
		}
		x.entries++
		if x.entries > x.limits.MaxEntries {
			return fmt.Errorf("more than %d entries: refused as a tar bomb (--max-entries)", x.limits.MaxEntries)
		}
		if h.Typeflag == tar.TypeReg || h.Typeflag == tar.TypeRegA {
			x.bytes += h.Size
			if h.Size < 0 || x.bytes > x.limits.MaxBytes {
				return fmt.Errorf("more than %d bytes of files: refused as a tar bomb (--max-size)", x.limits.MaxBytes)
			}
		}
		if err := x.entry(tr, h); err != nil {
			return err
		}
	}
}

// entry writes one tar entry.
func (x *extractor) entry(tr *tar.Reader, h *tar.Header) error {
	switch h.Typeflag {
	case tar.TypeXGlobalHeader, tar.TypeXHeader, tar.TypeGNULongName, tar.TypeGNULongLink:
		return nil // read by archive/tar itself
	}
	name, err := cleanName(h.Name)
	if err != nil {
		return err
	}
	if name == "" {
		if h.Typeflag != tar.TypeDir {
			return fmt.Errorf("entry %q: the layer root is not a directory", h.Name)
		}
		x.rootHdr = h
		return nil
	}
	dir, base := path.Split(name)
	dir = strings.TrimSuffix(dir, "/")
	parent, err := x.mkdirs(dir)
	if err != nil {
		return fmt.Errorf("entry %q: %w", h.Name, err)
	}
	defer x.release(parent)
	// Whiteouts become the overlay's own markers.
	if base == whiteout.OpaqueFile {
		return x.markOpaque(parent, h.Name)
	}
	if hidden, ok := strings.CutPrefix(base, whiteout.Prefix); ok {
		return x.whiteout(parent, hidden, h)
	}
	// A later entry of a name replaces an earlier one, as tar x does; a directory stays
	// when a directory comes again.
	var st unix.Stat_t
	if unix.Fstatat(parent, base, &st, unix.AT_SYMLINK_NOFOLLOW) == nil {
		if !(h.Typeflag == tar.TypeDir && st.Mode&unix.S_IFMT == unix.S_IFDIR) {
			if err := workdir.RemoveAll(parent, base); err != nil {
				return fmt.Errorf("entry %q: replace: %w", h.Name, err)
			}
		}
	}
	var standIn override.Stat // the type of a file standing in for what cannot be made
	switch h.Typeflag {
	case tar.TypeReg, tar.TypeRegA:
		err = x.file(parent, base, tr, h.Size)
	case tar.TypeDir:
		err = unix.Mkdirat(parent, base, 0o700)
		if errors.Is(err, unix.EEXIST) {
			err = nil
		}
		x.dirTimes[name] = h.ModTime
	case tar.TypeSymlink:
		err = unix.Symlinkat(h.Linkname, parent, base)
	case tar.TypeLink:
		err = x.link(parent, base, h.Linkname)
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		kind, rdev := uint32(unix.S_IFCHR), unix.Mkdev(uint32(h.Devmajor), uint32(h.Devminor))
		switch h.Typeflag {
		case tar.TypeBlock:
			kind = unix.S_IFBLK
		case tar.TypeFifo:
			kind, rdev = unix.S_IFIFO, 0
		}
		if x.privileged {
			err = unix.Mknodat(parent, base, kind|0o600, int(rdev))
			break
		}
		// Without privileges a device cannot be made, and no special file can carry the
		// override attribute: an empty file stands in, its override saying what it is.
		standIn.Type, standIn.Rdev = kind, rdev
		err = x.file(parent, base, strings.NewReader(""), 0)
	default:
		return fmt.Errorf("entry %q: unsupported type %q", h.Name, h.Typeflag)
	}
	if err != nil {
		return fmt.Errorf("entry %q: %w", h.Name, err)
	}
	if h.Typeflag == tar.TypeLink {
		return nil // a second name: the object has its attributes already
	}
	if err := x.attributes(parent, base, h, standIn); err != nil {
		return fmt.Errorf("entry %q: %w", h.Name, err)
	}
	return nil
}

// mkdirs opens directory rel of the layer, making what is missing of it (as tar does for
// entries whose directory has no entry of its own).
func (x *extractor) mkdirs(rel string) (int, error) {
	if rel == "" {
		return x.root, nil
	}
	fd, err := x.openDir(rel)
	if err == nil || !errors.Is(err, unix.ENOENT) {
		return fd, err
	}
	dir, base := path.Split(rel)
	parent, err := x.mkdirs(strings.TrimSuffix(dir, "/"))
	if err != nil {
		return -1, err
	}
	defer x.release(parent)
	if err := unix.Mkdirat(parent, base, 0o755); err != nil && !errors.Is(err, unix.EEXIST) {
		return -1, err
	}
	if !x.privileged {
		x.setOverride(parent, base, override.Stat{Mode: 0o755})
	}
	return x.openDir(rel)
}

func (x *extractor) openDir(rel string) (int, error) {
	if rel == "" {
		return x.root, nil
	}
	fd, err := unix.Openat2(x.root, rel, &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	})
	if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.EXDEV) {
		return -1, fmt.Errorf("directory %s goes through a symlink or out of the layer", rel)
	}
	if errors.Is(err, unix.ENOTDIR) {
		return -1, fmt.Errorf("%s is not a directory", rel)
	}
	return fd, err
}

func (x *extractor) release(fd int) {
	if fd != x.root {
		unix.Close(fd)
	}
}

// file writes a regular file's data.
func (x *extractor) file(parent int, base string, r io.Reader, size int64) error {
	fd, err := unix.Openat(parent, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return err
	}
	f := os.NewFile(uintptr(fd), base)
	defer f.Close()
	n, err := io.CopyBuffer(f, io.LimitReader(r, size), x.buf)
	if err == nil && n != size {
		err = fmt.Errorf("%d of %d bytes: the blob is truncated", n, size)
	}
	return err
}

// link makes base a second name of the layer's object target.
func (x *extractor) link(parent int, base, target string) error {
	t, err := cleanName(target)
	if err != nil || t == "" {
		return fmt.Errorf("hard link to %q: outside the layer", target)
	}
	dir, tbase := path.Split(t)
	tparent, err := x.openDir(strings.TrimSuffix(dir, "/"))
	if err != nil {
		return fmt.Errorf("hard link to %q: %w", target, err)
	}
	defer x.release(tparent)
	if err := unix.Linkat(tparent, tbase, parent, base, 0); err != nil {
		return fmt.Errorf("hard link to %q (not in this layer?): %w", target, err)
	}
	return nil
}

// whiteout hides name of the layers below: a character device 0/0, or where devices cannot
// be made, the AUFS marker itself (which layerfs and fuse-overlayfs honour).
func (x *extractor) whiteout(parent int, name string, h *tar.Header) error {
	if name == "" || strings.Contains(name, "/") || name == "." || name == ".." {
		return fmt.Errorf("entry %q: malformed whiteout", h.Name)
	}
	if err := workdir.RemoveAll(parent, name); err != nil {
		return err
	}
	if x.privileged {
		if err := whiteout.MakeWhiteoutAt(parent, name); err == nil {
			return nil
		} else if !errors.Is(err, unix.EPERM) {
			return fmt.Errorf("entry %q: %w", h.Name, err)
		}
	}
	return x.file(parent, whiteout.Prefix+name, strings.NewReader(""), 0)
}

// markOpaque makes directory parent opaque: trusted.overlay.opaque as root, as the kernel
// reads it; user.overlay.opaque otherwise (a kernel mount with userxattr and layerfs read it).
func (x *extractor) markOpaque(parent int, name string) error {
	prefix := whiteout.UserPrefix
	if x.privileged {
		prefix = whiteout.TrustedPrefix
	}
	if err := whiteout.SetOpaque(parent, "", prefix); err != nil {
		return fmt.Errorf("entry %q: %w", name, err)
	}
	return nil
}

// attributes gives base the entry's owner, mode, attributes and times: for real as root,
// else in the override attribute for what an unprivileged user cannot set.
func (x *extractor) attributes(parent int, base string, h *tar.Header, standIn override.Stat) error {
	isLink := h.Typeflag == tar.TypeSymlink
	isDir := h.Typeflag == tar.TypeDir
	mode := uint32(h.Mode) & 0o7777
	if x.privileged {
		if err := unix.Fchownat(parent, base, h.Uid, h.Gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return err
		}
	} else if !isLink {
		// Readable and writable by us whatever the image says; the view shows the override.
		real := mode&0o777 | 0o600
		if isDir {
			real |= 0o100
		}
		if err := unix.Fchmodat(parent, base, real, 0); err != nil {
			return err
		}
		standIn.Uid, standIn.Gid, standIn.Mode = uint32(h.Uid), uint32(h.Gid), mode
		x.setOverride(parent, base, standIn)
	}
	if x.privileged && !isLink {
		// After the chown, which drops set-id bits.
		if err := unix.Fchmodat(parent, base, mode, 0); err != nil {
			return err
		}
	}
	if err := x.xattrs(parent, base, h); err != nil {
		return err
	}
	if !isDir {
		ts := []unix.Timespec{unix.NsecToTimespec(h.AccessTime.UnixNano()), unix.NsecToTimespec(h.ModTime.UnixNano())}
		if h.AccessTime.IsZero() {
			ts[0] = ts[1]
		}
		if err := unix.UtimesNanoAt(parent, base, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return err
		}
	}
	return nil
}

// xattrs sets the entry's extended attributes (PAX SCHILY.xattr.*), after chown and chmod so
// a capability stays. Overlay and layerfs markers from an image are not honoured: they would
// change what the stack shows.
func (x *extractor) xattrs(parent int, base string, h *tar.Header) error {
	var names []string
	for k := range h.PAXRecords {
		if n, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok && !whiteout.IsPrivateXattr(n) && n != override.Attr {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	p := xattrs.Path(parent, base)
	for _, n := range names {
		err := xattrs.For(base).Set(p, n, []byte(h.PAXRecords["SCHILY.xattr."+n]), 0)
		if err == nil {
			continue
		}
		if !x.privileged || errors.Is(err, unix.ENOTSUP) {
			x.dropped++
			if x.droppedExample == "" {
				x.droppedExample = n + " of " + h.Name
			}
			continue
		}
		return fmt.Errorf("attribute %s: %w", n, err)
	}
	return nil
}

func (x *extractor) setOverride(parent int, base string, o override.Stat) {
	if err := xattrs.For(base).Set(xattrs.Path(parent, base), override.Attr, []byte(o.String()), 0); err != nil {
		x.dropped++
		if x.droppedExample == "" {
			x.droppedExample = override.Attr + " of " + base
		}
	}
}

// finish sets directory times, deepest first, and the root's attributes.
func (x *extractor) finish() error {
	var dirs []string
	for d := range x.dirTimes {
		dirs = append(dirs, d)
	}
	sort.Slice(dirs, func(i, j int) bool { return strings.Count(dirs[i], "/") > strings.Count(dirs[j], "/") })
	for _, d := range dirs {
		t := unix.NsecToTimespec(x.dirTimes[d].UnixNano())
		if err := unix.UtimesNanoAt(x.root, d, []unix.Timespec{t, t}, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("times of %s: %w", d, err)
		}
	}
	h := x.rootHdr
	if h == nil {
		h = &tar.Header{Typeflag: tar.TypeDir, Mode: 0o755, ModTime: time.Unix(0, 0)}
	}
	p := xattrs.Path(x.root, "")
	if x.privileged {
		if err := os.Lchown(p, h.Uid, h.Gid); err != nil {
			return err
		}
		if err := unix.Chmod(p, uint32(h.Mode)&0o7777); err != nil {
			return err
		}
	} else {
		// The root carries an override too: it tells layerfs to read overrides in this layer.
		o := override.Stat{Uid: uint32(h.Uid), Gid: uint32(h.Gid), Mode: uint32(h.Mode) & 0o7777}
		if err := unix.Setxattr(p, override.Attr, []byte(o.String()), 0); err != nil {
			return fmt.Errorf("%s on the layer root: %w (the store's filesystem must allow user attributes)", override.Attr, err)
		}
	}
	if err := x.xattrs(x.root, "", h); err != nil {
		return err
	}
	t := unix.NsecToTimespec(h.ModTime.UnixNano())
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, []unix.Timespec{t, t}, 0); err != nil {
		return err
	}
	// Durable before it is renamed into the store and mounted.
	if fd, err := unix.Open(p, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0); err == nil {
		unix.Syncfs(fd)
		unix.Close(fd)
	}
	return nil
}
