// Package workdir is the work directory of a stack: workdir/work, where objects are built
// before they are renamed into the upper, so that a crash leaves the old view or the new one
// and never half an object, and where objects removed while open wait until the kernel forgets
// them. It is cleaned at every mount. Nothing else of layerfs writes there.
package workdir

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// Name is the directory below the workdir where objects are built before they are
// renamed into the upper. It is the kernel's own name, so a kernel mount of the same upper
// and workdir cleans what a crash may leave, and so do we.
const Name = "work"

// Dir is an open work directory, workdir/work. Objects are built in FD under a TempName and
// renamed into the upper from there.
type Dir struct {
	FD int // -1 when the stack has none (read-only)
}

// Discard moves entry name of dirfd into the work directory, so it is gone from its place in
// one step, then removes it and everything below it there.
func (d Dir) Discard(dirfd int, name string) error {
	tmp := TempName()
	if err := unix.Renameat(dirfd, name, d.FD, tmp); err != nil {
		return err
	}
	return RemoveAll(d.FD, tmp)
}

// Keep gives the object at name of dirfd a second name in the work directory, which keeps it
// and its data after its last name elsewhere goes; Drop removes that name again.
func (d Dir) Keep(dirfd int, name string) (string, error) {
	tmp := TempName()
	return tmp, unix.Linkat(dirfd, name, d.FD, tmp, 0)
}

// Drop removes name, made by Keep or under a TempName, from the work directory.
func (d Dir) Drop(name string) { unix.Unlinkat(d.FD, name, 0) }

// Open opens (creating it if needed) workdir/work and removes whatever a previous mount
// left in it: a crash between building an object and renaming it into place leaves a temporary
// object there, never in the upper.
func Open(workdir string) (Dir, error) {
	fd, err := open(workdir)
	return Dir{FD: fd}, err
}

func open(workdir string) (int, error) {
	root, err := unix.Open(workdir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open workdir %s: %w", workdir, err)
	}
	defer unix.Close(root)
	// The kernel makes it with mode 0, which only it (and root) can enter; an unprivileged
	// server needs to enter it too.
	if err := unix.Mkdirat(root, Name, 0o700); err != nil && !errors.Is(err, unix.EEXIST) {
		return -1, fmt.Errorf("create %s/%s: %w", workdir, Name, err)
	}
	fd, err := unix.Openat(root, Name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.EACCES) && unix.Fchmodat(root, Name, 0o700, 0) == nil {
		fd, err = unix.Openat(root, Name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	}
	if err != nil {
		return -1, fmt.Errorf("open %s/%s: %w", workdir, Name, err)
	}
	names, err := ReadNames(fd)
	if err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("read %s/%s: %w", workdir, Name, err)
	}
	for _, name := range names {
		if err := RemoveAll(fd, name); err != nil {
			unix.Close(fd)
			return -1, fmt.Errorf("clean stale %s/%s/%s: %w", workdir, Name, name, err)
		}
	}
	return fd, nil
}

var tmpCounter atomic.Uint64

// tmpPrefix starts every temporary name of this process: the pid keeps two servers sharing a
// work directory by mistake from taking one name (asked once: a copy-up makes one).
var tmpPrefix = "#layerfs-" + strconv.Itoa(os.Getpid()) + "-"

// TempName returns a fresh name for an object under construction in the work directory.
func TempName() string {
	return tmpPrefix + strconv.FormatUint(tmpCounter.Add(1), 10)
}

// RemoveAll removes entry name of directory dirfd and, for a directory, everything below it,
// without following symlinks.
func RemoveAll(dirfd int, name string) error {
	err := unix.Unlinkat(dirfd, name, 0)
	if err == nil || errors.Is(err, unix.ENOENT) {
		return nil
	}
	if !errors.Is(err, unix.EISDIR) && !errors.Is(err, unix.EPERM) {
		return err
	}
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	names, err := ReadNames(fd)
	if err == nil {
		for _, n := range names {
			if err2 := RemoveAll(fd, n); err2 != nil && err == nil {
				err = err2
			}
		}
	}
	unix.Close(fd)
	if err != nil {
		return err
	}
	return unix.Unlinkat(dirfd, name, unix.AT_REMOVEDIR)
}

// ReadNames lists an open directory without "." and "..". It reads through a new
// descriptor, so the caller's stays open and positioned (an *os.File wrapped around the
// caller's descriptor would close it when collected).
func ReadNames(fd int) ([]string, error) {
	dup, err := unix.Openat(fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(dup), "dir")
	defer f.Close()
	return f.Readdirnames(-1)
}
