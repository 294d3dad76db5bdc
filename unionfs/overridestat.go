package unionfs

import (
	"fmt"
	"syscall"

	"github.com/layerfs/layerfs/unionfs/merge"
	"github.com/layerfs/layerfs/unionfs/override"
	"github.com/layerfs/layerfs/unionfs/xattrs"
	"github.com/layerfs/layerfs/whiteout"
	"golang.org/x/sys/unix"
)

// OverrideStatXattr holds the owner, mode and type an object has in the merged view when the
// layer cannot hold them itself: "uid:gid:mode[:type]", mode in octal, type one of file, dir,
// symlink, pipe, socket, char-MAJOR-MINOR, block-MAJOR-MINOR. containers/storage writes it
// when it unpacks a layer without privileges, and fuse-overlayfs reads it. A layer whose root
// carries the attribute has its objects read that way (fuse-overlayfs's rule); the upper is
// marked too when a lower layer is, so that objects copied up keep their overrides.
const OverrideStatXattr = override.Attr

// overrideXattrs are the names fuse-overlayfs reads overrides from, in the order it looks for
// them on a layer's root; the others are its own (xattr_permissions=1 and 2).
var overrideXattrs = []string{"security.fuseoverlayfs.override_stat", OverrideStatXattr, "user.fuseoverlayfs.override_stat"}

// readOverride reads the override attribute attr of entry name of dirfd ("" for dirfd itself).
func readOverride(dirfd int, name, attr string) (override.Stat, bool) {
	buf := make([]byte, 64)
	sz, err := getAttr(dirfd, name, attr, buf)
	if err != nil || sz < 0 {
		return override.Stat{}, false
	}
	return override.Parse(string(buf[:sz]))
}

// overrideAttr applies the override of the object at p, if its layer uses them, to st: what
// is reported for it. Symbolic links cannot carry user attributes and are left as they are.
func (u *unionFS) overrideAttr(p merge.Part, st *unix.Stat_t) {
	l := u.Layers[p.Layer]
	if l.OverrideXattr == "" || st.Mode&unix.S_IFMT == unix.S_IFLNK {
		return
	}
	dir, name := merge.SplitPath(p.Path)
	d, err := l.OpenDir(dir)
	if err != nil {
		return
	}
	defer d.Release()
	if o, ok := readOverride(d.FD, name, l.OverrideXattr); ok {
		o.Apply(st)
	}
}

// OverrideType is the type a directory listing reports for a regular file of a layer with
// overrides, which may stand in for a device, fifo or socket.
func (u *unionFS) OverrideType(l *merge.Layer, dirfd int, name string) (uint32, bool) {
	if l.OverrideXattr == "" {
		return 0, false
	}
	o, ok := readOverride(dirfd, name, l.OverrideXattr)
	if !ok || o.Type == 0 || o.Type == unix.S_IFREG {
		return 0, false
	}
	return o.Type, true
}

// initOverrides finds the layers whose root carries an override attribute, before the mount
// serves. The upper uses the one xattr_permissions names; else, when a lower layer uses
// overrides, the upper reads the same attribute, so that objects copied up keep theirs.
func (u *unionFS) initOverrides() error {
	u.overrideXattrs = map[string]bool{}
	lowerAttr := ""
	for _, l := range u.Layers {
		for _, attr := range overrideXattrs {
			if _, err := getAttr(l.FD, "", attr, nil); err == nil {
				l.OverrideXattr = attr
				u.overrideXattrs[attr] = true
				if !l.Upper && lowerAttr == "" {
					lowerAttr = attr
				}
				break
			}
		}
	}
	if !u.hasUpper {
		return nil
	}
	want := u.upper().OverrideXattr
	switch u.cfg.XattrPermissions {
	case 1:
		want = overrideXattrs[0]
	case 2:
		want = overrideXattrs[2]
	default:
		if want == "" {
			want = lowerAttr
		}
	}
	if want == "" || want == u.upper().OverrideXattr {
		return nil
	}
	return u.markUpper(want)
}

// markUpper makes the upper a layer with overrides in attr, recording its root's own
// attributes as the root's override.
func (u *unionFS) markUpper(attr string) error {
	up := u.upper()
	var st unix.Stat_t
	if err := unix.Fstat(up.FD, &st); err != nil {
		return err
	}
	o := override.Stat{Uid: st.Uid, Gid: st.Gid, Mode: st.Mode & 0o7777}
	if err := setAttr(up.FD, "", attr, []byte(o.String()), 0); err != nil {
		return fmt.Errorf("mark upper layer %s for %s: %w", up.Path, attr, err)
	}
	up.OverrideXattr = attr
	u.overrideXattrs[attr] = true
	return nil
}

// isPrivateXattr reports whether attr is layerfs's own: an overlay marker, or an override
// attribute this mount reads. Such attributes are hidden from the view and cannot be set
// through it (copy-up still copies the overrides).
func (u *unionFS) isPrivateXattr(attr string) bool {
	return whiteout.IsPrivateXattr(attr) || u.overrideXattrs[attr]
}

// setOwnerMode applies chmod and chown to entry name of dirfd in the upper. An object with an
// override changes its override, and its real owner and mode stay what the server needs; with
// xattr_permissions every object does, getting an override from its real attributes first.
func (u *unionFS) setOwnerMode(dirfd int, name string, modeOK bool, mode uint32, uidOK bool, uid uint32, gidOK bool, gid uint32) syscall.Errno {
	if attr := u.upper().OverrideXattr; attr != "" {
		ov, ok := readOverride(dirfd, name, attr)
		if !ok && u.cfg.XattrPermissions != 0 {
			var st unix.Stat_t
			if err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
				return toErrno(err)
			}
			ov, ok = override.Stat{Uid: st.Uid, Gid: st.Gid, Mode: st.Mode & 0o7777}, st.Mode&unix.S_IFMT != unix.S_IFLNK
		}
		if ok {
			if modeOK {
				ov.Mode = mode & 0o7777
			}
			if uidOK {
				ov.Uid = uid
			}
			if gidOK {
				ov.Gid = gid
			}
			return toErrno(setAttr(dirfd, name, attr, []byte(ov.String()), 0))
		}
	}
	if modeOK {
		if err := unix.Fchmodat(dirfd, name, mode&0o7777, 0); err != nil {
			return toErrno(err)
		}
	}
	if !uidOK && !gidOK {
		return 0
	}
	su, sg := -1, -1
	if uidOK {
		su = int(uid)
	}
	if gidOK {
		sg = int(gid)
	}
	return toErrno(unix.Fchownat(dirfd, name, su, sg, unix.AT_SYMLINK_NOFOLLOW))
}

// getAttr and setAttr reach an attribute of entry name of dirfd, or of dirfd itself when name
// is "".
func getAttr(dirfd int, name, attr string, buf []byte) (int, error) {
	return xattrs.For(name).Get(xattrs.Path(dirfd, name), attr, buf)
}

func setAttr(dirfd int, name, attr string, val []byte, flags int) error {
	return xattrs.For(name).Set(xattrs.Path(dirfd, name), attr, val, flags)
}
