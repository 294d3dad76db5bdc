package copyup

import (
	"errors"
	"io"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// copyFile creates tmp in directory w and fills it with src's data. It returns src's inode
// flags, read while the source is open for its data (copyFileattr).
func copyFile(src Source, w int, tmp string, opt Options) (sourceFlags, error) {
	var sf sourceFlags
	dst, err := unix.Openat(w, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return sf, err
	}
	defer unix.Close(dst)
	if !opt.SkipData && src.Stat.Size > 0 {
		in, err := unix.Openat(src.DirFd, src.Name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return sf, err
		}
		defer unix.Close(in)
		if err := copyData(dst, in, src.Stat.Size, opt.NoClone); err != nil {
			return sf, err
		}
		sf.flags, sf.err = GetFlags(in)
		sf.read = true
	}
	if !opt.NoSync {
		return sf, unix.Fsync(dst)
	}
	return sf, nil
}

// copyData copies size bytes from in to out (both at offset 0), keeping holes. It tries, in
// order: a reflink (FICLONE, which shares the blocks), copy_file_range over each data extent,
// and plain reads and writes. A destination found not to clone (noClone: most file systems,
// ext4 and tmpfs among them) is not asked again.
func copyData(out, in int, size int64, noClone *atomic.Bool) error {
	if noClone == nil || !noClone.Load() {
		err := unix.IoctlFileClone(out, in)
		if err == nil {
			return nil
		}
		if noClone != nil && (errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOTTY)) {
			noClone.Store(true) // not EXDEV or EINVAL, which say something of this pair only
		}
	}
	end, err := copyExtents(out, in, size)
	if err != nil || end == size {
		return err
	}
	return unix.Ftruncate(out, size) // a hole at the end: no extent wrote up to it
}

// copyExtents copies every data extent of in (found with SEEK_DATA/SEEK_HOLE) to the same
// offset of out, so holes stay holes, and returns where the last extent copied ends.
func copyExtents(out, in int, size int64) (int64, error) {
	var off, end int64
	for off < size {
		data, err := unix.Seek(in, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			return end, nil // only a hole is left
		}
		if err != nil {
			// No SEEK_DATA here: copy everything as data.
			return size, copyRange(out, in, 0, size)
		}
		hole, err := unix.Seek(in, data, unix.SEEK_HOLE)
		if err != nil || hole > size {
			hole = size
		}
		if err := copyRange(out, in, data, hole-data); err != nil {
			return end, err
		}
		off, end = hole, hole
	}
	return end, nil
}

// copyRange copies n bytes at off from in to out, with copy_file_range where the kernel can,
// else with pread/pwrite.
func copyRange(out, in int, off, n int64) error {
	roff, woff := off, off
	for n > 0 {
		chunk := n
		if chunk > 1<<30 {
			chunk = 1 << 30
		}
		c, err := unix.CopyFileRange(in, &roff, out, &woff, int(chunk), 0)
		if err != nil || c == 0 {
			if err == nil {
				return io.ErrUnexpectedEOF // the source shrank under us
			}
			return copyRangeRW(out, in, roff, n)
		}
		n -= int64(c)
	}
	return nil
}

func copyRangeRW(out, in int, off, n int64) error {
	buf := make([]byte, 1<<20)
	for n > 0 {
		want := len(buf)
		if int64(want) > n {
			want = int(n)
		}
		r, err := unix.Pread(in, buf[:want], off)
		if err != nil {
			return err
		}
		if r == 0 {
			return io.ErrUnexpectedEOF
		}
		for done := 0; done < r; {
			w, err := unix.Pwrite(out, buf[done:r], off+int64(done))
			if err != nil {
				return err
			}
			done += w
		}
		off += int64(r)
		n -= int64(r)
	}
	return nil
}
