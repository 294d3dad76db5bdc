package copyup

import (
	"errors"
	"io"

	"golang.org/x/sys/unix"
)

// copyFile creates tmp in directory w and fills it with src's data.
func copyFile(src Source, w int, tmp string, opt Options) error {
	dst, err := unix.Openat(w, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return err
	}
	defer unix.Close(dst)
	if !opt.SkipData && src.Stat.Size > 0 {
		in, err := unix.Openat(src.DirFd, src.Name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(in)
		if err := copyData(dst, in, src.Stat.Size); err != nil {
			return err
		}
	}
	if !opt.NoSync {
		return unix.Fsync(dst)
	}
	return nil
}

// copyData copies size bytes from in to out (both at offset 0), keeping holes. It tries, in
// order: a reflink (FICLONE, which shares the blocks), copy_file_range over each data extent,
// and plain reads and writes.
func copyData(out, in int, size int64) error {
	if err := unix.IoctlFileClone(out, in); err == nil {
		return nil
	}
	if err := copyExtents(out, in, size); err != nil {
		return err
	}
	return unix.Ftruncate(out, size)
}

// copyExtents copies every data extent of in (found with SEEK_DATA/SEEK_HOLE) to the same
// offset of out, so holes stay holes.
func copyExtents(out, in int, size int64) error {
	var off int64
	for off < size {
		data, err := unix.Seek(in, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			return nil // only a hole is left
		}
		if err != nil {
			// No SEEK_DATA here: copy everything as data.
			return copyRange(out, in, 0, size)
		}
		hole, err := unix.Seek(in, data, unix.SEEK_HOLE)
		if err != nil || hole > size {
			hole = size
		}
		if err := copyRange(out, in, data, hole-data); err != nil {
			return err
		}
		off = hole
	}
	return nil
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
