package unionfs

import (
	"context"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/layerfs/layerfs/unionfs/merge"
	"golang.org/x/sys/unix"
)

var _ fs.NodeSetattrer = (*node)(nil)

// Setattr changes mode, owner, size or times, copying a lower object up first (without its
// data when it is truncated to nothing); what an immutable or append-only object forbids is
// refused first (protect.go).
func (n *node) Setattr(ctx context.Context, f fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if errno := n.maySetattr(in); errno != 0 {
		return errno
	}
	return n.setattr(ctx, f, in, out)
}

// setattr is Setattr without the flags' refusals, for the changes layerfs makes itself: the
// kernel drops privileges on the upper object, which has no such flags (setMode).
func (n *node) setattr(ctx context.Context, f fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	size, sizeOK := in.GetSize()
	mode, modeOK := in.GetMode()
	uid, uidOK := in.GetUID()
	gid, gidOK := in.GetGID()
	uid, gid = n.u.cfg.IDs.diskUID(uid), n.u.cfg.IDs.diskGID(gid)
	atime, atimeOK := in.GetATime()
	mtime, mtimeOK := in.GetMTime()
	onlyTruncate := sizeOK && size == 0 && !modeOK && !uidOK && !gidOK && !atimeOK && !mtimeOK
	if errno := n.copyUp(ctx, !onlyTruncate); errno != 0 {
		return errno
	}
	dir, name := merge.SplitPath(n.path())
	var d merge.DirFD
	if h := n.hiddenName(); h != "" {
		d, name = merge.DirFD{FD: n.u.work.FD}, h // an open file whose last name is gone (hide.go)
	} else {
		var err error
		if d, err = n.u.upper().OpenDir(dir); err != nil {
			return toErrno(err)
		}
	}
	defer d.Release()
	if name == "" {
		name = "."
	}
	if !sizeOK && !modeOK && !uidOK && !gidOK && !atimeOK && !mtimeOK && in.Valid&fuse.FATTR_CTIME == 0 {
		if errno := n.chownNoIDs(ctx, f, d.FD, name); errno != 0 {
			return errno
		}
		return n.Getattr(ctx, f, out)
	}

	killSuidgid := in.Valid&fuse.FATTR_KILL_SUIDGID != 0
	if (uidOK || gidOK) && killSuidgid && !modeOK && callerNotRoot(ctx) {
		// A chown clears set-group-id where the caller is not in the object's group, even
		// when the group may not execute it; we, root, would keep it (killpriv.go).
		var attr fuse.AttrOut
		if n.Getattr(ctx, f, &attr) == 0 && attr.Mode&unix.S_ISGID != 0 && !callerInGroup(ctx, attr.Gid) {
			mode, modeOK = attr.Mode&07777&^(unix.S_ISGID|unix.S_ISUID), true
		}
	}
	if modeOK || uidOK || gidOK {
		if errno := n.u.setOwnerMode(d.FD, name, modeOK, mode, uidOK, uid, gidOK, gid); errno != 0 {
			return errno
		}
	}
	if modeOK && mode&(unix.S_ISUID|unix.S_ISGID) != 0 {
		n.privs.Store(privsSome)
	}
	if sizeOK && n.StableAttr().Mode == unix.S_IFREG {
		// A truncate drops the capability, and by a caller without CAP_FSETID the set-id
		// bits (killpriv.go).
		if err := n.beforeWrite(ctx, f, killSuidgid); err != 0 {
			return err
		}
	}
	// Truncate before setting times, so an explicit mtime is not overwritten.
	if sizeOK {
		if err := n.truncate(f, d.FD, name, int64(size)); err != nil {
			return toErrno(err)
		}
	}
	if atimeOK || mtimeOK {
		ts := []unix.Timespec{{Nsec: unix.UTIME_OMIT}, {Nsec: unix.UTIME_OMIT}}
		if atimeOK {
			ts[0] = unix.NsecToTimespec(atime.UnixNano())
			if in.Valid&fuse.FATTR_ATIME_NOW != 0 {
				ts[0] = unix.Timespec{Nsec: unix.UTIME_NOW}
			}
		}
		if mtimeOK {
			ts[1] = unix.NsecToTimespec(mtime.UnixNano())
			if in.Valid&fuse.FATTR_MTIME_NOW != 0 {
				ts[1] = unix.Timespec{Nsec: unix.UTIME_NOW}
			}
		}
		if err := unix.UtimesNanoAt(d.FD, name, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return toErrno(err)
		}
	}
	return n.Getattr(ctx, f, out)
}

// chownNoIDs answers a change of attributes that names none. FUSE sends one for chown(2)
// with -1 for both ids, and when the kernel drops privileges before a write, a truncate or an
// fallocate (removing a capability itself, by REMOVEXATTR, first). The kernel's overlayfs
// moves the ctime on chown, and for a non-directory a caller without CAP_FSETID loses the
// set-user-id bit, and the set-group-id bit where the group may execute or the caller is not
// in the group. The request does not say which case it is: chown(-1, -1) by root also drops
// a set-user-id bit on the kernel, which a write by root must not, so root keeps them here
// (README, "What differs"); and chown(-1, -1) of a set-id file by another user than its
// owner fails on the kernel (the bits' change needs the owner), where a write by such a user
// must go on: such a request changes nothing here and succeeds.
func (n *node) chownNoIDs(ctx context.Context, f fs.FileHandle, dirfd int, name string) syscall.Errno {
	var attr fuse.AttrOut
	if errno := n.Getattr(ctx, f, &attr); errno != 0 {
		return errno
	}
	mode := attr.Mode & 0o7777
	kept := mode
	if n.StableAttr().Mode != unix.S_IFDIR && callerNotRoot(ctx) {
		kept = withoutSetID(ctx, mode, attr.Gid)
		if kept != mode && !callerOwns(ctx, attr.Uid) {
			// Not the owner's: a chown(-1, -1) that fails with EPERM on the kernel and
			// changes nothing, or a write that must not fail (Write drops the bits).
			return 0
		}
	}
	if kept != mode {
		// Through setOwnerMode, so that a mode kept in an override attribute changes.
		return n.u.setOwnerMode(dirfd, name, true, kept, false, 0, false, 0)
	}
	// Move the ctime and nothing else: a chmod to the layer object's own mode (a chown of
	// it, as root, would drop its set-id bits); a symbolic link has no mode to set.
	var st unix.Stat_t
	if err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return toErrno(err)
	}
	if st.Mode&unix.S_IFMT == unix.S_IFLNK {
		return toErrno(unix.Fchownat(dirfd, name, -1, -1, unix.AT_SYMLINK_NOFOLLOW))
	}
	return toErrno(unix.Fchmodat(dirfd, name, st.Mode&0o7777, 0))
}

// truncate sets the size through the open file when there is one, else by opening it.
func (n *node) truncate(f fs.FileHandle, dirfd int, name string, size int64) error {
	if fh, ok := fileOf(f); ok {
		if err := unix.Ftruncate(fh.current(), size); err == nil {
			return nil
		}
	}
	fd, err := unix.Openat(dirfd, name, unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return unix.Ftruncate(fd, size)
}
