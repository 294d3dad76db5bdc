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
//
// It reads as every mutating operation: plan (classify both names, refuse what the kernel
// refuses), copy up (the objects and both parents), act (one renameat2 in the upper), and
// compensate where acting fails (the replaced object's node is reattached).
func (n *node) Rename(ctx context.Context, name string, newParent fs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	np, ok := newParent.(*node)
	if !ok {
		return syscall.EXDEV
	}
	p, errno := n.planRename(name, np, newName, flags)
	if errno != 0 || p.nothing {
		return errno
	}
	if errno := p.copyUp(ctx); errno != 0 {
		return errno
	}
	return p.act()
}

// renamePlan is what Rename found out before changing anything.
type renamePlan struct {
	from, to           *node // the parent directories
	name, newName      string
	exchange           bool
	src, dst           merge.Resolution
	dstExists          bool
	srcIsDir, dstIsDir bool
	// nothing: the two names are one object's, and rename does nothing.
	nothing bool
	// dstFull: the destination is a directory of the upper alone with entries, over which
	// the upper's rename fails with ENOTEMPTY.
	dstFull bool

	// Filled in by copyUp:
	srcNode, dstNode *node // dstNode only when the destination object changes too
	srcBelow         int   // the lower layer that shows name, which then needs a whiteout; -1
}

// mayRename is EPERM where an immutable or append-only object or directory forbids the
// rename (vfs_rename: may_delete of the source, and may_delete or may_create of the
// destination).
func (p *renamePlan) mayRename() syscall.Errno {
	if errno := p.from.mayRemove(p.name); errno != 0 {
		return errno
	}
	if p.dstExists {
		return p.to.mayRemove(p.newName)
	}
	return p.to.mayAdd()
}

// planRename classifies both names and refuses what the kernel's overlayfs refuses, in its
// order; nothing is changed.
func (n *node) planRename(name string, np *node, newName string, flags uint32) (*renamePlan, syscall.Errno) {
	if flags&^(unix.RENAME_NOREPLACE|unix.RENAME_EXCHANGE) != 0 ||
		flags == unix.RENAME_NOREPLACE|unix.RENAME_EXCHANGE {
		return nil, syscall.EINVAL
	}
	if errno := checkName(newName); errno != 0 {
		return nil, errno
	}
	if !n.u.hasUpper {
		return nil, syscall.EROFS
	}
	p := &renamePlan{from: n, to: np, name: name, newName: newName, exchange: flags&unix.RENAME_EXCHANGE != 0, srcBelow: -1}
	var errno syscall.Errno
	if p.src, errno = n.resolveChild(name); errno != 0 {
		return nil, errno
	}
	p.dst, errno = np.resolveChild(newName)
	p.dstExists = errno == 0
	if errno != 0 && errno != syscall.ENOENT {
		return nil, errno
	}
	p.srcIsDir, p.dstIsDir = isDirStat(&p.src.St), p.dstExists && isDirStat(&p.dst.St)
	switch {
	case p.exchange && !p.dstExists:
		return nil, syscall.ENOENT
	case flags&unix.RENAME_NOREPLACE != 0 && p.dstExists:
		return nil, syscall.EEXIST
	case p.dstExists && p.src.Ino == p.dst.Ino && !p.exchange:
		p.nothing = true
		return p, 0
	}
	if errno := p.mayRename(); errno != 0 {
		return nil, errno
	}
	switch {
	case !p.exchange && p.dstExists && p.srcIsDir && !p.dstIsDir:
		return nil, syscall.ENOTDIR
	case !p.exchange && p.dstExists && !p.srcIsDir && p.dstIsDir:
		return nil, syscall.EISDIR
	case p.srcIsDir && n.u.hasLowerParts(&p.src) && n.u.cfg.RedirectDir != RedirectOn:
		return nil, syscall.EXDEV
	case p.exchange && p.dstIsDir && n.u.hasLowerParts(&p.dst) && n.u.cfg.RedirectDir != RedirectOn:
		return nil, syscall.EXDEV
	}
	if !p.exchange && p.dstIsDir {
		if errno := n.u.checkEmpty(p.dst.Parts); errno != 0 {
			// Over a directory of the upper alone the kernel leaves the check to the
			// upper's own rename, after the copy-ups and the marks: a rename that fails
			// there still leaves the source copied up, as here (act).
			if errno != syscall.ENOTEMPTY || n.u.hasLowerParts(&p.dst) {
				return nil, errno
			}
			p.dstFull = true
		}
	}
	return p, 0
}

// copyUp brings into the upper what the rename changes: the source object and both parents;
// the destination object too when it is exchanged, or when it is a name of a lower hard link
// (its other names lose a link, so the object is linked up first). It also finds whether a
// lower layer shows the source name, which then needs a whiteout.
func (p *renamePlan) copyUp(ctx context.Context) syscall.Errno {
	var errno syscall.Errno
	if p.srcNode, errno = p.from.childNode(ctx, p.name); errno != 0 {
		return errno
	}
	if errno := p.srcNode.copyUp(ctx, true); errno != 0 {
		return errno
	}
	if errno := p.to.copyUp(ctx, true); errno != 0 {
		return errno
	}
	u := p.from.u
	if p.exchange || (p.dstExists && !p.dstIsDir && !u.Layers[p.dst.Top()].Upper && p.dst.St.Nlink > 1) {
		if p.dstNode, errno = p.to.childNode(ctx, p.newName); errno != 0 {
			return errno
		}
		if errno := p.dstNode.copyUp(ctx, true); errno != 0 {
			return errno
		}
	}
	if !p.exchange {
		if p.srcBelow, errno = p.from.lowerOf(p.name); errno != 0 {
			return errno
		}
	}
	return 0
}

// act renames in the upper: it clears the way at the destination, marks moved directories,
// detaches what the rename replaces, and makes one renameat2 (leaving a whiteout where a
// lower layer shows the old name); if that fails it puts the replaced node back.
func (p *renamePlan) act() syscall.Errno {
	u := p.from.u
	sd, err := u.upper().OpenDir(p.from.path())
	if err != nil {
		return toErrno(err)
	}
	defer sd.Release()
	dd, err := u.upper().OpenDir(p.to.path())
	if err != nil {
		return toErrno(err)
	}
	defer dd.Release()
	if p.srcIsDir || p.dstIsDir {
		// What the upper's redirected directories are may change (redirect.go).
		sets := p.srcIsDir && len(p.srcNode.lowerParts()) > 0
		moved := []string{merge.JoinPath(p.from.path(), p.name)}
		if p.exchange && p.dstIsDir {
			sets = sets || len(p.dstNode.lowerParts()) > 0
			moved = append(moved, merge.JoinPath(p.to.path(), p.newName))
		}
		u.redirects.dirMoved(sets, moved...)
		defer u.redirects.dirMoved(sets, moved...)
	}
	var aufsAtDst bool
	var errno syscall.Errno
	if !p.dstFull {
		if aufsAtDst, errno = p.clearDestination(dd.FD); errno != 0 {
			return errno
		}
	}
	// A directory with lower parts records where they are (redirect_dir=on); one without
	// arriving in a merged directory must not merge with a lower namesake there.
	if p.srcIsDir {
		if err := u.markMovedDir(p.srcNode, sd.FD, p.name, p.to); err != nil {
			return toErrno(err)
		}
	}
	if p.exchange && p.dstIsDir {
		if err := u.markMovedDir(p.dstNode, dd.FD, p.newName, p.from); err != nil {
			return toErrno(err)
		}
	}

	undo := func() {}
	switch {
	case p.dstExists && !p.dstIsDir && !p.exchange:
		if undo, errno = p.to.detachChild(p.newName, dd.FD); errno != 0 {
			return errno
		}
	case p.dstExists && p.dstIsDir && !p.exchange:
		undo = p.to.keepReplacedDir(p.newName)
	}
	if err := p.renameat(sd.FD, dd.FD); err != nil {
		undo()
		if p.dstFull && u.hasLowerParts(&p.src) {
			// The kernel's overlayfs leaves the source's parent with a new mtime when the
			// move of a directory with lower parts fails in the upper (its atime stays;
			// the move of a directory of the upper alone leaves both).
			unix.UtimesNanoAt(sd.FD, ".", []unix.Timespec{{Nsec: unix.UTIME_OMIT}, {Nsec: unix.UTIME_NOW}}, 0)
			p.from.NotifyContent(-1, 0)
		}
		return toErrno(err)
	}
	if p.srcBelow >= 0 {
		u.trace(Event{Kind: "whiteout", Path: merge.JoinPath(p.from.path(), p.name), Layer: p.srcBelow})
	}
	if aufsAtDst {
		unix.Unlinkat(dd.FD, whiteout.Prefix+p.newName, 0)
	}
	return 0
}

// clearDestination removes from the upper what stands in the way at the destination name of
// dd: a whiteout device where a directory arrives (rename cannot put a directory over a
// non-directory), and the whiteouts inside a directory that is empty in the merged view. It
// reports an AUFS whiteout of the name, to be removed once the rename is done.
func (p *renamePlan) clearDestination(dd int) (aufs bool, errno syscall.Errno) {
	if p.exchange {
		return false, 0
	}
	e, err := whiteout.Classify(dd, p.newName, whiteout.LookupRule(true, true))
	switch {
	case err != nil:
		return false, toErrno(err)
	case e.Format == whiteout.Device && p.srcIsDir:
		if err := unix.Unlinkat(dd, p.newName, 0); err != nil {
			return false, toErrno(err)
		}
	case e.Kind == whiteout.Object && isDirStat(&e.Stat):
		if err := clearDir(dd, p.newName); err != nil {
			return false, toErrno(err)
		}
	case e.Format == whiteout.Aufs:
		return true, 0
	}
	return false, 0
}

// renameat is the one rename in the upper: an exchange, or a move that leaves a whiteout
// where a lower layer shows the old name. Where the upper's filesystem or our privileges do
// not allow RENAME_WHITEOUT, the move and the whiteout are made one after the other.
func (p *renamePlan) renameat(sd, dd int) error {
	rflags := uint(0)
	switch {
	case p.exchange:
		rflags = unix.RENAME_EXCHANGE
	case p.srcBelow >= 0:
		rflags = unix.RENAME_WHITEOUT
	}
	err := unix.Renameat2(sd, p.name, dd, p.newName, rflags)
	if rflags == unix.RENAME_WHITEOUT && (errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EPERM)) {
		if err = unix.Renameat(sd, p.name, dd, p.newName); err == nil {
			_, err = whiteout.Create(sd, p.name)
		}
	}
	return err
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
