package unionfs

import (
	"reflect"
	"syscall"
	"time"
	"unsafe"

	"github.com/hanwen/go-fuse/v2/fs"
)

// Pruning: the kernel keeps every name it has looked up, with its inode, until memory runs
// short, and the server keeps a node for each. On a host with a mount per container, most
// mounts idle most of the time, and what a walk left there adds up (about 600 bytes of server
// heap and as much again in the kernel per name). So a server idle for a while asks the kernel
// to forget what it no longer uses (FUSE_NOTIFY_PRUNE, Linux 6.18: the kernel drops the
// inode's dentries that nothing holds — no open file, working directory or mount on them —
// and the inode with them, and says FORGET as under memory pressure), and the server's nodes
// go with its FORGETs. The next access looks the names up again, in layers whose own caches
// are still warm.

// DefaultIdlePrune is how long a server goes without requests before it prunes, unless
// Config.IdlePrune says otherwise: long enough that a mount in use keeps its cache between
// bursts of work, short enough that a host's idle mounts give their memory back.
const DefaultIdlePrune = 5 * time.Minute

// nodeIDOffset is where fs.Inode keeps the kernel's node id, which FUSE_NOTIFY_PRUNE names
// inodes by; nodeIDKnown is false if go-fuse no longer has the field. go-fuse has Inode.NotifyPrune,
// but it sends only when its bridge talks to the fuse.Server itself, and ours talks to
// backingHooks (passthrough.go); it exports no other way to the id.
var nodeIDOffset, nodeIDKnown = func() (uintptr, bool) {
	f, ok := reflect.TypeFor[fs.Inode]().FieldByName("nodeId")
	if !ok || f.Type.Kind() != reflect.Uint64 {
		return 0, false
	}
	return f.Offset, true
}()

// kernelNodeID is the node id the kernel knows it by.
func kernelNodeID(in *fs.Inode) uint64 {
	return *(*uint64)(unsafe.Add(unsafe.Pointer(in), nodeIDOffset))
}

// pruneBatch is how many node ids one notification carries (8 bytes each).
const pruneBatch = 4096

// pruneOrder lists the node ids below root, every directory's children before the directory:
// the kernel drops a directory only once no child dentry holds it, and it takes the ids in
// the order given, so a whole idle subtree goes in one pass.
func pruneOrder(root *fs.Inode) []uint64 {
	type frame struct {
		n        *fs.Inode
		children []*fs.Inode
	}
	childrenOf := func(n *fs.Inode) []*fs.Inode {
		if !n.IsDir() {
			return nil
		}
		m := n.Children()
		cs := make([]*fs.Inode, 0, len(m))
		for _, c := range m {
			cs = append(cs, c)
		}
		return cs
	}
	var ids []uint64
	seen := map[*fs.Inode]bool{root: true} // a hard link's one node is under each of its names
	stack := []frame{{root, childrenOf(root)}}
	for len(stack) > 0 {
		top := &stack[len(stack)-1]
		if len(top.children) == 0 {
			if top.n != root {
				ids = append(ids, kernelNodeID(top.n))
			}
			stack = stack[:len(stack)-1]
			continue
		}
		c := top.children[len(top.children)-1]
		top.children = top.children[:len(top.children)-1]
		if !seen[c] {
			seen[c] = true
			stack = append(stack, frame{c, childrenOf(c)})
		}
	}
	return ids
}

// prune asks the kernel to forget every inode of the mount that nothing uses, and reports
// how many it named. ENOSYS: the kernel has no FUSE_NOTIFY_PRUNE (before Linux 6.18), or
// go-fuse no longer shows the node ids.
func (s *Server) prune() (int, syscall.Errno) {
	if !nodeIDKnown {
		return 0, syscall.ENOSYS
	}
	ids := pruneOrder(s.root.EmbeddedInode())
	for start := 0; start < len(ids); start += pruneBatch {
		if st := s.Server.PruneNotify(ids[start:min(start+pruneBatch, len(ids))]); !st.Ok() {
			return start, syscall.Errno(st)
		}
	}
	return len(ids), 0
}
