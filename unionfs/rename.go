package unionfs

import (
	"context"
	"errors"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/layerfs/layerfs/unionfs/merge"
	"github.com/layerfs/layerfs/unionfs/workdir"
	"github.com/layerfs/layerfs/whiteout"
	"golang.org/x/sys/unix"
)

var _ fs.NodeRenamer = (*node)(nil)

// childNode returns the node of name in directory n, looking it up if the tree lacks it.
func (n *node) childNode(ctx context.Context, name string) (*node, syscall.Errno) {
	if ch := n.GetChild(name); ch != nil {
		if cn, ok := ch.Operations().(*node); ok {
			return cn, 0
		}
	}
	var out fuse.EntryOut
	ch, errno := n.Lookup(ctx, name, &out)
	if errno != 0 {
		return nil, errno
	}
	cn, _ := ch.Operations().(*node)
	if cn == nil {
		return nil, syscall.EIO
	}
	return cn, 0
}

// Rename moves name in n to newName in newParent, as the kernel's overlayfs does: the object
// is copied up first; a directory with parts in a lower layer cannot move (EXDEV, so tools fall
// back to copying); a name left behind that a lower layer holds becomes a whiteout; a
// directory moved into a merged directory is made opaque so it does not merge with whatever
// a lower layer has there. RENAME_NOREPLACE and RENAME_EXCHANGE are supported.
func (n *node) Rename(ctx context.Context, name string, newParent fs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	np, ok := newParent.(*node)
	if !ok {
		return syscall.EXDEV
	}
	if flags&^(unix.RENAME_NOREPLACE|unix.RENAME_EXCHANGE) != 0 ||
		flags == unix.RENAME_NOREPLACE|unix.RENAME_EXCHANGE {
		return syscall.EINVAL
	}
	if errno := checkName(newName); errno != 0 {
		return errno
	}
	if !n.u.hasUpper {
		return syscall.EROFS
	}
	exchange := flags&unix.RENAME_EXCHANGE != 0

	src, errno := n.resolveChild(name)
	if errno != 0 {
		return errno
	}
	dst, errno := np.resolveChild(newName)
	dstExists := errno == 0
	if errno != 0 && errno != syscall.ENOENT {
		return errno
	}
	srcIsDir, dstIsDir := isDirStat(&src.St), dstExists && isDirStat(&dst.St)
	switch {
	case exchange && !dstExists:
		return syscall.ENOENT
	case flags&unix.RENAME_NOREPLACE != 0 && dstExists:
		return syscall.EEXIST
	case dstExists && src.Ino == dst.Ino && !exchange:
		return 0 // two names of one object: rename does nothing
	case !exchange && dstExists && srcIsDir && !dstIsDir:
		return syscall.ENOTDIR
	case !exchange && dstExists && !srcIsDir && dstIsDir:
		return syscall.EISDIR
	case srcIsDir && n.u.hasLowerParts(&src) && n.u.cfg.RedirectDir != RedirectOn:
		return syscall.EXDEV
	case exchange && dstIsDir && n.u.hasLowerParts(&dst) && n.u.cfg.RedirectDir != RedirectOn:
		return syscall.EXDEV
	}
	if !exchange && dstIsDir {
		if errno := n.u.checkEmpty(dst.Parts); errno != 0 {
			return errno
		}
	}

	srcNode, errno := n.childNode(ctx, name)
	if errno != 0 {
		return errno
	}
	if errno := srcNode.copyUp(ctx, true); errno != 0 {
		return errno
	}
	if errno := np.copyUp(ctx, true); errno != 0 {
		return errno
	}
	var dstNode *node
	if exchange || (dstExists && !dstIsDir && !n.u.Layers[dst.Top()].Upper && dst.St.Nlink > 1) {
		// Exchanged objects are both changed; an overwritten name of a lower hard link
		// leaves its other names one link fewer, so the object is linked up first.
		if dstNode, errno = np.childNode(ctx, newName); errno != 0 {
			return errno
		}
		if errno := dstNode.copyUp(ctx, true); errno != 0 {
			return errno
		}
	}
	srcBelow := -1 // the lower layer that shows name, which then needs a whiteout
	if !exchange {
		if srcBelow, errno = n.lowerOf(name); errno != 0 {
			return errno
		}
	}
	srcWhiteout := srcBelow >= 0

	sd, err := n.u.upper().OpenDir(n.path())
	if err != nil {
		return toErrno(err)
	}
	defer sd.Release()
	dd, err := n.u.upper().OpenDir(np.path())
	if err != nil {
		return toErrno(err)
	}
	defer dd.Release()

	// What sits at the destination in the upper, and must go or be replaced.
	aufsAtDst := false
	if !exchange {
		e, err := whiteout.Classify(dd.FD, newName, whiteout.LookupRule(true, true))
		switch {
		case err != nil:
			return toErrno(err)
		case e.Format == whiteout.Device && srcIsDir:
			// rename cannot put a directory over a non-directory.
			if err := unix.Unlinkat(dd.FD, newName, 0); err != nil {
				return toErrno(err)
			}
		case e.Kind == whiteout.Object && isDirStat(&e.Stat):
			// The merged view of it is empty, but its upper part may hold whiteouts.
			if err := clearDir(dd.FD, newName); err != nil {
				return toErrno(err)
			}
		case e.Format == whiteout.Aufs:
			aufsAtDst = true
		}
	}

	// A directory with lower parts records where they are (redirect_dir=on); one without
	// arriving in a merged directory must not merge with a lower namesake there.
	if srcIsDir {
		if err := n.u.markMovedDir(srcNode, sd.FD, name, np); err != nil {
			return toErrno(err)
		}
	}
	if exchange && dstIsDir {
		if err := n.u.markMovedDir(dstNode, dd.FD, newName, n); err != nil {
			return toErrno(err)
		}
	}

	undo := func() {}
	if dstExists && !dstIsDir && !exchange {
		if undo, errno = np.detachChild(newName, dd.FD); errno != 0 {
			return errno
		}
	}
	if dstExists && dstIsDir && !exchange {
		undo = np.keepReplacedDir(newName)
	}
	rflags := uint(0)
	switch {
	case exchange:
		rflags = unix.RENAME_EXCHANGE
	case srcWhiteout:
		rflags = unix.RENAME_WHITEOUT
	}
	err = unix.Renameat2(sd.FD, name, dd.FD, newName, rflags)
	if rflags == unix.RENAME_WHITEOUT && (errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EPERM)) {
		// The upper's filesystem or our privileges do not allow RENAME_WHITEOUT.
		if err = unix.Renameat(sd.FD, name, dd.FD, newName); err == nil {
			_, err = whiteout.Create(sd.FD, name)
		}
	}
	if err != nil {
		undo()
		return toErrno(err)
	}
	if srcWhiteout {
		n.u.trace(Event{Kind: "whiteout", Path: merge.JoinPath(n.path(), name), Layer: srcBelow})
	}
	if aufsAtDst {
		unix.Unlinkat(dd.FD, whiteout.Prefix+newName, 0)
	}
	return 0
}

// keepReplacedDir keeps the directory the kernel knows at name in n answerable after a rename
// replaces it: a descriptor opened on it (fstat, fchdir) still works on any filesystem, and
// stat then says it has no links. The node keeps an O_PATH descriptor of its topmost object
// until the kernel forgets it. The returned undo drops it again if the rename fails.
func (n *node) keepReplacedDir(name string) (undo func()) {
	undo = func() {}
	ch := n.GetChild(name)
	if ch == nil {
		return undo
	}
	c, ok := ch.Operations().(*node)
	if !ok || c.StableAttr().Mode != syscall.S_IFDIR {
		return undo
	}
	top := c.top()
	fd, err := c.u.Layers[top.Layer].Open(top.Path, unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		return undo
	}
	c.mu.Lock()
	o := c.openLocked()
	old := o.keptFd
	o.keptFd = fd
	c.mu.Unlock()
	if old >= 0 {
		unix.Close(old)
	}
	return func() {
		c.mu.Lock()
		if c.open != nil && c.open.keptFd == fd {
			c.open.keptFd = -1
		}
		c.mu.Unlock()
		unix.Close(fd)
	}
}

// isMerged reports whether directory n merges lower layers.
func (n *node) isMerged() bool {
	return len(n.lowerParts()) > 0
}

// clearDir removes everything inside directory name of dirfd.
func clearDir(dirfd int, name string) error {
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	names, err := workdir.ReadNames(fd)
	if err != nil {
		return err
	}
	for _, name := range names {
		if err := workdir.RemoveAll(fd, name); err != nil {
			return err
		}
	}
	return nil
}

// markMovedDir prepares the upper directory entry name of dirfd, the object of d, for moving
// into directory to: a redirect to its lower parts if it has any, else opaque if it arrives in
// a merged directory.
func (u *unionFS) markMovedDir(d *node, dirfd int, name string, to *node) error {
	if lower := d.lowerParts(); len(lower) > 0 {
		u.trace(Event{Kind: "redirect", Path: d.path(), Layer: lower[0].Layer, Detail: "/" + lower[0].Path})
		return u.setRedirect(dirfd, name, lower[0].Path)
	}
	if to.isMerged() {
		u.trace(Event{Kind: "opaque", Path: d.path(), Layer: -1})
		return whiteout.SetOpaque(dirfd, name, u.xattrPrefix())
	}
	return nil
}
