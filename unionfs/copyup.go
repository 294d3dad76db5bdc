package unionfs

import (
	"context"
	"errors"
	"strconv"
	"syscall"
	"time"

	"github.com/layerfs/layerfs/copyup"
	"github.com/layerfs/layerfs/unionfs/merge"
	"github.com/layerfs/layerfs/unionfs/xattrs"
	"github.com/layerfs/layerfs/whiteout"
	"golang.org/x/sys/unix"
)

// xattrPrefix is the namespace layerfs writes its markers in.
func (u *unionFS) xattrPrefix() string {
	if u.cfg.UserXattr {
		return whiteout.UserPrefix
	}
	return whiteout.TrustedPrefix
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
// each node's copyMu is taken alone, never while holding another's, except that a hard
// link's copy-up also copies up directories of its other names (never the node itself).
func (n *node) copyUp(ctx context.Context, withData bool) syscall.Errno {
	if !n.u.hasUpper {
		return syscall.EROFS
	}
	if n.topLayer().Upper {
		return 0
	}
	if _, parent := n.Parent(); parent == nil && !n.IsRoot() {
		return n.copyUpDetached(withData) // its last name is gone; an open file changes it
	}
	if p := n.parentNode(); p != nil {
		if errno := p.copyUp(ctx, true); errno != 0 {
			return errno
		}
	}
	n.copyMu.Lock()
	defer n.copyMu.Unlock()
	parts := n.parts()
	top := parts[0]
	if n.u.Layers[top.Layer].Upper {
		return 0 // copied up while we waited
	}
	path := n.path()
	start := time.Now()
	st, ust, err := n.u.copyUpOne(top, path, n.StableAttr().Ino, n.StableAttr().Mode&unix.S_IFMT, withData)
	if err != nil {
		return n.u.copyFailed(path, top.Layer, err)
	}
	ev := Event{Kind: "copy-up", Path: path, Layer: top.Layer, Duration: time.Since(start)}
	if withData && st.Mode&unix.S_IFMT == unix.S_IFREG {
		ev.Bytes = st.Size
	}
	n.u.trace(ev)
	up := merge.Part{Layer: 0, Path: path}
	if isDirStat(&st) {
		n.setWhere(n.u.compact(append([]merge.Part{up}, parts...), path), &ust)
		n.birthChanged()
		// Now merged, the directory reports one link: the kernel's cached attributes are
		// stale. Attributes only, at once (that takes no lock the kernel may hold while it
		// waits on this operation), so that a stat after the operation asks; the cached
		// listing from another goroutine, as dropping its pages may wait on the kernel.
		n.NotifyContent(-1, 0)
		go n.NotifyContent(0, 0)
		return 0
	}
	n.setWhere([]merge.Part{{Layer: 0}}, &ust)
	n.birthChanged()
	if st.Nlink > 1 {
		// Every visible name of a lower hard link becomes a link of the copy, so all names
		// keep showing one object (the kernel does this with index=on; we always do).
		if err := n.u.linkUpOthers(ctx, n.Root().Operations().(*node), top, st.Ino, path); err != nil {
			n.u.problem(path, "link-up of the other names of hard link /%s failed: %v", path, err)
			return toErrno(err)
		}
	}
	return 0
}

// copyUpOne copies the object at src, which must be of type wantType, into the upper at path,
// whose parent directory must exist there already, and returns the source's stat and the
// copy's. The parent's times are put back: a copy-up is no change of the merged directory.
func (u *unionFS) copyUpOne(srcPart merge.Part, path string, ino uint64, wantType uint32, withData bool) (st, copied unix.Stat_t, err error) {
	var parentSt unix.Stat_t
	sdir, sname := merge.SplitPath(srcPart.Path)
	dir, name := merge.SplitPath(path)
	src, err := u.Layers[srcPart.Layer].OpenDir(sdir)
	if err != nil {
		return st, copied, err
	}
	defer src.Release()
	dst, err := u.upper().OpenDir(dir)
	if err != nil {
		return st, copied, err
	}
	defer dst.Release()
	if err := unix.Fstatat(src.FD, sname, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return st, copied, err
	}
	if st.Mode&unix.S_IFMT != wantType {
		// The layer changed under the mount (a directory swapped for a symlink, say): copy
		// nothing the merged object was not.
		return st, copied, unix.ESTALE
	}
	if err := unix.Fstat(dst.FD, &parentSt); err != nil {
		return st, copied, err
	}
	opt := copyup.Options{
		WorkFd:    u.work.FD,
		SkipData:  !withData,
		NoSync:    u.cfg.Volatile,
		SkipXattr: whiteout.IsPrivateXattr,
		ProtAttr:  u.protAttr(),
		NoClone:   &u.noClone,
	}
	if !isDirStat(&st) {
		opt.ExtraXattrs = map[string][]byte{u.xattrPrefix() + merge.OriginAttr: []byte(strconv.FormatUint(ino, 10))}
	}
	if err := copyup.Object(copyup.Source{DirFd: src.FD, Name: sname, Stat: st}, dst.FD, name, opt); err != nil {
		return st, copied, err
	}
	err = unix.Fstatat(dst.FD, name, &copied, unix.AT_SYMLINK_NOFOLLOW)
	restoreTimes(dst.FD, &parentSt)
	return st, copied, err
}

// restoreTimes sets the times of the directory open as fd back to those in st.
func restoreTimes(fd int, st *unix.Stat_t) {
	ts := []unix.Timespec{st.Atim, st.Mtim}
	unix.UtimesNanoAt(unix.AT_FDCWD, xattrs.Path(fd, ""), ts, 0)
}

func (u *unionFS) upper() *merge.Layer { return u.Layers[0] }

// ensureUpperDir makes directory path (which the merged view shows) exist in the upper, with
// its ancestors. Directories the node tree knows are copied up through their nodes, so their
// cached layers stay right; below the first one it does not know, no node exists to go stale,
// and the copy-up goes by path.
func (u *unionFS) ensureUpperDir(ctx context.Context, root *node, path string) error {
	cur := root
	if errno := cur.copyUp(ctx, true); errno != 0 {
		return errno
	}
	parts := cur.parts()
	curPath := ""
	for _, c := range merge.SplitAll(path) {
		childPath := merge.JoinPath(curPath, c)
		if cur != nil {
			if ch := cur.GetChild(c); ch != nil {
				if cn, ok := ch.Operations().(*node); ok {
					if errno := cn.copyUp(ctx, true); errno != 0 {
						return errno
					}
					cur, curPath, parts = cn, childPath, cn.parts()
					continue
				}
			}
			cur = nil
		}
		dirs := u.NewDirs(parts)
		res, errno := u.Resolve(dirs, c)
		dirs.Release()
		if errno != 0 {
			return errno
		}
		if !isDirStat(&res.St) {
			return syscall.ENOTDIR
		}
		if !u.Layers[res.Top()].Upper {
			if _, _, err := u.copyUpOne(res.Parts[0], childPath, res.Ino, unix.S_IFDIR, true); err != nil && !errors.Is(err, unix.EEXIST) {
				return err
			}
			u.trace(Event{Kind: "copy-up", Path: childPath, Layer: res.Top()})
			res.Parts = append([]merge.Part{{Layer: 0, Path: childPath}}, res.Parts...)
		}
		curPath, parts = childPath, res.Parts
	}
	return nil
}
