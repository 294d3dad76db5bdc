package unionfs

import (
	"errors"
	"fmt"

	"github.com/layerfs/layerfs/copyup"
	"golang.org/x/sys/unix"
)

// workDirName is the directory below the workdir where objects are built before they are
// renamed into the upper. It is the kernel's own name, so a kernel mount of the same upper
// and workdir cleans what a crash may leave, and so do we.
const workDirName = "work"

// openWork opens (creating it if needed) workdir/work and removes whatever a previous mount
// left in it: a crash between building an object and renaming it into place leaves a temporary
// object there, never in the upper.
func openWork(workdir string) (int, error) {
	root, err := unix.Open(workdir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open workdir %s: %w", workdir, err)
	}
	defer unix.Close(root)
	// The kernel makes it with mode 0, which only it (and root) can enter; an unprivileged
	// server needs to enter it too.
	if err := unix.Mkdirat(root, workDirName, 0o700); err != nil && !errors.Is(err, unix.EEXIST) {
		return -1, fmt.Errorf("create %s/%s: %w", workdir, workDirName, err)
	}
	fd, err := unix.Openat(root, workDirName, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.EACCES) && unix.Fchmodat(root, workDirName, 0o700, 0) == nil {
		fd, err = unix.Openat(root, workDirName, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	}
	if err != nil {
		return -1, fmt.Errorf("open %s/%s: %w", workdir, workDirName, err)
	}
	names, err := copyup.ReadDirNames(fd)
	if err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("read %s/%s: %w", workdir, workDirName, err)
	}
	for _, name := range names {
		if err := copyup.RemoveAll(fd, name); err != nil {
			unix.Close(fd)
			return -1, fmt.Errorf("clean stale %s/%s/%s: %w", workdir, workDirName, name, err)
		}
	}
	return fd, nil
}
