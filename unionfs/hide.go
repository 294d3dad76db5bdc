package unionfs

import (
	"syscall"

	"github.com/layerfs/layerfs/copyup"
	"golang.org/x/sys/unix"
)

// With -o noopen the kernel opens files without telling us (nodeio.go), so any regular file it still knows
// may be open, and must stay readable and writable when its last name goes (unlink, rename
// over it), as on any filesystem. Before such a removal the node is detached: its lower paths
// are written out (it is about to leave the tree that computes them), and an upper object with
// no other name gets a second name in the work directory, which it keeps until the kernel
// forgets the node. A crash leaves those names in the work directory, which the next mount
// empties.

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
	if n.u.layers[parts[0].layer].upper {
		var st unix.Stat_t
		if err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil || st.Nlink > 1 || !c.isSelf(&st) {
			return undo, 0 // other names keep it in the tree, or it is not this node's object
		}
		tmp := copyup.TempName()
		if err := unix.Linkat(dirfd, name, n.u.workFd, tmp, 0); err != nil {
			return undo, toErrno(err)
		}
		c.mu.Lock()
		c.hidden = tmp
		c.mu.Unlock()
		return func() {
			c.mu.Lock()
			c.hidden = ""
			c.mu.Unlock()
			unix.Unlinkat(n.u.workFd, tmp, 0)
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
	return n.hidden
}

// dropHidden removes the work-directory name once the kernel has forgotten the node.
func (n *node) dropHidden() {
	n.mu.Lock()
	h := n.hidden
	n.hidden = ""
	n.mu.Unlock()
	if h != "" {
		unix.Unlinkat(n.u.workFd, h, 0)
	}
}
