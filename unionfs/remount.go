package unionfs

import (
	"bufio"
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

// mountOptionsOf returns the per-mount options of the topmost mount on mountpoint (as
// /proc/self/mountinfo shows them: ro or rw, nosuid, relatime …), if it is of type typ, or
// of any type typ begins where typ ends in a dot.
func mountOptionsOf(mountpoint, typ string) ([]string, bool) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, false
	}
	defer f.Close()
	var opts []string
	found := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 7 || unescapeMountinfo(fields[4]) != mountpoint {
			continue
		}
		// The type follows the optional fields' "-".
		sep := -1
		for i := 6; i < len(fields); i++ {
			if fields[i] == "-" {
				sep = i
				break
			}
		}
		// The last mount on the path is the one remount acts on.
		found = sep > 0 && sep+1 < len(fields) && (fields[sep+1] == typ || strings.HasSuffix(typ, ".") && strings.HasPrefix(fields[sep+1], typ))
		if found {
			opts = strings.Split(fields[5], ",")
		}
	}
	if !found {
		return nil, false
	}
	// mountinfo leaves relatime's absence unsaid: no atime word is strictatime.
	for _, o := range opts {
		if o == "noatime" || o == "relatime" {
			return opts, true
		}
	}
	return append(opts, "strictatime"), true
}
