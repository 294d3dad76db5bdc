// Package xattrs reads extended attributes of an object named by a directory descriptor and
// an entry name. Linux before 6.13 has no *xattrat calls and an O_PATH descriptor refuses the
// f*xattr ones, so the path-based calls get /proc/self/fd/N/NAME: the magic link resolves to
// the directory itself, so the lookup of NAME stays beneath it. It holds the one
// size-probe-and-retry loop every caller needs: a value or list may grow between the call that
// asks its size and the call that reads it.
package xattrs

import (
	"bytes"
	"errors"
	"strconv"

	"golang.org/x/sys/unix"
)

// Path names entry name of the directory open as dirfd, for the path-based calls; "" or "."
// names the directory itself (its magic link, which the calls must then follow: see
// Follows). NAME must be one path component: a longer path would follow symlinks in its
// directories.
func Path(dirfd int, name string) string {
	p := "/proc/self/fd/" + strconv.Itoa(dirfd)
	if name == "" || name == "." {
		return p
	}
	return p + "/" + name
}

// Follows reports whether the calls for Path(dirfd, name) must follow the final link: only
// for the descriptor's own magic link; an entry's symlink is the object itself.
func Follows(name string) bool { return name == "" || name == "." }

// Calls are the path-based attribute calls for one kind of Path: the l* calls for an entry,
// the following ones for a directory itself (its magic link).
type Calls struct {
	Get    func(path, attr string, dest []byte) (int, error)
	List   func(path string, dest []byte) (int, error)
	Set    func(path, attr string, val []byte, flags int) error
	Remove func(path, attr string) error
}

var (
	entryCalls = Calls{unix.Lgetxattr, unix.Llistxattr, unix.Lsetxattr, unix.Lremovexattr}
	selfCalls  = Calls{unix.Getxattr, unix.Listxattr, unix.Setxattr, unix.Removexattr}
)

// For returns the calls for Path(dirfd, name): the one place that tells the directory itself
// from an entry.
func For(name string) Calls {
	if Follows(name) {
		return selfCalls
	}
	return entryCalls
}

// firstSize is the buffer tried first: most values (overlay markers, ACLs, capabilities) and
// most lists fit, so most reads cost one call.
const firstSize = 256

// Get returns the value of attribute attr of path, following a final symlink if follow.
func Get(path, attr string, follow bool) ([]byte, error) {
	get := entryCalls.Get
	if follow {
		get = selfCalls.Get
	}
	buf := make([]byte, firstSize)
	for {
		sz, err := get(path, attr, buf)
		if err == nil {
			return buf[:sz], nil
		}
		if !errors.Is(err, unix.ERANGE) {
			return nil, err
		}
		if sz, err = get(path, attr, nil); err != nil {
			return nil, err
		}
		buf = make([]byte, sz+firstSize)
	}
}

// List returns the attribute names of path, following a final symlink if follow.
func List(path string, follow bool) ([]string, error) {
	list := entryCalls.List
	if follow {
		list = selfCalls.List
	}
	buf := make([]byte, firstSize)
	for {
		sz, err := list(path, buf)
		if err == nil {
			var names []string
			for _, n := range bytes.Split(buf[:sz], []byte{0}) {
				if len(n) > 0 {
					names = append(names, string(n))
				}
			}
			return names, nil
		}
		if !errors.Is(err, unix.ERANGE) {
			return nil, err
		}
		if sz, err = list(path, nil); err != nil {
			return nil, err
		}
		buf = make([]byte, sz+firstSize)
	}
}
