package unionfs

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Remount changes the flags of the layerfs mount on mountpoint, as mount -o remount does for
// the kernel's overlayfs: ro or rw, nosuid, nodev, noexec, sync and dirsync. mount(8) runs the
// helper for it (mount.fuse3 hands it "remount" among the options); the kernel changes the
// flags, and the server, which never learns of it, needs not: a read-only mount's writes fail
// in the kernel. Options it cannot change are refused where they differ from the mount's
// (the access-time ones, which the server serves reads by), and ignored otherwise (the
// layers, which mount(8) passes again as fstab or the command line has them). Flags not
// named keep the mount's value, so "remount,ro" alone changes only that.
func Remount(mountpoint string, cfg Config) error {
	if os.Geteuid() != 0 {
		return configErr("remount needs root (fusermount3, which makes unprivileged FUSE mounts, does not remount)")
	}
	abs, err := filepath.Abs(mountpoint)
	if err != nil {
		return configErr("mountpoint %s: %v", mountpoint, err)
	}
	// mount(8) hands back what mountinfo and utab keep, which need not include subtype=:
	// without one, any FUSE mount there is taken to be the one meant.
	typ := "fuse."
	if cfg.Subtype != "" {
		typ += cfg.Subtype
	}
	cur, ok := mountOptionsOf(abs, typ)
	if !ok {
		return configErr("%s is not a %s mount: nothing to remount", abs, strings.TrimSuffix(typ, "."))
	}
	flags, _ := splitMountFlags(cur, 0)
	const atime = unix.MS_NOATIME | unix.MS_RELATIME | unix.MS_STRICTATIME | unix.MS_NODIRATIME
	asked, _ := splitMountFlags(cfg.MountOptions, flags)
	if asked&atime != flags&atime {
		return configErr("the access-time options of %s cannot change on remount: unmount it and mount it again", abs)
	}
	// The kernel keeps the access-time flags of a remount that names none.
	if err := unix.Mount("", abs, "", unix.MS_REMOUNT|asked&^atime, ""); err != nil {
		return fmt.Errorf("remount %s: %w", abs, err)
	}
	return nil
}

// mountOptionsOf returns the per-mount options of the topmost mount on mountpoint, if it is
// of type typ, or of any type typ begins where typ ends in a dot.
func mountOptionsOf(mountpoint, typ string) ([]string, bool) {
	m, ok := mountAt(mountpoint)
	if !ok || m.typ != typ && !(strings.HasSuffix(typ, ".") && strings.HasPrefix(m.typ, typ)) {
		return nil, false
	}
	// mountinfo leaves relatime's absence unsaid: no atime word is strictatime.
	for _, o := range m.options {
		if o == "noatime" || o == "relatime" {
			return m.options, true
		}
	}
	return append(m.options, "strictatime"), true
}
