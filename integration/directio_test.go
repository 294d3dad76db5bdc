package integration

import (
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestDirectIOMapped: a file opened with O_DIRECT, written directly, then mapped, changed
// through the mapping and synced, as fsx's direct-I/O runs do (xfstests' ltp/fsx -Z). The
// kernel writes the mapping's dirty pages back through the O_DIRECT handle; the last page
// ends where the file ends, so that write is not aligned, and layerfs must not pass O_DIRECT's
// rules on to it (msync failed with EINVAL, and the change was lost, with -o nopassthrough
// and -o noopen). A new file and a lower one (copied up by the open) must end as on the
// kernel's overlayfs.
func TestDirectIOMapped(t *testing.T) {
	needMounts(t)
	low := make([]byte, 10000)
	for i := range low {
		low[i] = byte('a' + i%26)
	}
	mnts := twoMounts(t, func(lower, upper builder) {
		lower.file("low", string(low), 0o644)
		lower.settle()
	}, 0, nil, testedName(), "nopassthrough", "noopen")
	sameAnswers(t, mnts, func(m string) []string {
		return append(directMapped(filepath.Join(m, "new"), true, false), directMapped(filepath.Join(m, "low"), false, false)...)
	})
}

// TestDirectIOMappedRootless is TestDirectIOMapped's new file with a server that is not root,
// made read-only once open: the server cannot open the file again for the write-back, and
// writes it through its O_DIRECT descriptor with the flag turned off for the write.
func TestDirectIOMappedRootless(t *testing.T) {
	needMounts(t)
	u, root, ubin := userWorkspace(t)
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	// This test binary, which the user runs to do the steps (testMain, directMappedEnv).
	self, err := os.ReadFile("/proc/self/exe")
	must(t, err)
	helper := filepath.Join(root, "bin", "steps")
	must(t, os.WriteFile(helper, self, 0o755))
	st := stack{Lowers: []string{root + "/l"}, Upper: root + "/u", Work: root + "/w"}
	mnt, plain := root+"/m", root+"/plain"
	for _, d := range []string{st.Lowers[0], st.Upper, st.Work, mnt, plain} {
		mkdir(t, d, "")
		must(t, os.Lchown(d, uid, gid))
	}
	t.Cleanup(func() {
		asUser(t, "fusermount3 -u "+mnt)
		unmountFuse(t, mnt)
	})
	run := func(path string) string {
		out, err := asUser(t, directMappedEnv+"="+path+" "+helper)
		if err != nil {
			t.Fatalf("as %s: %v\n%s", rootlessUser, err, out)
		}
		return strings.ReplaceAll(out, path, "")
	}
	want := run(plain + "/new") // the layer's own file system
	if out, err := asUser(t, ubin+" -o "+st.options()+",nopassthrough "+mnt); err != nil {
		t.Fatalf("as %s: mount: %v\n%s", rootlessUser, err, out)
	}
	if got := run(mnt + "/new"); got != want {
		t.Errorf("through a rootless server:\n%s\nthe layer's own file system:\n%s", got, want)
	}
}

// directMappedEnv names the file a copy of this binary does directMapped's steps on, as a
// user other than root (testMain).
const directMappedEnv = "LAYERFS_TEST_DIRECT_MAPPED"

// directMapped writes a block directly (for a new file), sets the size to one that is not a
// multiple of the page, changes bytes through a shared mapping (in the last, partial page
// too), syncs it, and reports each step and what the file then holds. With readOnly the file
// is made read-only once open.
func directMapped(path string, create, readOnly bool) []string {
	name := filepath.Base(path)
	flags := unix.O_RDWR | unix.O_DIRECT | unix.O_CLOEXEC
	if create {
		flags |= unix.O_CREAT | unix.O_EXCL
	}
	fd, err := unix.Open(path, flags, 0o644)
	if err != nil {
		return []string{fmt.Sprintf("%s: open: %v", name, err)}
	}
	var out []string
	step := func(what string, err error) {
		out = append(out, fmt.Sprintf("%s: %s: %v", name, what, err))
	}
	if readOnly {
		step("chmod", unix.Fchmod(fd, 0o444))
	}
	if create {
		// O_DIRECT wants aligned memory: a page of its own.
		block, err := unix.Mmap(-1, 0, 4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
		step("page", err)
		if err == nil {
			for i := range block {
				block[i] = byte('A' + i%26)
			}
			_, err = unix.Pwrite(fd, block, 0)
			step("direct write", err)
			unix.Munmap(block)
		}
	}
	const size = 10000
	step("truncate", unix.Ftruncate(fd, size))
	m, err := unix.Mmap(fd, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	step("mmap", err)
	if err == nil {
		copy(m[5000:], "through the mapping")
		copy(m[size-10:], "0123456789")
		step("msync", unix.Msync(m, unix.MS_SYNC))
		step("munmap", unix.Munmap(m))
	}
	step("close", unix.Close(fd))
	data, err := os.ReadFile(path)
	step("read", err)
	return append(out, fmt.Sprintf("%s: %d bytes, sha256 %x", name, len(data), sha256.Sum256(data)))
}
