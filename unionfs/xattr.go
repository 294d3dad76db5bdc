package unionfs

import (
	"context"
	"errors"
	"os"
	"strconv"
	"syscall"

	"github.com/layerfs/layerfs/unionfs/merge"
	"github.com/layerfs/layerfs/unionfs/posixacl"
	"github.com/layerfs/layerfs/unionfs/xattrs"
	"golang.org/x/sys/unix"
)

// xattrOps are the path-based attribute calls for the node's xattrPath: the root's path is a
// descriptor's magic link, every other node's an entry of its parent's.
func (n *node) xattrOps() xattrs.Calls {
	if n.top().Path == "" {
		return xattrs.For("")
	}
	return xattrs.For("entry")
}

// xattrPath names the node's topmost object for the path-based xattr calls (there is no
// getxattrat): the magic link of its parent directory's descriptor, then its name. The caller
// releases the returned directory.
func (n *node) xattrPath() (string, merge.DirFD, error) {
	top := n.top()
	dir, name := merge.SplitPath(top.Path)
	d, err := n.u.Layers[top.Layer].OpenDir(dir)
	if err != nil {
		return "", d, err
	}
	return xattrs.Path(d.FD, name), d, nil
}

// LayerXattr is a read-only attribute every object of the mount answers with the layer that
// serves it ("0 /path/of/upper"); listxattr does not list it, so copy tools leave it alone.
const LayerXattr = "user.layerfs.layer"

// Getxattr reads an attribute of the topmost object; the overlay's private attributes do not
// exist in the merged view.
func (n *node) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	if attr == LayerXattr {
		top := n.top()
		v := []byte(strconv.Itoa(top.Layer) + " " + n.u.Layers[top.Layer].Path)
		if len(dest) == 0 {
			return uint32(len(v)), 0
		}
		if len(dest) < len(v) {
			return uint32(len(v)), syscall.ERANGE
		}
		return uint32(copy(dest, v)), 0
	}
	if n.u.isPrivateXattr(attr) {
		return 0, syscall.ENODATA
	}
	if n.attrs.Load()&attrNoXattrs != 0 {
		return 0, n.u.absentXattr(attr)
	}
	p, d, err := n.xattrPath()
	if err != nil {
		return 0, toErrno(err)
	}
	defer d.Release()
	ops := n.xattrOps()
	sz, err := ops.Get(p, attr, dest)
	if errors.Is(err, unix.ENODATA) {
		// Programs ask every file for a few attributes it rarely has (ls asks for the
		// security label): a file found to have none answers from memory until changed.
		if lsz, lerr := ops.List(p, nil); lerr == nil && lsz == 0 {
			n.setAttrBits(attrNoXattrs, 0)
		}
		return 0, n.u.absentXattr(attr)
	}
	if err != nil {
		return 0, toErrno(err)
	}
	return uint32(sz), 0
}

// selinuxXattr holds an object's SELinux label.
const selinuxXattr = "security.selinux"

// absentXattr is the error for an attribute the object does not have: ENODATA, but for an
// SELinux label on a host without SELinux, EOPNOTSUPP. ls -l asks every name for its label,
// FUSE caches no answer, and each costs a round trip; ls (coreutils) stops asking for a
// filesystem that says it has no labels at all. Labels an object has are still read.
func (u *unionFS) absentXattr(attr string) syscall.Errno {
	if attr == selinuxXattr && !u.selinux {
		return syscall.EOPNOTSUPP
	}
	return syscall.ENODATA
}

// Listxattr lists the attributes of the topmost object without the private ones.
func (n *node) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	p, d, err := n.xattrPath()
	if err != nil {
		return 0, toErrno(err)
	}
	defer d.Release()
	names, err := xattrs.List(p, n.top().Path == "")
	if err != nil {
		return 0, toErrno(err)
	}
	var out []byte
	for _, name := range names {
		if n.u.isPrivateXattr(name) {
			continue
		}
		out = append(out, name...)
		out = append(out, 0)
	}
	if len(dest) == 0 {
		return uint32(len(out)), 0
	}
	if len(out) > len(dest) {
		return uint32(len(out)), syscall.ERANGE
	}
	return uint32(copy(dest, out)), 0
}

// Setxattr sets an attribute on the object, copied up first. The overlay's private attributes
// cannot be set through the mount (EPERM): a user must not forge markers.
func (n *node) Setxattr(ctx context.Context, attr string, data []byte, flags uint32) syscall.Errno {
	if errno := n.mayChange(); errno != 0 {
		return errno
	}
	errno := n.changeXattr(ctx, attr, func(c xattrs.Calls, p string) error {
		return c.Set(p, attr, data, int(flags))
	})
	if errno != 0 {
		return errno
	}
	switch attr {
	case capabilityXattr:
		n.privs.Store(privsSome)
	case posixacl.AccessXattr:
		// The caller is outside the object's group and lacks CAP_FSETID: set-group-id
		// goes, as posix_acl_update_mode makes it. The filesystem does not do it for us:
		// it sees the server, root.
		if e, _ := n.u.extras.of(ctx); e.killSgid {
			return n.dropSetgid(ctx)
		}
	}
	return 0
}

// Removexattr removes an attribute. Removing one the object does not have fails with ENODATA
// without copying it up, as in the kernel.
func (n *node) Removexattr(ctx context.Context, attr string) syscall.Errno {
	if errno := n.mayChange(); errno != 0 {
		return errno
	}
	return n.removexattr(ctx, attr)
}

// removexattr is Removexattr without the flags' refusal, for the capability a write drops
// (dropPrivs), as the kernel's overlayfs drops it from the upper object.
func (n *node) removexattr(ctx context.Context, attr string) syscall.Errno {
	if !n.u.isPrivateXattr(attr) && !n.topLayer().Upper {
		if _, errno := n.Getxattr(ctx, attr, nil); errno != 0 {
			return errno
		}
	}
	return n.changeXattr(ctx, attr, func(c xattrs.Calls, p string) error {
		return c.Remove(p, attr)
	})
}

// changeXattr refuses private attributes, copies the object up and applies change to it.
func (n *node) changeXattr(ctx context.Context, attr string, change func(xattrs.Calls, string) error) syscall.Errno {
	if n.u.isPrivateXattr(attr) || attr == LayerXattr {
		return syscall.EPERM
	}
	defer n.setAttrBits(0, attrNoXattrs)
	if errno := n.copyUp(ctx, true); errno != 0 {
		return errno
	}
	p, d, err := n.xattrPath()
	if err != nil {
		return toErrno(err)
	}
	defer d.Release()
	return toErrno(change(n.xattrOps(), p))
}

// selinuxEnabled reports whether the host runs SELinux: its filesystem is mounted where
// libselinux looks for it.
func selinuxEnabled() bool {
	_, err := os.Stat("/sys/fs/selinux/enforce")
	return err == nil
}
