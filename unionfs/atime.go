package unionfs

import (
	"slices"

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
