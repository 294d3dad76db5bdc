package merge

import (
	"errors"
	"fmt"
	"strings"

	"github.com/layerfs/layerfs/whiteout"
	"golang.org/x/sys/unix"
)

// Layer is one directory of the stack, held open for the life of the mount so that every
// operation resolves beneath it with *at calls and never builds an absolute path.
type Layer struct {
	Path  string // as given, for messages
	FD    int    // O_PATH directory descriptor of the layer root
	Dev   uint64 // st_dev of the layer root
	FsIdx uint64 // small index of dev among the stack's filesystems, mixed into st_ino
	Upper bool
	Index int // position in Stack.Layers: 0 is the topmost
	// links indexes hard-linked objects of a lower layer, built on first need.
	links hardlinks
	// redirects lists a lower layer's redirected directories, found on first need.
	redirects lowerRedirects
	// OverrideXattr names the attribute the layer's objects keep their owner and mode in
	// when they cannot hold them (package unionfs, overridestat.go); "" when they do not. Set before serving.
	OverrideXattr string
	// Noatime and Nodiratime say that reads through the mount must not move the atimes of
	// the layer's files or directories (AtimeFlag). Set before serving.
	Noatime, Nodiratime bool
	// Alone is the placement of a node that lives in this layer only, at its merged path:
	// []Part{{Layer: Index}}, shared by all such nodes (compact). Set before serving; never
	// changed.
	Alone []Part
}

// OpenLayer opens the layer directory at path.
func OpenLayer(path string) (*Layer, error) {
	fd, err := unix.Open(path, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open layer %s: %w", path, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("stat layer %s: %w", path, err)
	}
	return &Layer{Path: path, FD: fd, Dev: st.Dev}, nil
}

// resolveFlags keep every walk inside the layer: no component may be a symlink (a merged
// directory is a real directory in each layer it comes from) and nothing may climb out.
const resolveFlags = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS

// DirFD is a directory descriptor inside a layer; close it with Release.
type DirFD struct {
	FD    int
	owned bool
}

// Release closes the descriptor if it was opened for this use (not the layer root).
func (d DirFD) Release() {
	if d.owned {
		unix.Close(d.FD)
	}
}

// maxWalk is the longest path handed to one openat2; longer paths (a tree can be deeper than
// PATH_MAX, as on any filesystem) are walked a piece at a time.
const maxWalk = 3072

// OpenDir opens directory rel ("" is the root) of the layer as an O_PATH descriptor.
func (l *Layer) OpenDir(rel string) (DirFD, error) {
	if rel == "" {
		return DirFD{FD: l.FD}, nil
	}
	fd, err := l.Open(rel, unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		return DirFD{}, err
	}
	return DirFD{FD: fd, owned: true}, nil
}

// Open opens rel inside the layer with flags (O_CLOEXEC and O_NOFOLLOW added).
func (l *Layer) Open(rel string, flags int, mode uint32) (int, error) {
	if rel == "" {
		rel = "."
	}
	at := l.FD
	for len(rel) > maxWalk {
		// Open the longest leading piece of whole names that fits, and go on from there.
		cut := strings.LastIndexByte(rel[:maxWalk], '/')
		if cut <= 0 {
			return -1, unix.ENAMETOOLONG
		}
		next, err := openat2(at, rel[:cut], unix.O_PATH|unix.O_DIRECTORY, 0)
		if at != l.FD {
			unix.Close(at)
		}
		if err != nil {
			return -1, err
		}
		at, rel = next, rel[cut+1:]
	}
	fd, err := openat2(at, rel, flags|unix.O_NOFOLLOW, mode)
	if at != l.FD {
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

// StatBirth lstat()s rel inside the layer, and returns the object's birth time from the same
// statx (GETATTR and STATX answer from one call).
func (l *Layer) StatBirth(rel string, st *unix.Stat_t) (whiteout.Birth, error) {
	if rel == "" {
		return whiteout.StatBirth(l.FD, "", unix.AT_EMPTY_PATH, st)
	}
	dir, name := SplitPath(rel)
	d, err := l.OpenDir(dir)
	if err != nil {
		return whiteout.Birth{}, err
	}
	defer d.Release()
	return whiteout.StatBirth(d.FD, name, unix.AT_SYMLINK_NOFOLLOW, st)
}

// SplitPath splits a relative path into its directory ("" for the root) and last name.
func SplitPath(rel string) (string, string) {
	for i := len(rel) - 1; i >= 0; i-- {
		if rel[i] == '/' {
			return rel[:i], rel[i+1:]
		}
	}
	return "", rel
}

// JoinPath joins a directory path ("" for the root) and a name.
func JoinPath(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}

// Close closes the layer root; the layer is not used after.
func (l *Layer) Close() {
	if l.FD >= 0 {
		unix.Close(l.FD)
		l.FD = -1
	}
}

// AtimeFlag is O_NOATIME where an open with flags of the layer must not move atimes.
func (l *Layer) AtimeFlag(flags int) int {
	if flags&unix.O_PATH != 0 {
		return 0
	}
	if flags&unix.O_DIRECTORY != 0 && l.Nodiratime || flags&unix.O_DIRECTORY == 0 && l.Noatime {
		return unix.O_NOATIME
	}
	return 0
}

// OpenNoatime is open with O_NOATIME where the policy asks for it; where the caller may not
// use O_NOATIME (an unprivileged server, a file it does not own: EPERM), it opens without.
func (l *Layer) OpenNoatime(rel string, flags int, mode uint32) (int, error) {
	if fl := l.AtimeFlag(flags); fl != 0 {
		fd, err := l.Open(rel, flags|fl, mode)
		if !errors.Is(err, unix.EPERM) {
			return fd, err
		}
	}
	return l.Open(rel, flags, mode)
}
