package integration

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"
)

// fsxFile is one file of a data-integrity run: what it must hold, and the descriptors open on it.
type fsxFile struct {
	rel   string
	model []byte
	rw    *os.File // opened for writing on demand; nil when closed
	ro    *os.File // opened read-only before anything was written, so on the lower file (see rwFirst)
}

// fsxRun drives one data-integrity run on a mounted stack.
type fsxRun struct {
	t     *testing.T
	rnd   *rand.Rand
	mnt   string
	files []*fsxFile
	log   []string
	// rwFirst opens each file for writing (copying it up) before the read-only descriptor:
	// with passthrough, a lower file open for reading cannot be opened for writing too.
	rwFirst bool
}

// TestDataIntegrity is an fsx-style run: seeded random writes, reads, truncates, hole punches,
// mmap reads and writes, appends, cache drops, reopens and remounts on files that start in a
// lower layer, every read checked against an in-memory model. Without passthrough each file's
// first descriptor is opened read-only before the copy-up and kept: it must see every later
// change, as a descriptor on the kernel's overlayfs does. With passthrough (the default as
// root) the kernel reads and writes the layer's files itself, and the descriptors are opened
// after the copy-up. LAYERFS_FSX_OPS and LAYERFS_FSX_SEED make a longer or another run.
func TestDataIntegrity(t *testing.T) {
	needMounts(t)
	for _, m := range []struct {
		name    string
		args    []string
		rwFirst bool
	}{
		{"passthrough", nil, true},
		{"nopassthrough", []string{"-o", "nopassthrough"}, false},
		{"noopen", []string{"-o", "noopen"}, false},
	} {
		t.Run(m.name, func(t *testing.T) { dataIntegrity(t, m.args, m.rwFirst) })
	}
}

func dataIntegrity(t *testing.T, args []string, rwFirst bool) {
	nops, seed := 3000, int64(1)
	if s := os.Getenv("LAYERFS_FSX_OPS"); s != "" {
		v, err := strconv.Atoi(s)
		must(t, err)
		nops = v
	}
	if s := os.Getenv("LAYERFS_FSX_SEED"); s != "" {
		v, err := strconv.ParseInt(s, 10, 64)
		must(t, err)
		seed = v
	}
	root := t.TempDir()
	st := newStack(t, root)
	r := &fsxRun{t: t, rnd: rand.New(rand.NewSource(seed)), mnt: mkdir(t, root, "mnt"), rwFirst: rwFirst}
	lowerSums := map[string][32]byte{}
	for _, f := range []struct {
		rel  string
		size int
	}{{"a", 1 << 20}, {"d/b", 200 << 10}, {"d/e/c", 5000}} {
		data := make([]byte, f.size)
		r.rnd.Read(data)
		p := filepath.Join(st.Lowers[0], f.rel)
		must(t, os.MkdirAll(filepath.Dir(p), 0o755))
		must(t, os.WriteFile(p, data, 0o644))
		lowerSums[f.rel] = sha256.Sum256(data)
		r.files = append(r.files, &fsxFile{rel: f.rel, model: data})
	}
	mountLayerfs(t, st, r.mnt, args...)
	r.openReadOnly()
	t.Cleanup(r.closeAll)

	for i := 0; i < nops; i++ {
		if i > 0 && i%500 == 0 {
			r.closeAll()
			unmountFuse(t, r.mnt)
			mountLayerfs(t, st, r.mnt, args...)
			r.openReadOnly()
			r.note("remount")
		}
		r.step(r.files[r.rnd.Intn(len(r.files))])
		if t.Failed() {
			t.Fatalf("seed %d, op %d failed; the last operations:\n%s", seed, i, tail(r.log, 12))
		}
	}
	r.closeAll()
	for _, f := range r.files {
		r.checkWhole(f, filepath.Join(r.mnt, f.rel), "at the end, through the mount")
	}
	unmountFuse(t, r.mnt)
	for _, f := range r.files {
		r.checkWhole(f, filepath.Join(st.Upper, f.rel), "in the upper layer")
		data, err := os.ReadFile(filepath.Join(st.Lowers[0], f.rel))
		must(t, err)
		if sha256.Sum256(data) != lowerSums[f.rel] {
			t.Errorf("lower file %s changed", f.rel)
		}
	}
}

func (r *fsxRun) note(format string, args ...any) {
	r.log = append(r.log, fmt.Sprintf(format, args...))
}

func (r *fsxRun) openReadOnly() {
	for _, f := range r.files {
		if r.rwFirst {
			r.writable(f)
		}
		var err error
		f.ro, err = os.Open(filepath.Join(r.mnt, f.rel))
		must(r.t, err)
	}
}

func (r *fsxRun) closeAll() {
	for _, f := range r.files {
		for _, fp := range []**os.File{&f.rw, &f.ro} {
			if *fp != nil {
				(*fp).Close()
				*fp = nil
			}
		}
	}
}

func (r *fsxRun) writable(f *fsxFile) *os.File {
	if f.rw == nil {
		var err error
		f.rw, err = os.OpenFile(filepath.Join(r.mnt, f.rel), os.O_RDWR, 0)
		must(r.t, err)
	}
	return f.rw
}

// setLen grows (with zeros) or shrinks the model.
func (f *fsxFile) setLen(n int) {
	if n <= len(f.model) {
		f.model = f.model[:n]
		return
	}
	f.model = append(f.model, make([]byte, n-len(f.model))...)
}

func (r *fsxRun) step(f *fsxFile) {
	t, rnd := r.t, r.rnd
	size := len(f.model)
	switch op := rnd.Intn(12); op {
	case 0, 1: // write at an offset, sometimes past the end
		off, n := rnd.Intn(size+64<<10), 1+rnd.Intn(64<<10)
		buf := make([]byte, n)
		rnd.Read(buf)
		r.note("%s: pwrite %d bytes at %d", f.rel, n, off)
		if _, err := r.writable(f).WriteAt(buf, int64(off)); err != nil {
			t.Errorf("%s: pwrite: %v", f.rel, err)
			return
		}
		if off+n > size {
			f.setLen(off + n)
		}
		copy(f.model[off:], buf)
	case 2, 3: // read through the read-only descriptor or the writable one
		fd, which := f.ro, "read-only"
		if f.rw != nil && rnd.Intn(2) == 0 {
			fd, which = f.rw, "read-write"
		}
		off, n := rnd.Intn(size+1000), rnd.Intn(128<<10)
		r.note("%s: pread %d bytes at %d (%s descriptor)", f.rel, n, off, which)
		buf := make([]byte, n)
		got, err := fd.ReadAt(buf, int64(off))
		want := []byte{}
		if off < size {
			want = f.model[off:min(off+n, size)]
		}
		if (err != nil && got == n) || !bytes.Equal(buf[:got], want) {
			t.Errorf("%s: pread %d at %d (%s): got %d bytes (%v), want %d; first difference at %d",
				f.rel, n, off, which, got, err, len(want), firstDiff(buf[:got], want))
		}
	case 4: // truncate, by descriptor or by path
		n := rnd.Intn(2 << 20)
		if rnd.Intn(2) == 0 {
			r.note("%s: ftruncate %d", f.rel, n)
			must(t, r.writable(f).Truncate(int64(n)))
		} else {
			r.note("%s: truncate %d", f.rel, n)
			must(t, os.Truncate(filepath.Join(r.mnt, f.rel), int64(n)))
		}
		f.setLen(n)
	case 5: // punch a hole
		if size == 0 {
			return
		}
		off := rnd.Intn(size)
		n := 1 + rnd.Intn(size-off)
		r.note("%s: punch %d bytes at %d", f.rel, n, off)
		err := unix.Fallocate(int(r.writable(f).Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, int64(off), int64(n))
		if err != nil {
			t.Errorf("%s: punch hole: %v", f.rel, err)
			return
		}
		clear(f.model[off : off+n])
	case 6: // read through a shared read-only mapping of the read-only descriptor
		if size == 0 {
			return
		}
		r.note("%s: mmap read %d bytes", f.rel, size)
		m, err := unix.Mmap(int(f.ro.Fd()), 0, size, unix.PROT_READ, unix.MAP_SHARED)
		if err != nil {
			t.Errorf("%s: mmap read-only: %v", f.rel, err)
			return
		}
		if !bytes.Equal(m, f.model) {
			t.Errorf("%s: the read-only mapping differs from the model at %d", f.rel, firstDiff(m, f.model))
		}
		unix.Munmap(m)
	case 7: // write through a shared writable mapping, then msync
		if size == 0 {
			return
		}
		off := rnd.Intn(size)
		n := 1 + rnd.Intn(min(size-off, 32<<10))
		r.note("%s: mmap write %d bytes at %d", f.rel, n, off)
		m, err := unix.Mmap(int(r.writable(f).Fd()), 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
		if err != nil {
			t.Errorf("%s: mmap read-write: %v", f.rel, err)
			return
		}
		rnd.Read(m[off : off+n])
		copy(f.model[off:], m[off:off+n])
		if err := unix.Msync(m, unix.MS_SYNC); err != nil {
			t.Errorf("%s: msync: %v", f.rel, err)
		}
		unix.Munmap(m)
	case 8: // append through a descriptor of its own
		buf := make([]byte, 1+rnd.Intn(8<<10))
		rnd.Read(buf)
		r.note("%s: append %d bytes", f.rel, len(buf))
		a, err := os.OpenFile(filepath.Join(r.mnt, f.rel), os.O_WRONLY|os.O_APPEND, 0)
		must(t, err)
		_, err = a.Write(buf)
		must(t, err)
		must(t, a.Close())
		f.model = append(f.model, buf...)
	case 9: // drop the cached pages, so the next reads ask the server
		r.note("%s: drop cached pages", f.rel)
		must(t, unix.Fadvise(int(f.ro.Fd()), 0, 0, unix.FADV_DONTNEED))
	case 10: // close and reopen
		r.note("%s: reopen", f.rel)
		if f.rw != nil {
			must(t, f.rw.Close())
			f.rw = nil
		}
		if rnd.Intn(4) == 0 {
			must(t, f.ro.Close())
			var err error
			f.ro, err = os.Open(filepath.Join(r.mnt, f.rel))
			must(t, err)
		}
	case 11: // size through stat and fstat; fsync
		r.note("%s: stat, fsync", f.rel)
		fi, err := os.Stat(filepath.Join(r.mnt, f.rel))
		must(t, err)
		if fi.Size() != int64(size) {
			t.Errorf("%s: stat size %d, want %d", f.rel, fi.Size(), size)
		}
		if fi, err = f.ro.Stat(); err != nil || fi.Size() != int64(size) {
			t.Errorf("%s: fstat of the read-only descriptor: size %d (%v), want %d", f.rel, fi.Size(), err, size)
		}
		if f.rw != nil {
			must(t, f.rw.Sync())
		}
	}
}

// checkWhole compares a whole file with the model.
func (r *fsxRun) checkWhole(f *fsxFile, p, where string) {
	data, err := os.ReadFile(p)
	if err != nil {
		r.t.Errorf("%s %s: %v", f.rel, where, err)
		return
	}
	if !bytes.Equal(data, f.model) {
		r.t.Errorf("%s %s: %d bytes, want %d; first difference at %d", f.rel, where, len(data), len(f.model), firstDiff(data, f.model))
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}
