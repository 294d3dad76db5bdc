package unionfs

import (
	"context"
	"strconv"
	"syscall"

	"github.com/layerfs/layerfs/copyup"
	"github.com/layerfs/layerfs/whiteout"
	"golang.org/x/sys/unix"
)

// originAttr records, on an object copied up from a lower layer, the merged inode number it
// had there, so st_ino stays the same after copy-up and across remounts. It lives below the
// overlay prefix, so neither layerfs nor the kernel shows it in a merged view.
const originAttr = "layerfs.ino"

// xattrPrefix is the namespace layerfs writes its markers in.
func (u *unionFS) xattrPrefix() string {
	if u.cfg.UserXattr {
		return whiteout.UserPrefix
	}
	return whiteout.TrustedPrefix
}

// readOrigin returns the merged number recorded on an upper object by copy-up, if any.
func (u *unionFS) readOrigin(dirfd int, name string) (uint64, bool) {
	var buf [24]byte
	n, err := unix.Lgetxattr("/proc/self/fd/"+strconv.Itoa(dirfd)+"/"+name, u.xattrPrefix()+originAttr, buf[:])
	if err != nil {
		return 0, false
	}
	ino, err := strconv.ParseUint(string(buf[:n]), 10, 64)
	return ino, err == nil
}

// parentNode returns the directory node n was last seen in, or nil for the root.
func (n *node) parentNode() *node {
	_, p := n.Parent()
	if p == nil {
		return nil
	}
	pn, _ := p.Operations().(*node)
	return pn
}

// copyUp makes n exist in the upper layer, copying its ancestors first. A regular file is
// copied with its data unless withData is false (it is about to be truncated). Only one
// copy-up of a node runs at a time; a node already in the upper returns at once. Lock order:
// each node's copyMu is taken alone, never while holding another's.
func (n *node) copyUp(ctx context.Context, withData bool) syscall.Errno {
	if !n.u.hasUpper {
		return syscall.EROFS
	}
	if n.topLayer().upper {
		return 0
	}
	if p := n.parentNode(); p != nil {
		if errno := p.copyUp(ctx, true); errno != 0 {
			return errno
		}
	}
	n.copyMu.Lock()
	defer n.copyMu.Unlock()
	top, layers := n.where()
	if n.u.layers[top].upper {
		return 0 // copied up while we waited
	}
	dir, name := splitPath(n.path())
	src, err := n.u.layers[top].openDir(dir)
	if err != nil {
		return toErrno(err)
	}
	defer src.release()
	dst, err := n.u.upper().openDir(dir)
	if err != nil {
		return toErrno(err)
	}
	defer dst.release()

	var st, parentSt unix.Stat_t
	if err := unix.Fstatat(src.fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return toErrno(err)
	}
	if err := unix.Fstat(dst.fd, &parentSt); err != nil {
		return toErrno(err)
	}
	opt := copyup.Options{
		WorkFd:    n.u.workFd,
		SkipData:  !withData,
		NoSync:    n.u.cfg.Volatile,
		SkipXattr: whiteout.IsPrivateXattr,
	}
	isDir := st.Mode&unix.S_IFMT == unix.S_IFDIR
	if !isDir {
		opt.ExtraXattrs = map[string][]byte{
			n.u.xattrPrefix() + originAttr: []byte(strconv.FormatUint(n.StableAttr().Ino, 10)),
		}
	}
	if err := copyup.Object(copyup.Source{DirFd: src.fd, Name: name, Stat: st}, dst.fd, name, opt); err != nil {
		n.u.logf("%v", err)
		return toErrno(unwrapErrno(err))
	}
	// Linking the copy in changed the parent's times; a copy-up is not a change of the
	// merged directory, so put them back as they were.
	restoreTimes(dst.fd, &parentSt)
	if isDir {
		n.setWhere(0, append([]int{0}, layers...))
	} else {
		n.setWhere(0, nil)
	}
	return 0
}

// restoreTimes sets the times of the directory open as fd back to those in st.
func restoreTimes(fd int, st *unix.Stat_t) {
	ts := []unix.Timespec{st.Atim, st.Mtim}
	unix.UtimesNanoAt(unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(fd), ts, 0)
}

func (u *unionFS) upper() *layer { return u.layers[0] }
