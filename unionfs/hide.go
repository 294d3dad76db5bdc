package unionfs

import (
	"syscall"

	"github.com/layerfs/layerfs/copyup"
	"github.com/layerfs/layerfs/unionfs/merge"
	"github.com/layerfs/layerfs/unionfs/workdir"
	"github.com/layerfs/layerfs/whiteout"
	"golang.org/x/sys/unix"
)

// A regular file the kernel still knows may be open, and must stay readable and writable when
// its last name goes (unlink, rename over it), as on any filesystem. Before such a removal the
// node is detached: its lower paths are written out (it is about to leave the tree that
// computes them), so that it still reads, and is copied up into the work directory if it is
// then written. An upper object with no other name that is open also gets a second name in the
// work directory, through which changes by attribute (fchmod, futimens) still reach it; it goes
// when the last handle closes. With -o noopen (nodeio.go) whether it is open is unknown, so
// every such object keeps the link until the kernel forgets the node. A crash leaves those
// names in the work directory, which the next mount empties.

// detachChild prepares the node the kernel knows at name in n, if it is a regular file, to
// lose that name; dirfd is n's upper directory. The returned undo puts things back if the
// removal then fails.
func (n *node) detachChild(name string, dirfd int) (undo func(), errno syscall.Errno) {
	undo = func() {}
	ch := n.GetChild(name)
	if ch == nil || ch.StableAttr().Mode != syscall.S_IFREG {
		return undo, 0
	}
	c, ok := ch.Operations().(*node)
	if !ok {
		return undo, 0
	}
	parts := c.parts()
	if n.u.Layers[parts[0].Layer].Upper {
		c.mu.Lock()
		open := c.openFilesLocked() > 0
		c.mu.Unlock()
		if !n.u.cfg.NoOpen && !open {
			return undo, 0 // not open: nothing can reach it once its name is gone
		}
		var st unix.Stat_t
		if err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil || st.Nlink > 1 || !c.isSelf(&st) {
			return undo, 0 // other names keep it in the tree, or it is not this node's object
		}
		tmp, err := n.u.work.Keep(dirfd, name)
		if err != nil {
			return undo, toErrno(err)
		}
		c.mu.Lock()
		c.openLocked().hidden = tmp
		c.mu.Unlock()
		return func() {
			c.mu.Lock()
			c.openLocked().hidden = ""
			c.mu.Unlock()
			n.u.work.Drop(tmp)
		}, 0
	}
	c.mu.Lock()
	old := c.where
	c.where = parts
	c.mu.Unlock()
	return func() {
		c.mu.Lock()
		c.where = old
		c.mu.Unlock()
	}, 0
}

// hiddenName is the work-directory name that keeps the node's object, "" if none.
func (n *node) hiddenName() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.hiddenLocked()
}

// dropHidden removes the work-directory name once the kernel has forgotten the node.
func (n *node) dropHidden() {
	n.mu.Lock()
	h := n.hiddenLocked()
	if h != "" {
		n.open.hidden = ""
	}
	n.mu.Unlock()
	if h != "" {
		n.u.work.Drop(h)
	}
}

// copyUpDetached copies up a lower object whose last name is gone while the kernel still
// knows it (written or changed through a descriptor opened before the removal): the copy goes
// to the work directory, where hidden keeps it until the kernel forgets the node.
func (n *node) copyUpDetached(withData bool) syscall.Errno {
	n.copyMu.Lock()
	defer n.copyMu.Unlock()
	top := n.top()
	if n.u.Layers[top.Layer].Upper {
		return 0 // copied up while we waited
	}
	dir, name := merge.SplitPath(top.Path)
	src, err := n.u.Layers[top.Layer].OpenDir(dir)
	if err != nil {
		return toErrno(err)
	}
	defer src.Release()
	var st unix.Stat_t
	if err := unix.Fstatat(src.FD, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return toErrno(err)
	}
	if !n.isSelf(&st) {
		return syscall.ESTALE
	}
	tmp := workdir.TempName()
	opt := copyup.Options{WorkFd: n.u.work.FD, SkipData: !withData, NoSync: true, SkipXattr: whiteout.IsPrivateXattr, ProtAttr: n.u.protAttr(), NoClone: &n.u.noClone}
	if err := copyup.Object(copyup.Source{DirFd: src.FD, Name: name, Stat: st}, n.u.work.FD, tmp, opt); err != nil {
		return n.u.copyFailed(top.Path, top.Layer, err)
	}
	if err := unix.Fstatat(n.u.work.FD, tmp, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		unix.Unlinkat(n.u.work.FD, tmp, 0)
		return toErrno(err)
	}
	n.mu.Lock()
	n.openLocked().hidden = tmp
	n.mu.Unlock()
	n.setWhere([]merge.Part{{Layer: 0}}, &st)
	n.birthChanged()
	return 0
}
