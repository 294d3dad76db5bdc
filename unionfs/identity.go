package unionfs

import (
	"sync"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
)

// Identity: the numbering rules are package merge's (merge.Numbering, which unionFS embeds);
// what needs the node tree is here: one directory holds a number at a time (dirIdentities).

// dirIdentities remembers which merged directory holds each directory inode number. A merged
// directory takes its topmost lower part's number, so two merged directories share one only
// when a redirect leads to a lower directory that is still visible at its own name (an upper
// damaged or edited by hand). The kernel then refuses the second with ESTALE; so do we,
// rather than let go-fuse serve both names from one inode.
type dirIdentities struct {
	mu   sync.Mutex       // a leaf: nothing of ours is locked under it
	byNo map[uint64]*node // guarded by mu
}

// claim records that dir, about to be returned for name in parent, holds ino. It fails with
// ESTALE when another directory that is still in the tree (inTree) holds it.
func (d *dirIdentities) claim(ino uint64, dir *node, parent *fs.Inode, name string) syscall.Errno {
	d.mu.Lock()
	defer d.mu.Unlock()
	if prev, ok := d.byNo[ino]; ok && inTree(prev.EmbeddedInode()) {
		if pname, pparent := prev.Parent(); pparent != parent || pname != name {
			return syscall.ESTALE
		}
		return 0 // the same directory looked up again: go-fuse keeps prev
	}
	if d.byNo == nil {
		d.byNo = map[uint64]*node{}
	}
	d.byNo[ino] = dir
	return 0
}

// inTree reports whether n is reached from the root through the tree's names. A directory the
// kernel has forgotten is not, once a lookup has put a new node at its name, even while go-fuse
// keeps it for a child whose FORGET has not been served yet: go-fuse then leaves its old parent
// link in place, and the two FORGETs may be served in either order (a race the kernel's memory
// pressure, or a prune, can start at any time).
func inTree(n *fs.Inode) bool {
	for !n.IsRoot() {
		name, parent := n.Parent()
		if parent == nil || parent.GetChild(name) != n {
			return false
		}
		n = parent
	}
	return true
}

// forget drops dir's claim once the kernel has forgotten it.
func (d *dirIdentities) forget(ino uint64, dir *node) {
	d.mu.Lock()
	if d.byNo[ino] == dir {
		delete(d.byNo, ino)
	}
	d.mu.Unlock()
}

var _ fs.NodeOnForgetter = (*node)(nil)

// OnForget releases what the node holds once the kernel no longer knows it: an unnamed
// file's descriptor (tmpfile.go), a removed file's work-directory name (hide.go), a
// directory's number, a stale birth time's mark (statx.go).
func (n *node) OnForget() {
	n.named()
	n.dropHidden()
	n.birthKnown() // the kernel's inode, and the birth time it held, are gone
	if n.StableAttr().Mode == syscall.S_IFDIR {
		n.u.dirs.forget(n.StableAttr().Ino, n)
	}
}
