package copyup

import (
	"os"

	"golang.org/x/sys/unix"
)

// ReadDirNames lists an open directory without "." and "..". It reads through a new
// descriptor, so the caller's stays open and positioned (an *os.File wrapped around the
// caller's descriptor would close it when collected).
func ReadDirNames(fd int) ([]string, error) {
	dup, err := unix.Openat(fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(dup), "dir")
	defer f.Close()
	return f.Readdirnames(-1)
}
