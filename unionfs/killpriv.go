package unionfs

import (
	"bufio"
	"context"
	"os"
	"strconv"
	"strings"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// Dropping privileges on change (FUSE_HANDLE_KILLPRIV_V2). A write, a truncate or a chown of
// a file drops its capability, a change by a caller without CAP_FSETID also its set-user-id
// bit, and its set-group-id bit where the group may execute it or the caller is not in its
// group (the kernel's setattr_should_drop_sgid). Without KILLPRIV_V2 the kernel asks for every
// write whether the file has a capability (a GETXATTR round trip per write(2)) and clears the
// set-group-id bit only where the group may execute. With it the kernel tells us which
// callers lack CAP_FSETID (FUSE_WRITE_KILL_SUIDGID on WRITE, FATTR_KILL_SUIDGID on SETATTR,
// which is also how an O_TRUNC arrives) and leaves the dropping to us, which we do with
// the kernel's rule. Where the kernel drops privileges itself before a change (its
// file_remove_privs: before a write, through passthrough too, or an fallocate) it sends a
// SETATTR naming no attribute, answered by chownNoIDs (setattr.go). Writes we never see
// (passthrough) drop nothing else, so a file that carries a set-id bit or a capability is
// never opened for writing by passthrough (passthrough.go), and writes to it come through
// Write.

// capabilityXattr holds a file capability.
const capabilityXattr = "security.capability"

// The values of node.privs: what a write must drop is not known yet (a node looked up, not
// opened for writing through us), is nothing, or may be something.
const (
	privsUnknown = iota
	privsNone
	privsSome
)

// privsOf reports whether the object open as fd, of mode, carries something a change must
// drop: a set-id bit or a capability.
func privsOf(fd int, mode uint32) bool {
	if mode&unix.S_IFMT != unix.S_IFREG {
		return false
	}
	if mode&(unix.S_ISUID|unix.S_ISGID) != 0 {
		return true
	}
	_, err := unix.Fgetxattr(fd, capabilityXattr, nil)
	return err == nil
}

// dropPrivs drops what a change of the node's (upper, regular) object by the caller of ctx
// must drop: its capability always; with unprivileged set (the caller lacks CAP_FSETID) its
// set-user-id bit, and its set-group-id bit where the group may execute it or the caller is
// not in its group. It reports whether the object still carries anything.
func (n *node) dropPrivs(ctx context.Context, unprivileged bool) (bool, syscall.Errno) {
	var attr fuse.AttrOut
	if errno := n.Getattr(ctx, nil, &attr); errno != 0 {
		return true, errno
	}
	mode := attr.Mode & 07777
	if unprivileged {
		mode = withoutSetID(ctx, mode, attr.Gid)
	}
	if mode != attr.Mode&07777 {
		in := fuse.SetAttrIn{SetAttrInCommon: fuse.SetAttrInCommon{Valid: fuse.FATTR_MODE, Mode: mode}}
		if errno := n.setMode(ctx, &in); errno != 0 {
			return true, errno
		}
		// The kernel learns of the change from no reply here (a WRITE's or FALLOCATE's
		// does not carry attributes, and what they invalidate leaves the mode cached):
		// without this, its inode would keep the set-id bits, which execve honours, until
		// the attributes time out. Attributes only, which takes no lock the kernel holds
		// while it waits for the request being served.
		n.NotifyContent(-1, 0)
	}
	if errno := n.removexattr(ctx, capabilityXattr); errno != 0 && errno != syscall.ENODATA {
		return true, errno
	}
	return mode&(unix.S_ISUID|unix.S_ISGID) != 0, 0
}

// dropSetgid clears the object's set-group-id bit, through setattr like every mode change.
func (n *node) dropSetgid(ctx context.Context) syscall.Errno {
	var attr fuse.AttrOut
	if errno := n.Getattr(ctx, nil, &attr); errno != 0 || attr.Mode&unix.S_ISGID == 0 {
		return errno
	}
	in := fuse.SetAttrIn{SetAttrInCommon: fuse.SetAttrInCommon{Valid: fuse.FATTR_MODE, Mode: attr.Mode & 07777 &^ unix.S_ISGID}}
	return n.setMode(ctx, &in)
}

// setMode changes the mode as Setattr does, without Setattr's reply, and without its refusals
// for immutable and append-only objects: a privilege drop goes through (setattr).
func (n *node) setMode(ctx context.Context, in *fuse.SetAttrIn) syscall.Errno {
	var out fuse.AttrOut
	return n.setattr(ctx, nil, in, &out)
}

// beforeWrite drops privileges ahead of a write, truncate or allocation by the caller of ctx
// (through handle fh, if any), where the node may carry any. unprivileged says the kernel marked the caller as lacking
// CAP_FSETID; where it cannot (FALLOCATE, COPY_FILE_RANGE carry no mark), a caller other than
// root is taken to lack it.
func (n *node) beforeWrite(ctx context.Context, fh fs.FileHandle, unprivileged bool) syscall.Errno {
	switch n.privs.Load() {
	case privsNone:
		return 0
	case privsUnknown:
		// Written without an open through us (-o noopen): look at the object once.
		errno := n.withFd(fh, unix.O_RDONLY, func(fd int) syscall.Errno {
			var st unix.Stat_t
			if err := unix.Fstat(fd, &st); err != nil {
				return toErrno(err)
			}
			n.notePrivs(fd, st.Mode)
			return 0
		})
		if errno != 0 {
			return errno
		}
		if n.privs.Load() == privsNone {
			return 0
		}
	}
	still, errno := n.dropPrivs(ctx, unprivileged)
	if errno == 0 && !still {
		n.privs.Store(privsNone)
	}
	return errno
}

// writerUnprivileged reports whether the request ctx serves is a write the kernel marked as
// coming from a caller without CAP_FSETID (FUSE_WRITE_KILL_SUIDGID, reqextras.go).
func (n *node) writerUnprivileged(ctx context.Context) bool {
	e, ok := n.u.extras.of(ctx)
	return ok && e.killSuidgid
}

// callerNotRoot is the stand-in for "lacks CAP_FSETID" where the kernel says nothing.
func callerNotRoot(ctx context.Context) bool {
	c, ok := fuse.FromContext(ctx)
	return ok && c.Uid != 0
}

// withoutSetID is mode (of an object of group gid) as a change by the unprivileged caller of
// ctx leaves it: without the set-user-id bit, and without the set-group-id bit where the
// group may execute or the caller is not in the group (the kernel's setattr_should_drop_sgid).
func withoutSetID(ctx context.Context, mode, gid uint32) uint32 {
	mode &^= unix.S_ISUID
	if mode&unix.S_ISGID != 0 && (mode&unix.S_IXGRP != 0 || !callerInGroup(ctx, gid)) {
		mode &^= unix.S_ISGID
	}
	return mode
}

// callerOwns reports whether the caller of ctx is uid, the owner of an object as shown.
func callerOwns(ctx context.Context, uid uint32) bool {
	c, ok := fuse.FromContext(ctx)
	return ok && c.Uid == uid
}

// callerInGroup reports whether the caller of ctx is in group gid: its filesystem gid or one
// of its supplementary groups, which only its /proc entry tells. A caller gone meanwhile
// counts as outside the group, so the bit is dropped rather than kept.
func callerInGroup(ctx context.Context, gid uint32) bool {
	c, ok := fuse.FromContext(ctx)
	if !ok {
		return false
	}
	if c.Gid == gid {
		return true
	}
	f, err := os.Open("/proc/" + strconv.Itoa(int(c.Pid)) + "/status")
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		groups, ok := strings.CutPrefix(sc.Text(), "Groups:")
		if !ok {
			continue
		}
		for _, g := range strings.Fields(groups) {
			if v, err := strconv.ParseUint(g, 10, 32); err == nil && uint32(v) == gid {
				return true
			}
		}
		return false
	}
	return false
}

// notePrivsNew records what a file just made carries that a change must drop: set-id bits
// only if created with them, never a capability.
func (n *node) notePrivsNew(mode uint32) {
	if mode&(unix.S_ISUID|unix.S_ISGID) != 0 {
		n.privs.Store(privsSome)
	} else {
		n.privs.Store(privsNone)
	}
}

// notePrivs records what the node's object, open as fd, of mode, carries that a change must
// drop.
func (n *node) notePrivs(fd int, mode uint32) {
	if privsOf(fd, mode) {
		n.privs.Store(privsSome)
	} else {
		n.privs.Store(privsNone)
	}
}
