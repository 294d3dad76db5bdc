package unionfs

import (
	"context"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/layerfs/layerfs/unionfs/merge"
	"github.com/layerfs/layerfs/whiteout"
	"golang.org/x/sys/unix"
)

// node is one merged path. Its place in the tree (name and parent) is kept by fs.Inode; what
// it knows itself is where it resolves, which changes when it is copied up.
type node struct {
	fs.Inode
	u *unionFS

	// copyMu serialises copy-ups of this node (lock order: see the package doc).
	copyMu sync.Mutex

	// mu guards the fields below up to pt; it is taken for short spans, under copyMu,
	// file.mu or dirHandle.mu, never the other way round.
	mu sync.Mutex
	// where lists the layers the object lives in, topmost first: one for a non-directory,
	// every merged layer directory for a directory. The upper part's path is not kept (see
	// part); use parts(). Guarded by mu.
	where []merge.Part
	// dev and ino identify the topmost object itself, so that an operation can tell the
	// object from another one that has taken its name since (a rename over it). Guarded by
	// mu.
	dev, ino uint64
	// open is what only an opened (or removed, or unnamed) object needs, nil until then
	// (openLocked): most nodes, made by a walk, are never opened, and memory per node
	// counts. Guarded by mu, as are its fields.
	open *nodeOpen
	// attrs holds what is known of the object's extended attributes and inode flags
	// (attrNoXattrs, attrProtKnown …: xattr.go, protect.go). Atomic: read without mu.
	attrs atomic.Uint32
	// privs says whether the object carries a set-id bit or a capability that a write must
	// drop: privsUnknown, privsNone or privsSome (killpriv.go).
	privs atomic.Uint32
}

var (
	_ fs.InodeEmbedder  = (*node)(nil)
	_ fs.NodeLookuper   = (*node)(nil)
	_ fs.NodeGetattrer  = (*node)(nil)
	_ fs.NodeReadlinker = (*node)(nil)
	_ fs.NodeOpener     = (*node)(nil)
	_ fs.NodeStatfser   = (*node)(nil)
)

// path is the node's path relative to the mount root ("" for the root), which is also its
// path inside every layer it comes from.
func (n *node) path() string {
	return n.Path(n.Root())
}

// parts returns where the node lives, with the paths that are not stored filled in.
func (n *node) parts() []merge.Part {
	n.mu.Lock()
	ps := append([]merge.Part(nil), n.where...)
	n.mu.Unlock()
	merged, known := "", false
	for i := range ps {
		if ps[i].Path == "" || n.u.Layers[ps[i].Layer].Upper {
			if !known {
				merged, known = n.path(), true
			}
			ps[i].Path = merged
		}
	}
	return ps
}

// compact drops from parts the paths equal to the merged path, which is all of them but where
// a redirect led: a node keeps only what the tree cannot tell it (memory per node matters
// when a walk makes one per file). With redirect_dir=on it keeps them all: a directory with
// lower parts may move, and what is below it keeps its lower paths.
func (u *unionFS) compact(parts []merge.Part, merged string) []merge.Part {
	if u.cfg.RedirectDir == RedirectOn {
		return parts
	}
	if len(parts) == 1 && parts[0].Path == merged {
		// The common case, a file in one layer under its own path: a slice shared by every
		// such node of the layer (where is never changed in place, only replaced).
		return u.Layers[parts[0].Layer].Alone
	}
	out := make([]merge.Part, len(parts))
	for i, p := range parts {
		if p.Path != merged {
			out[i].Path = p.Path
		}
		out[i].Layer = p.Layer
	}
	return out
}

// top returns the topmost part.
func (n *node) top() merge.Part { return n.parts()[0] }

// lowerParts returns the parts below the upper.
func (n *node) lowerParts() []merge.Part {
	var out []merge.Part
	for _, p := range n.parts() {
		if !n.u.Layers[p.Layer].Upper {
			out = append(out, p)
		}
	}
	return out
}

// setWhere records where a copy-up put the object. Its attributes change (the copy has the
// overlay's own), its immutable and append-only flags do not: the copy keeps them in
// overlay.protattr (copyup's copyFileattr), so what protFlags knew stays true.
func (n *node) setWhere(parts []merge.Part, st *unix.Stat_t) {
	n.setAttrBits(0, attrNoXattrs)
	n.mu.Lock()
	n.where = parts
	n.dev, n.ino = st.Dev, st.Ino
	n.mu.Unlock()
}

// isSelf reports whether st describes the node's own topmost object.
func (n *node) isSelf(st *unix.Stat_t) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.dev == st.Dev && n.ino == st.Ino
}

func (n *node) topLayer() *merge.Layer {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.u.Layers[n.where[0].Layer]
}

// newChild makes (or finds, for a hard link or a name seen before) the inode for res, found
// at the merged path merged. A directory whose number another merged directory holds is
// ESTALE (identity.go).
func (n *node) newChild(ctx context.Context, res *merge.Resolution, merged string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	parts := n.u.compact(res.Parts, merged)
	child := &node{u: n.u, where: parts, dev: res.St.Dev, ino: res.St.Ino}
	shown := res.St
	n.u.overrideAttr(res.Parts[0], &shown)
	ch := n.NewInode(ctx, child, fs.StableAttr{Mode: uint32(shown.Mode) & syscall.S_IFMT, Ino: res.Ino})
	if cn, ok := ch.Operations().(*node); ok {
		// A lower object's flags are all in its attributes (overlay.protattr counts only on
		// the upper), and so are an upper object's that the lookup's listxattr found without
		// overlay.protattr: known at no cost (protect.go). That list also tells an object
		// without extended attributes (xattr.go).
		x := res.Xattrs
		if !n.u.Layers[res.Top()].Upper || x&merge.XattrsListed != 0 && x&merge.XattrsProtAttr == 0 {
			cn.setProtFlags(statxBits.flags(res.Attrs))
		}
		if x&merge.XattrsNone != 0 {
			cn.setAttrBits(attrNoXattrs, 0)
		}
	}
	if isDirStat(&res.St) {
		_, base := merge.SplitPath(merged)
		if errno := n.u.dirs.claim(res.Ino, child, n.EmbeddedInode(), base); errno != 0 {
			return nil, errno
		}
	}
	n.u.fillAttr(&out.Attr, &shown, res.Ino, len(res.Parts))
	if n.u.births.has(res.Ino) {
		out.SetAttrTimeout(volatileTimeout) // statx.go
	}
	return ch, 0
}

// fillAttr converts a layer's stat into merged attributes, owners as shown (idmap.go). A directory merged from several
// layers reports one link, as the kernel does: counting subdirectories of a merge is not worth it.
func (u *unionFS) fillAttr(out *fuse.Attr, st *unix.Stat_t, ino uint64, mergedLayers int) {
	out.Ino = ino
	out.Size = uint64(st.Size)
	out.Blocks = uint64(st.Blocks)
	out.Atime = uint64(st.Atim.Sec)
	out.Atimensec = uint32(st.Atim.Nsec)
	out.Mtime = uint64(st.Mtim.Sec)
	out.Mtimensec = uint32(st.Mtim.Nsec)
	out.Ctime = uint64(st.Ctim.Sec)
	out.Ctimensec = uint32(st.Ctim.Nsec)
	out.Mode = st.Mode
	out.Nlink = uint32(st.Nlink)
	if mergedLayers > 1 {
		out.Nlink = 1
	}
	out.Owner = fuse.Owner{Uid: st.Uid, Gid: st.Gid}
	u.showOwner(out)
	out.Rdev = uint32(st.Rdev)
	out.Blksize = uint32(st.Blksize)
}

// Lookup resolves name in this merged directory.
func (n *node) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if len(name) > 255 {
		return nil, syscall.ENAMETOOLONG
	}
	if whiteout.IsMarkerName(name) {
		return nil, syscall.ENOENT
	}
	res, errno := n.resolveChild(name)
	if errno != 0 {
		return nil, errno
	}
	if n.linkUpFromKernelIndex(ctx, name, &res) {
		if res, errno = n.resolveChild(name); errno != 0 {
			return nil, errno
		}
	}
	return n.newChild(ctx, &res, merge.JoinPath(n.path(), name), out)
}

// Getattr stats the topmost object.
func (n *node) Getattr(ctx context.Context, f fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	var st unix.Stat_t
	merged, _, errno := n.statTop(f, &st)
	if errno != 0 {
		return errno
	}
	n.u.fillAttr(&out.Attr, &st, n.StableAttr().Ino, merged)
	if n.uncachedAttrs() {
		out.SetTimeout(volatileTimeout)
	}
	return 0
}

// statTop stats the object n stands for: its topmost layer object, or the open descriptor of
// it where its name is gone or names another object now. It returns how many layers the
// object merges (a merged directory reports one link) and the object's birth time (statx.go),
// which the same statx gives.
func (n *node) statTop(f fs.FileHandle, st *unix.Stat_t) (int, whiteout.Birth, syscall.Errno) {
	if h := n.hiddenName(); h != "" {
		// Its last name is gone; the work directory's link is not one of its names.
		birth, err := whiteout.StatBirth(n.u.work.FD, h, unix.AT_SYMLINK_NOFOLLOW, st)
		if err != nil {
			return 0, birth, toErrno(err)
		}
		st.Nlink--
		return 1, birth, 0
	}
	parts := n.parts()
	top := parts[0]
	birth, err := n.u.Layers[top.Layer].StatBirth(top.Path, st)
	if err != nil && !merge.Missing(err) {
		return 0, birth, toErrno(err)
	}
	if err == nil && n.isSelf(st) {
		n.u.overrideAttr(top, st)
	}
	if err != nil || !n.isSelf(st) {
		// The name is gone (an unlinked file still open) or now names another object
		// (renamed over): the open descriptor of this object still answers.
		fd := -1
		if fh, ok := fileOf(f); ok {
			fd = fh.current()
		}
		n.mu.Lock()
		if fd < 0 {
			fd = n.keptFdLocked()
		}
		n.mu.Unlock()
		if fd < 0 {
			return 0, birth, syscall.ENOENT
		}
		if birth, err = whiteout.StatBirth(fd, "", unix.AT_EMPTY_PATH, st); err != nil {
			return 0, birth, toErrno(err)
		}
		if !n.isSelf(st) {
			return 0, birth, syscall.ENOENT
		}
	}
	if n.u.Layers[top.Layer].Upper && st.Nlink > 1 && !isDirStat(st) {
		// The parent opened beneath the layer, then one name: a multi-component path under
		// /proc/self/fd would follow symlinks in its directories.
		dir, name := merge.SplitPath(top.Path)
		if d, err := n.u.upper().OpenDir(dir); err == nil {
			st.Nlink = n.u.MergedNlink(d.FD, name, st)
			d.Release()
		}
	}
	return len(parts), birth, 0
}

// Readlink reads the symlink's target from its layer.
func (n *node) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	top := n.top()
	dir, name := merge.SplitPath(top.Path)
	d, err := n.u.Layers[top.Layer].OpenDir(dir)
	if err != nil {
		return nil, toErrno(err)
	}
	defer d.Release()
	buf := make([]byte, unix.PathMax)
	sz, err := unix.Readlinkat(d.FD, name, buf)
	if err != nil {
		return nil, toErrno(err)
	}
	return buf[:sz], 0
}

// Statfs reports the filesystem of the upper layer, or of the top lower on a read-only mount.
func (n *node) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	var s unix.Statfs_t
	if err := unix.Fstatfs(n.u.Layers[0].FD, &s); err != nil {
		return toErrno(err)
	}
	out.Blocks = s.Blocks
	out.Bfree = s.Bfree
	out.Bavail = s.Bavail
	out.Files = s.Files
	out.Ffree = s.Ffree
	out.Bsize = uint32(s.Bsize)
	out.NameLen = uint32(s.Namelen)
	out.Frsize = uint32(s.Frsize)
	return 0
}

// nodeOpen is the state of a node that is open, removed while open, or has no name.
type nodeOpen struct {
	// keptFd reaches the object when no name does: an O_TMPFILE file that has no name yet
	// (tmpfile.go), or a directory renamed over while the kernel still knows it (rename.go,
	// keepReplacedDir); -1 otherwise. Closed when the kernel forgets the node.
	keptFd int
	// hidden names the work-directory link that keeps the object after its last name went
	// (hide.go); "" otherwise.
	hidden string
	// openFiles counts the open file handles of the node (file.go).
	openFiles int
	// pt is the node's passthrough state (passthrough.go).
	pt ptState
	// written says the page cache may hold data written through it (a WRITE) since the last
	// open for reading, which a read would get without a READ (atime.go, dropWrittenPages).
	written bool
}

// openLocked returns the node's open state, made on first need; n.mu is held.
func (n *node) openLocked() *nodeOpen {
	if n.open == nil {
		n.open = &nodeOpen{keptFd: -1}
	}
	return n.open
}

// keptFdLocked is the node's kept descriptor, -1 if none; n.mu is held.
func (n *node) keptFdLocked() int {
	if n.open == nil {
		return -1
	}
	return n.open.keptFd
}

// hiddenLocked is the node's work-directory name, "" if none; n.mu is held.
func (n *node) hiddenLocked() string {
	if n.open == nil {
		return ""
	}
	return n.open.hidden
}

// openFilesLocked counts the node's open file handles; n.mu is held.
func (n *node) openFilesLocked() int {
	if n.open == nil {
		return 0
	}
	return n.open.openFiles
}
