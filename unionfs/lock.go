package unionfs

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// lockWait is how long a mount waits for the upper or work directory of another server to be
// released: a server whose mount has just gone away takes a moment to exit (a container
// stopped and started again), a server still serving never lets go.
const lockWait = 2 * time.Second

// lockDirs takes an exclusive flock(2) on each directory and returns the descriptors holding
// them, to be closed when the server ends (the kernel drops the locks with the last
// descriptor, also when the server dies). Two servers writing one upper, or cleaning one work
// directory, would corrupt each other's view; the kernel refuses a second mount of an upper or
// work directory in use, and so do we. The directories themselves are locked: nothing is
// written into them, so the upper stays what the kernel's overlayfs expects.
func lockDirs(what []string, dirs []string) ([]int, error) {
	var fds []int
	release := func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}
	for i, dir := range dirs {
		fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			release()
			return nil, fmt.Errorf("open %s %s: %w", what[i], dir, err)
		}
		fds = append(fds, fd)
		if err := flockWithin(fd, lockWait); err != nil {
			if errors.Is(err, unix.EWOULDBLOCK) {
				err = fmt.Errorf("%s %s is in use by %s: unmount that first", what[i], dir, lockHolder(fd))
			} else {
				err = fmt.Errorf("lock %s %s: %w", what[i], dir, err)
			}
			release()
			return nil, err
		}
	}
	return fds, nil
}

// flockWithin takes an exclusive lock on fd, trying again for up to d while another holds it.
func flockWithin(fd int, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB)
		if !errors.Is(err, unix.EWOULDBLOCK) || time.Now().After(deadline) {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// lockHolder names the process holding a lock on fd's object, from /proc/locks, with its
// command line (which names its mountpoint); "another layerfs server" when it cannot tell.
func lockHolder(fd int) string {
	const unknown = "another layerfs server"
	var st unix.Stat_t
	if unix.Fstat(fd, &st) != nil {
		return unknown
	}
	f, err := os.Open("/proc/locks")
	if err != nil {
		return unknown
	}
	defer f.Close()
	// "1: FLOCK  ADVISORY  WRITE 1234 fd:01:5678 0 EOF": pid, then major:minor:inode with the
	// device numbers in hex.
	want := fmt.Sprintf("%02x:%02x:%d", unix.Major(st.Dev), unix.Minor(st.Dev), st.Ino)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fl := strings.Fields(sc.Text())
		if len(fl) < 6 || fl[1] != "FLOCK" || fl[5] != want {
			continue
		}
		pid, err := strconv.Atoi(fl[4])
		if err != nil || pid <= 0 || pid == os.Getpid() {
			continue
		}
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil || len(cmdline) == 0 {
			return fmt.Sprintf("process %d", pid)
		}
		return fmt.Sprintf("process %d (%s)", pid, strings.Join(strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00"), " "))
	}
	return unknown
}
