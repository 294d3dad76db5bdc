package unionfs

import (
	"context"
	"errors"
	"os"
	"sync"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/layerfs/layerfs/unionfs/merge"
	"github.com/layerfs/layerfs/unionfs/posixacl"
	"github.com/layerfs/layerfs/unionfs/workdir"
	"github.com/layerfs/layerfs/unionfs/xattrs"
	"github.com/layerfs/layerfs/whiteout"
	"golang.org/x/sys/unix"
)

var (
	_ fs.NodeCreater   = (*node)(nil)
	_ fs.NodeMkdirer   = (*node)(nil)
	_ fs.NodeMknoder   = (*node)(nil)
	_ fs.NodeSymlinker = (*node)(nil)
	_ fs.NodeLinker    = (*node)(nil)
)

// slot is the place in the upper where a new entry of a merged directory goes.
type slot struct {
	dir   merge.DirFD // the directory, copied up
	dirSt unix.Stat_t // its stat before the change
	name  string
	// whiteout is set when a whiteout sits at name (the name was deleted from a lower
	// layer): the new object replaces it, and a new directory there must be opaque.
	whiteout bool
	aufs     bool // the whiteout is a ".wh.<name>" file
	// access and def are the ACLs an object built in the work directory for this slot must
	// be given, as creating it in its directory would have (newMode).
	access, def []byte
	// link is set when the entry is a new name of an existing object (link, or an O_TMPFILE
	// file's first name): its owner, group and ACLs are the object's and stay.
	link bool
}

// checkName refuses names the merged view cannot hold.
func checkName(name string) syscall.Errno {
	if len(name) > 255 {
		return syscall.ENAMETOOLONG
	}
	if whiteout.IsMarkerName(name) {
		// ".wh.*" names are markers in layers; an object of that name would act as one.
		return syscall.EINVAL
	}
	return 0
}

// prepareSlot copies the directory up and finds out what sits at name in its upper part.
// The caller releases s.dir.
func (n *node) prepareSlot(ctx context.Context, name string) (s slot, errno syscall.Errno) {
	if errno := checkName(name); errno != 0 {
		return s, errno
	}
	if !n.u.hasUpper {
		return s, syscall.EROFS
	}
	if errno := n.mayAdd(); errno != 0 {
		return s, errno
	}
	if errno := n.copyUp(ctx, true); errno != 0 {
		return s, errno
	}
	d, err := n.u.upper().OpenDir(n.path())
	if err != nil {
		return s, toErrno(err)
	}
	s = slot{dir: d, name: name}
	if err := unix.Fstat(d.FD, &s.dirSt); err != nil {
		d.Release()
		return s, toErrno(err)
	}
	e, err := whiteout.Classify(d.FD, name, whiteout.LookupRule(true, true))
	switch {
	case err != nil:
		d.Release()
		return s, toErrno(err)
	case e.Kind == whiteout.Object:
		d.Release()
		return s, syscall.EEXIST
	case e.Kind == whiteout.Whiteout:
		s.whiteout, s.aufs = true, e.Format == whiteout.Aufs
	}
	return s, 0
}

// newMode returns the mode a new object of the caller gets in the slot, as the kernel's
// posix_acl_create decides it: where the directory has a default ACL, the mode masked by it
// and never by the umask; elsewhere the mode less the caller's umask, if the kernel left that
// to us (FUSE_DONT_MASK). An object made in place gets its ACLs from the filesystem; one
// built in the work directory to replace a whiteout gets them from s.access and s.def, as the
// kernel's create-over-whiteout sets them.
func (n *node) newMode(ctx context.Context, s *slot, mode uint32, isDir bool) (uint32, syscall.Errno) {
	var def []byte
	if n.attrs.Load()&attrNoXattrs == 0 {
		// A directory known to have no extended attributes (made by Mkdir, or found so by a
		// getxattr: xattr.go) has no default ACL either.
		var err error
		if def, err = defaultACL(s.dir.FD); err != nil {
			return 0, toErrno(err)
		}
	}
	if def == nil {
		if umask, ok := n.u.extras.umask(ctx); ok {
			mode &^= umask
		}
		return mode, 0
	}
	if !s.whiteout {
		return mode, 0
	}
	m, access, err := posixacl.Inherit(def, mode)
	if err != nil {
		return 0, syscall.EIO
	}
	s.access = access
	if isDir {
		s.def = def
	}
	return m, 0
}

// defaultACL reads the default ACL of the directory open as fd; nil if it has none.
func defaultACL(fd int) ([]byte, error) {
	acl, err := xattrs.Get(xattrs.Path(fd, ""), posixacl.DefaultXattr, true)
	if errors.Is(err, unix.ENODATA) || errors.Is(err, unix.EOPNOTSUPP) {
		return nil, nil
	}
	return acl, err
}

// setInheritedACLs gives entry name of dirfd the ACLs newMode chose for the slot.
func (s *slot) setInheritedACLs(dirfd int, name string) error {
	if s.access != nil {
		if err := unix.Lsetxattr(xattrs.Path(dirfd, name), posixacl.AccessXattr, s.access, 0); err != nil {
			return err
		}
	}
	if s.def != nil {
		return unix.Lsetxattr(xattrs.Path(dirfd, name), posixacl.DefaultXattr, s.def, 0)
	}
	return nil
}

// place moves an object built in the work directory as tmp to the slot, replacing the
// whiteout there if any. Directories cannot replace a non-directory with rename, so they are
// exchanged with it and the whiteout removed after.
func (n *node) place(s *slot, tmp string, isDir bool) error {
	w := n.u.work.FD
	switch {
	case s.whiteout && !s.aufs && isDir:
		if err := unix.Renameat2(w, tmp, s.dir.FD, s.name, unix.RENAME_EXCHANGE); err != nil {
			return err
		}
		return unix.Unlinkat(w, tmp, 0)
	case s.whiteout && !s.aufs:
		return unix.Renameat(w, tmp, s.dir.FD, s.name)
	default:
		if err := unix.Renameat2(w, tmp, s.dir.FD, s.name, unix.RENAME_NOREPLACE); err != nil {
			return err
		}
		if s.aufs {
			return unix.Unlinkat(s.dir.FD, whiteout.Prefix+s.name, 0)
		}
		return nil
	}
}

// owner returns the uid and gid (as stored, idmap.go) a new object of the caller gets, -1 where what the kernel
// gives it already is right (a set-group-id directory hands down its group).
func (u *unionFS) owner(ctx context.Context, dirSt *unix.Stat_t) (int, int) {
	euid, egid := serverIDs()
	uid, gid := euid, egid
	if c, ok := fuse.FromContext(ctx); ok {
		uid, gid = int(u.cfg.IDs.diskUID(c.Uid)), int(u.cfg.IDs.diskGID(c.Gid))
	}
	if dirSt.Mode&unix.S_ISGID != 0 {
		gid = -1
	}
	if uid == euid {
		uid = -1
	}
	if gid == egid {
		gid = -1
	}
	return uid, gid
}

// serverIDs is the server's effective uid and gid, which own what it creates; they do not
// change while it runs, and each create would ask for them twice.
var serverIDs = sync.OnceValues(func() (int, int) { return os.Geteuid(), os.Getegid() })

// chownNew gives entry name of dirfd to the caller.
func (u *unionFS) chownNew(ctx context.Context, dirfd int, name string, dirSt *unix.Stat_t) error {
	uid, gid := u.owner(ctx, dirSt)
	if uid == -1 && gid == -1 {
		return nil
	}
	return unix.Fchownat(dirfd, name, uid, gid, unix.AT_SYMLINK_NOFOLLOW)
}

// inheritSetgid does for an object built in the work directory what creating it in its
// set-group-id directory would have done: it takes the directory's group, and a directory
// also takes the set-group-id bit.
func inheritSetgid(dirfd int, name string, dirSt *unix.Stat_t) error {
	if dirSt.Mode&unix.S_ISGID == 0 {
		return nil
	}
	if err := unix.Fchownat(dirfd, name, -1, int(dirSt.Gid), unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return err
	}
	var st unix.Stat_t
	if err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return err
	}
	if isDirStat(&st) {
		return unix.Fchmodat(dirfd, name, st.Mode&07777|unix.S_ISGID, 0)
	}
	return nil
}

// makeObject creates a new object in the slot with mk, which creates entry name in dirfd.
// Where a whiteout must be replaced, the object is built in the work directory and moved in,
// so the name never shows the lower object or nothing; otherwise it is made in place.
func (n *node) makeObject(ctx context.Context, s *slot, isDir bool, mk func(dirfd int, name string) error) syscall.Errno {
	if !s.whiteout {
		if err := mk(s.dir.FD, s.name); err != nil {
			return n.u.failed("create", merge.JoinPath(n.path(), s.name), err)
		}
		if s.link {
			return 0
		}
		if err := n.u.chownNew(ctx, s.dir.FD, s.name, &s.dirSt); err != nil {
			unlinkAny(s.dir.FD, s.name)
			return toErrno(err)
		}
		return 0
	}
	tmp := workdir.TempName()
	w := n.u.work.FD
	err := mk(w, tmp)
	if err == nil && !s.link {
		err = n.u.chownNew(ctx, w, tmp, &s.dirSt)
		if err == nil {
			err = inheritSetgid(w, tmp, &s.dirSt)
		}
		if err == nil {
			err = s.setInheritedACLs(w, tmp)
		}
	}
	if err == nil && isDir {
		// The name hid a lower object: the new directory must not merge with it.
		if err = whiteout.SetOpaque(w, tmp, n.u.xattrPrefix()); err == nil {
			n.u.trace(Event{Kind: "opaque", Path: merge.JoinPath(n.path(), s.name), Layer: -1})
		}
	}
	if err == nil {
		err = n.place(s, tmp, isDir)
	}
	if err != nil {
		unlinkAny(w, tmp)
		return n.u.failed("create", merge.JoinPath(n.path(), s.name), err)
	}
	return 0
}

func unlinkAny(dirfd int, name string) {
	if unix.Unlinkat(dirfd, name, 0) != nil {
		unix.Unlinkat(dirfd, name, unix.AT_REMOVEDIR)
	}
}

// newEntry looks up what was just made at s and makes its node. What was just made, or
// linked (which an immutable or append-only object refuses), has no overlay.protattr: its
// flags are known at once (protect.go). Whether it has extended attributes at all is asked
// once here: where nothing gave it one (an inherited ACL, a security label), the
// security.capability the kernel asks at a new file's first write, and a new directory's
// default ACL at each create in it (newMode), are answered from memory (xattr.go).
func (n *node) newEntry(ctx context.Context, s *slot, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	var st unix.Stat_t
	attrs, err := whiteout.Lstat(s.dir.FD, s.name, &st)
	if err != nil {
		return nil, toErrno(err)
	}
	merged := merge.JoinPath(n.path(), s.name)
	res := merge.Resolution{Parts: []merge.Part{{Layer: 0, Path: merged}}, St: st, Ino: n.u.InoOf(n.u.upper(), st.Ino), Attrs: attrs}
	if sz, err := unix.Llistxattr(xattrs.Path(s.dir.FD, s.name), nil); err == nil {
		res.Xattrs = merge.XattrsListed
		if sz == 0 {
			res.Xattrs |= merge.XattrsNone
		}
	}
	ch, errno := n.newChild(ctx, &res, merged, out)
	if errno == 0 {
		if cn, ok := ch.Operations().(*node); ok {
			cn.setProtFlags(statxBits.flags(attrs))
		}
	}
	return ch, errno
}

// Mkdir makes a directory in the upper; over a whiteout it is opaque.
func (n *node) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	s, errno := n.prepareSlot(ctx, name)
	if errno != 0 {
		return nil, errno
	}
	defer s.dir.Release()
	if mode, errno = n.newMode(ctx, &s, mode, true); errno != 0 {
		return nil, errno
	}
	errno = n.makeObject(ctx, &s, true, func(dirfd int, name string) error {
		return unix.Mkdirat(dirfd, name, mode)
	})
	if errno != 0 {
		return nil, errno
	}
	return n.newEntry(ctx, &s, out)
}

// Mknod makes a fifo, socket or device. A character device 0/0 would be a whiteout, which
// the kernel refuses too.
func (n *node) Mknod(ctx context.Context, name string, mode uint32, dev uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if mode&unix.S_IFMT == unix.S_IFCHR && dev == 0 {
		return nil, syscall.EPERM
	}
	s, errno := n.prepareSlot(ctx, name)
	if errno != 0 {
		return nil, errno
	}
	defer s.dir.Release()
	if mode, errno = n.newMode(ctx, &s, mode, false); errno != 0 {
		return nil, errno
	}
	errno = n.makeObject(ctx, &s, false, func(dirfd int, name string) error {
		return unix.Mknodat(dirfd, name, mode, int(dev))
	})
	if errno != 0 {
		return nil, errno
	}
	return n.newEntry(ctx, &s, out)
}

// Symlink makes a symbolic link in the upper.
func (n *node) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	s, errno := n.prepareSlot(ctx, name)
	if errno != 0 {
		return nil, errno
	}
	defer s.dir.Release()
	errno = n.makeObject(ctx, &s, false, func(dirfd int, name string) error {
		return unix.Symlinkat(target, dirfd, name)
	})
	if errno != 0 {
		return nil, errno
	}
	return n.newEntry(ctx, &s, out)
}

// Create makes and opens a regular file in the upper.
func (n *node) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	s, errno := n.prepareSlot(ctx, name)
	if errno != 0 {
		return nil, nil, 0, errno
	}
	defer s.dir.Release()
	if mode, errno = n.newMode(ctx, &s, mode, false); errno != 0 {
		return nil, nil, 0, errno
	}
	fd := -1
	fileFlags := int(flags &^ openFlagsMask)
	if n.u.pt.enabled() {
		// The file will be the node's passthrough backing file, which every later open
		// shares: open it for reading and writing now rather than again (PassthroughFd).
		fileFlags = fileFlags&^unix.O_ACCMODE | unix.O_RDWR
	}
	openFlags := fileFlags | unix.O_CREAT | unix.O_EXCL | unix.O_CLOEXEC | unix.O_NOFOLLOW
	errno = n.makeObject(ctx, &s, false, func(dirfd int, name string) error {
		var err error
		fd, err = unix.Openat(dirfd, name, openFlags, mode)
		return err
	})
	if errno != 0 {
		if fd >= 0 {
			unix.Close(fd)
		}
		return nil, nil, 0, errno
	}
	ch, errno := n.newEntry(ctx, &s, out)
	if errno != 0 {
		unix.Close(fd)
		return nil, nil, 0, errno
	}
	cn := ch.Operations().(*node)
	cn.notePrivsNew(out.Attr.Mode) // created set-id: a write by its unprivileged creator drops the bits
	fh, oflags, errno := cn.handle(opened{fd: fd, upper: true}, fileFlags, true, flags&unix.O_ACCMODE == unix.O_RDWR)
	if errno == 0 && cn.volatileAttrs() {
		out.SetAttrTimeout(volatileTimeout) // the kernel knows nothing of it yet to drop
	}
	return ch, fh, oflags, errno
}

// Link makes another name for an existing object; a lower object is copied up first.
func (n *node) Link(ctx context.Context, target fs.InodeEmbedder, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	t, ok := target.(*node)
	if !ok {
		return nil, syscall.EXDEV
	}
	if errno := checkName(name); errno != 0 {
		return nil, errno
	}
	if n.u.hasUpper {
		// vfs_link's order: the directory first, then the object.
		if errno := n.mayAdd(); errno != 0 {
			return nil, errno
		}
		if errno := t.mayChange(); errno != 0 {
			return nil, errno
		}
	}
	if errno := t.copyUp(ctx, true); errno != 0 {
		return nil, errno
	}
	s, errno := n.prepareSlot(ctx, name)
	if errno != 0 {
		return nil, errno
	}
	defer s.dir.Release()
	s.link = true
	if p, ok := t.tmpPath(); ok {
		// An O_TMPFILE file gets its first name.
		errno = n.makeObject(ctx, &s, false, func(dirfd int, name string) error {
			return unix.Linkat(unix.AT_FDCWD, p, dirfd, name, unix.AT_SYMLINK_FOLLOW)
		})
		if errno != 0 {
			return nil, errno
		}
		t.named()
	} else {
		tdir, tname := merge.SplitPath(t.path())
		td, err := n.u.upper().OpenDir(tdir)
		if err != nil {
			return nil, toErrno(err)
		}
		defer td.Release()
		errno = n.makeObject(ctx, &s, false, func(dirfd int, name string) error {
			return unix.Linkat(td.FD, tname, dirfd, name, 0)
		})
		if errno != 0 {
			return nil, errno
		}
	}
	var st unix.Stat_t
	if err := unix.Fstatat(s.dir.FD, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return nil, toErrno(err)
	}
	n.u.fillAttr(&out.Attr, &st, t.StableAttr().Ino, 0)
	if t.uncachedAttrs() {
		out.SetAttrTimeout(volatileTimeout) // a copy-up made a new object (statx.go)
	}
	return t.EmbeddedInode(), 0
}
