package unionfs

import (
	"fmt"
	"strings"

	"golang.org/x/sys/unix"
)

// layer is one directory of the stack, held open for the life of the mount so that every
// operation resolves beneath it with *at calls and never builds an absolute path.
type layer struct {
	path  string // as given, for messages
	fd    int    // O_PATH directory descriptor of the layer root
	dev   uint64 // st_dev of the layer root
	fsIdx uint64 // small index of dev among the stack's filesystems, mixed into st_ino
	upper bool
	index int // position in unionFS.layers: 0 is the topmost
	// links indexes hard-linked objects of a lower layer, built on first need.
	links hardlinks
	// overrideXattr names the attribute the layer's objects keep their owner and mode in
	// when they cannot hold them (overridestat.go); "" when they do not. Set before serving.
	overrideXattr string
	// noatime and nodiratime say that reads through the mount must not move the atimes of
	// the layer's files or directories (atime.go). Set before serving.
	noatime, nodiratime bool
	// alone is the placement of a node that lives in this layer only, at its merged path:
	// []part{{layer: index}}, shared by all such nodes (compact). Set before serving; never
	// changed.
	alone []part
}

func openLayer(path string) (*layer, error) {
	fd, err := unix.Open(path, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open layer %s: %w", path, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("stat layer %s: %w", path, err)
	}
	return &layer{path: path, fd: fd, dev: st.Dev}, nil
}

// resolveFlags keep every walk inside the layer: no component may be a symlink (a merged
// directory is a real directory in each layer it comes from) and nothing may climb out.
const resolveFlags = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS

// dirFD is a directory descriptor inside a layer; close it with release.
type dirFD struct {
	fd    int
	owned bool
}

func (d dirFD) release() {
	if d.owned {
		unix.Close(d.fd)
	}
}

// maxWalk is the longest path handed to one openat2; longer paths (a tree can be deeper than
// PATH_MAX, as on any filesystem) are walked a piece at a time.
const maxWalk = 3072

// openDir opens directory rel ("" is the root) of the layer as an O_PATH descriptor.
func (l *layer) openDir(rel string) (dirFD, error) {
	if rel == "" {
		return dirFD{fd: l.fd}, nil
	}
	fd, err := l.open(rel, unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		return dirFD{}, err
	}
	return dirFD{fd: fd, owned: true}, nil
}

// open opens rel inside the layer with flags (O_CLOEXEC and O_NOFOLLOW added).
func (l *layer) open(rel string, flags int, mode uint32) (int, error) {
	if rel == "" {
		rel = "."
	}
	at := l.fd
	for len(rel) > maxWalk {
		// Open the longest leading piece of whole names that fits, and go on from there.
		cut := strings.LastIndexByte(rel[:maxWalk], '/')
		if cut <= 0 {
			return -1, unix.ENAMETOOLONG
		}
		next, err := openat2(at, rel[:cut], unix.O_PATH|unix.O_DIRECTORY, 0)
		if at != l.fd {
			unix.Close(at)
		}
		if err != nil {
			return -1, err
		}
		at, rel = next, rel[cut+1:]
	}
	fd, err := openat2(at, rel, flags|unix.O_NOFOLLOW, mode)
	if at != l.fd {
		unix.Close(at)
	}
	return fd, err
}

func openat2(dirfd int, rel string, flags int, mode uint32) (int, error) {
	return unix.Openat2(dirfd, rel, &unix.OpenHow{
		Flags:   uint64(flags | unix.O_CLOEXEC),
		Mode:    uint64(mode),
		Resolve: resolveFlags,
	})
}

// stat lstat()s rel inside the layer.
func (l *layer) stat(rel string, st *unix.Stat_t) error {
	if rel == "" {
		return unix.Fstat(l.fd, st)
	}
	dir, name := splitPath(rel)
	d, err := l.openDir(dir)
	if err != nil {
		return err
	}
	defer d.release()
	return unix.Fstatat(d.fd, name, st, unix.AT_SYMLINK_NOFOLLOW)
}

// splitPath splits a relative path into its directory ("" for the root) and last name.
func splitPath(rel string) (string, string) {
	for i := len(rel) - 1; i >= 0; i-- {
		if rel[i] == '/' {
			return rel[:i], rel[i+1:]
		}
	}
	return "", rel
}

// joinPath joins a directory path ("" for the root) and a name.
func joinPath(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}

func (l *layer) close() {
	if l.fd >= 0 {
		unix.Close(l.fd)
		l.fd = -1
	}
}
