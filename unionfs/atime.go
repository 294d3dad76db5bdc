package unionfs

import (
	"fmt"
	"slices"
	"time"

	"golang.org/x/sys/unix"
)

// Access times follow the kernel's overlayfs. It opens every layer file with O_NOATIME and
// updates times itself, on the upper object only, by the overlay mount's own policy: reading
// through the mount never moves a lower object's atime, and moves an upper one's as the mount
// option says (relatime by default, noatime, strictatime; nodiratime for directories). Here
// the kernel applies the option to the FUSE inode (the flags are handed to mount(2)), and
// layers are opened so that our reads move only what the kernel's would: lower objects always
// with O_NOATIME, upper ones with O_NOATIME under noatime (and under nodiratime for
// directories), else the upper filesystem's relatime decides, as it does for overlayfs.

// setAtimePolicy records on each layer whether reads through the mount leave its atimes alone.
func (u *unionFS) setAtimePolicy() {
	// A read-only mount moves no atime at all.
	noatime := slices.Contains(u.cfg.MountOptions, "noatime") || slices.Contains(u.cfg.MountOptions, "ro")
	nodiratime := noatime || slices.Contains(u.cfg.MountOptions, "nodiratime")
	for _, l := range u.Layers {
		l.Noatime, l.Nodiratime = !l.Upper || noatime, !l.Upper || nodiratime
	}
}

// dropWrittenPages keeps the first read of a file written through the page cache exact in its
// access time. Such writes (-o nopassthrough, unprivileged, a set-id file's writer: other
// writes go by passthrough, beside the cache) leave whole pages in the kernel's cache, and a
// read they answer never reaches layerfs, so never moves the upper file's atime, where
// overlayfs's read would (under relatime, the first read after a change). So at the first open
// for reading after such a write, if a read would now move the atime, the node's cached pages
// are dropped: the read comes as a READ, through fd, which moves it as the kernel would.
func (n *node) dropWrittenPages(fd int, write bool) {
	if write {
		return
	}
	n.mu.Lock()
	written := n.open != nil && n.open.written
	if written {
		n.open.written = false
	}
	n.mu.Unlock()
	if written && readMovesAtime(fd) {
		n.NotifyContent(0, 0)
	}
}

// noteWritten records a write that came through the page cache (a WRITE): marked before the
// caller's write(2) returns, so before any open that follows it.
func (n *node) noteWritten() {
	n.mu.Lock()
	n.openLocked().written = true
	n.mu.Unlock()
}

// readMovesAtime reports whether a read through fd would move its file's atime: not with
// O_NOATIME or on a noatime mount; under relatime when the atime is not after the mtime and
// the ctime, or is a day old; always under strictatime.
func readMovesAtime(fd int) bool {
	if fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0); err != nil || fl&unix.O_NOATIME != 0 {
		return false
	}
	var sfs unix.Statfs_t
	var st unix.Stat_t
	if unix.Fstatfs(fd, &sfs) != nil || unix.Fstat(fd, &st) != nil || sfs.Flags&unix.ST_NOATIME != 0 {
		return false
	}
	if sfs.Flags&unix.ST_RELATIME == 0 {
		return true
	}
	notAfter := func(t unix.Timespec) bool { return t.Nano() >= st.Atim.Nano() }
	return notAfter(st.Mtim) || notAfter(st.Ctim) || time.Since(time.Unix(st.Atim.Unix())) >= 24*time.Hour
}

// passthroughNoatime keeps passthrough reads from moving the atimes that reads through the
// mount must not move. The kernel reads a passthrough file through a backing file it opens
// itself on the path of the one layerfs registered, with the reader's open flags: O_NOATIME on
// our descriptor does not carry over, and a read by passthrough moved a lower file's atime
// under the lower filesystem's relatime (overlayfs never does), and an upper file's under
// -o noatime. So a lower layer is reached through a detached clone of its mount set noatime
// (open_tree, mount_setattr; root only, as passthrough is), on which the kernel's backing
// files move nothing. The upper layer keeps its own mount, since renames between it and the
// work directory need one; under noatime only the backing files of its objects are opened on
// such a clone, by file handle (upperBacking).
func (u *unionFS) passthroughNoatime() error {
	for _, l := range u.Layers {
		if !l.Noatime {
			continue
		}
		fd, err := noatimeClone(l.FD)
		if err != nil {
			return fmt.Errorf("layer %s: %w", l.Path, err)
		}
		if !l.Upper {
			unix.Close(l.FD)
			l.FD = fd
			continue
		}
		// open_by_handle_at takes no O_PATH descriptor for the mount: open the clone's root.
		root, err := unix.Openat(fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		unix.Close(fd)
		if err != nil {
			return fmt.Errorf("layer %s: open its noatime clone: %w", l.Path, err)
		}
		if _, _, err := unix.NameToHandleAt(root, "", unix.AT_EMPTY_PATH); err != nil {
			unix.Close(root)
			return fmt.Errorf("layer %s: no file handles for noatime backing files: %w", l.Path, err)
		}
		u.upperNoatimeFd = root
	}
	return nil
}

// noatimeClone returns a detached clone of the mount (and the mounts below it) at the
// directory fd, set noatime.
func noatimeClone(dir int) (int, error) {
	fd, err := unix.OpenTree(dir, "", unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_EMPTY_PATH|unix.AT_RECURSIVE)
	if err != nil {
		return -1, fmt.Errorf("clone its mount: %w", err)
	}
	attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_NOATIME, Attr_clr: unix.MOUNT_ATTR__ATIME}
	if err := unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE, &attr); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("make its clone noatime: %w", err)
	}
	return fd, nil
}

// mountFlags are the mount(2) flags for options given as words (-o noatime,nosuid): the
// kernel's FUSE takes them as flags, not in its option string.
var mountFlags = map[string]struct{ set, clear uintptr }{
	"ro":          {unix.MS_RDONLY, 0},
	"rw":          {0, unix.MS_RDONLY},
	"nosuid":      {unix.MS_NOSUID, 0},
	"suid":        {0, unix.MS_NOSUID},
	"nodev":       {unix.MS_NODEV, 0},
	"dev":         {0, unix.MS_NODEV},
	"noexec":      {unix.MS_NOEXEC, 0},
	"exec":        {0, unix.MS_NOEXEC},
	"sync":        {unix.MS_SYNCHRONOUS, 0},
	"async":       {0, unix.MS_SYNCHRONOUS},
	"dirsync":     {unix.MS_DIRSYNC, 0},
	"noatime":     {unix.MS_NOATIME, unix.MS_RELATIME | unix.MS_STRICTATIME},
	"relatime":    {unix.MS_RELATIME, unix.MS_NOATIME | unix.MS_STRICTATIME},
	"strictatime": {unix.MS_STRICTATIME, unix.MS_NOATIME | unix.MS_RELATIME},
	"nodiratime":  {unix.MS_NODIRATIME, 0},
}

// splitMountFlags turns the word options among opts into mount(2) flags on top of flags and
// returns the rest, which go into the option string.
func splitMountFlags(opts []string, flags uintptr) (uintptr, []string) {
	var rest []string
	for _, o := range opts {
		f, ok := mountFlags[o]
		if !ok {
			rest = append(rest, o)
			continue
		}
		flags = flags&^f.clear | f.set
	}
	return flags, rest
}

// fusermountOptions checks the word options for an unprivileged mount, which fusermount3
// makes: it takes nosuid, nodev, noexec, sync, async, dirsync, ro, rw and noatime, and relatime
// is what every mount gets anyway; for the rest it would fail with "unknown option".
func fusermountOptions(opts []string) ([]string, error) {
	var out []string
	for _, o := range opts {
		switch o {
		case "relatime":
			continue
		case "strictatime", "nodiratime":
			return nil, configErr("option %s: an unprivileged mount is made by fusermount3, which does not take it (as root, or in a user namespace, layerfs mounts directly and does)", o)
		}
		out = append(out, o)
	}
	return out, nil
}
