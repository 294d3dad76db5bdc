package unionfs

import (
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestLockDirs: a directory locked by one server is refused to another until released.
func TestLockDirs(t *testing.T) {
	up, work := t.TempDir(), t.TempDir()
	fds, err := lockDirs([]string{"upper directory", "work directory"}, []string{up, work})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lockDirs([]string{"upper directory"}, []string{up}); err == nil || !strings.Contains(err.Error(), "upper directory "+up+" is in use") {
		t.Errorf("second lock: %v", err)
	}
	for _, fd := range fds {
		unix.Close(fd)
	}
	again, err := lockDirs([]string{"upper directory", "work directory"}, []string{up, work})
	if err != nil {
		t.Fatalf("after release: %v", err)
	}
	for _, fd := range again {
		unix.Close(fd)
	}
}
