package integration

import (
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// TestWrittenThenRead writes files through the mount and reads them back, the way tar x then
// tar c, or a compiler then a linker, do. Every answer (content, size, and whether the read
// moved the atime) must be the kernel overlayfs's, with the default access-time policy and
// with noatime, for files around the page size and the passthrough limit,
// partial overwrites, appends, truncation, several writers, a reader beside a writer, a stat
// between the write and the read, and a mapping; by default and with -o nopassthrough, where
// writes leave whole pages in the page cache that the first read must not be answered from
// without moving the atime (unionfs/atime.go, dropWrittenPages); and with -o noopen, where
// layerfs is not told of the open that would drop them (README, "What differs").
func TestWrittenThenRead(t *testing.T) {
	needMounts(t)
	for _, o := range []struct {
		opt   string
		flags uintptr
	}{{"", 0}, {"noatime", unix.MS_NOATIME}} {
		t.Run("opt="+o.opt, func(t *testing.T) {
			var opts []string
			if o.opt != "" {
				opts = []string{o.opt}
			}
			mnts := twoMounts(t, func(lower, upper builder) {
				lower.file("low", "lower content\n", 0o644)
				lower.settle()
			}, o.flags, opts, testedName(), "nopassthrough", "noopen")
			documentedAnswers(t, mnts, func(m string) []string { return writtenThenRead(t, m) }, func(side string, want []string) {
				if side != "noopen" {
					return
				}
				// Only s4096 is written in whole pages and nothing else: its pages answer.
				for i, w := range want {
					if strings.HasPrefix(w, "read s4096:") {
						want[i] = strings.Replace(w, "atime moved true", "atime moved false", 1)
					}
				}
			})
		})
	}
}

// pattern is n bytes that differ with seed and position.
func pattern(n, seed int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + seed + i/4096)
	}
	return b
}

// writtenThenRead is TestWrittenThenRead's script for one mount.
func writtenThenRead(t *testing.T, m string) []string {
	var out []string
	p := func(n string) string { return filepath.Join(m, n) }
	content := func(n string) string {
		data, err := os.ReadFile(p(n))
		if err != nil {
			return errName(err)
		}
		return fmt.Sprintf("%d bytes %x", len(data), sha256.Sum256(data))
	}
	write := func(n string, flags, off int, data []byte) {
		f, err := os.OpenFile(p(n), flags, 0o644)
		must(t, err)
		_, err = f.WriteAt(data, int64(off))
		if flags&os.O_APPEND != 0 {
			_, err = f.Write(data)
		}
		must(t, err)
		must(t, f.Close())
	}
	// Times as tar x leaves them: mtime set, atime before it.
	setTimes := func(n string) {
		ts := []unix.Timespec{unix.NsecToTimespec(old.UnixNano() - 1e9), unix.NsecToTimespec(old.UnixNano())}
		must(t, unix.UtimesNanoAt(unix.AT_FDCWD, p(n), ts, 0))
	}
	atime := func(n string) unix.Timespec {
		var st unix.Stat_t
		must(t, unix.Stat(p(n), &st))
		return st.Atim
	}
	readMoves := func(n string) string {
		before := atime(n)
		c := content(n)
		return fmt.Sprintf("read %s: %s, atime moved %v", n, c, atime(n) != before)
	}

	// One file per size around pages and the passthrough limit, read once then again.
	for _, size := range []int{1, 4095, 4096, 4097, 100000, 1<<20 - 1, 1<<20 + 1} {
		n := fmt.Sprintf("s%d", size)
		write(n, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0, pattern(size, size))
		setTimes(n)
		out = append(out, readMoves(n), "again: "+content(n))
	}
	// Overwritten in part, appended to, truncated shorter and longer.
	write("s100000", os.O_WRONLY, 5000, []byte("overwritten"))
	out = append(out, "overwrite: "+content("s100000"))
	write("s100000", os.O_WRONLY|os.O_APPEND, 0, []byte("appended"))
	out = append(out, "append: "+content("s100000"))
	must(t, os.Truncate(p("s100000"), 3000))
	out = append(out, "shorter: "+content("s100000"))
	must(t, os.Truncate(p("s100000"), 9000))
	out = append(out, "longer: "+content("s100000"))
	// A copied-up lower file, written, timed and read.
	write("low", os.O_WRONLY|os.O_APPEND, 0, []byte("more\n"))
	setTimes("low")
	out = append(out, readMoves("low"))
	// Two writers; the first closes while the second still writes.
	w1, err := os.OpenFile(p("two"), os.O_CREATE|os.O_WRONLY, 0o644)
	must(t, err)
	w2, err := os.OpenFile(p("two"), os.O_WRONLY, 0)
	must(t, err)
	_, err = w1.WriteAt(pattern(6000, 1), 0)
	must(t, err)
	must(t, w1.Close())
	_, err = w2.WriteAt([]byte("second writer"), 7000)
	must(t, err)
	out = append(out, "beside a writer: "+content("two"))
	must(t, w2.Close())
	out = append(out, "both closed: "+content("two"))
	// A stat between the write and the read (the mtime the kernel is told is new).
	write("stat", os.O_CREATE|os.O_WRONLY, 0, pattern(20000, 3))
	_, err = os.Stat(p("stat"))
	must(t, err)
	out = append(out, "after stat: "+content("stat"))
	// Rewritten and read through a mapping.
	write("stat", os.O_WRONLY, 100, []byte("mapped"))
	f, err := os.Open(p("stat"))
	must(t, err)
	data, err := unix.Mmap(int(f.Fd()), 0, 20000, unix.PROT_READ, unix.MAP_SHARED)
	must(t, err)
	out = append(out, fmt.Sprintf("mapped: %x", sha256.Sum256(data)))
	must(t, unix.Munmap(data))
	must(t, f.Close())
	// Written again by a file open for reading and writing, then read.
	write("s4096", os.O_RDWR, 10, []byte("rdwr"))
	setTimes("s4096")
	out = append(out, readMoves("s4096"))
	var st syscall.Stat_t
	must(t, syscall.Stat(p("s4096"), &st))
	out = append(out, fmt.Sprintf("size %d", st.Size))
	return out
}
