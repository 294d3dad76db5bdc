package unionfs

import (
	"errors"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// MaxLowers is the most lower layers a mount takes: the kernel's overlayfs limit
// (OVL_MAX_STACK), so any stack one mounts, the other does.
const MaxLowers = 500

// Validate checks the configuration against the disk and the mountpoint, and returns the first
// problem as an error naming it. Paths are made absolute and cleaned in place. Nothing is changed
// on disk.
func (c *Config) Validate(mountpoint string) error {
	if len(c.Lowers) == 0 {
		return configErr("no lower layer given (lowerdir= or --lower)")
	}
	if c.Subtype != "" && (strings.ContainsAny(c.Subtype, ".,/\\ \t\n") || len(c.Subtype) > 64) {
		return configErr("subtype %q: want a short name without dots, commas, slashes or spaces", c.Subtype)
	}
	if len(c.Lowers) > MaxLowers {
		return configErr("%d lower layers given; at most %d are supported, as by the kernel's overlayfs", len(c.Lowers), MaxLowers)
	}
	type named struct{ role, path string }
	var all []named
	for i := range c.Lowers {
		p, err := checkDir("lower layer", c.Lowers[i])
		if err != nil {
			return err
		}
		c.Lowers[i] = p
		all = append(all, named{"lower layer", p})
	}
	if c.Upper == "" && c.Work != "" {
		return configErr("workdir %s given without upperdir", c.Work)
	}
	if c.Upper != "" {
		if c.Work == "" {
			return configErr("upperdir %s needs a workdir (workdir= or --work)", c.Upper)
		}
		p, err := checkDir("upper layer", c.Upper)
		if err != nil {
			return err
		}
		c.Upper = p
		if err := unix.Access(p, unix.W_OK); err != nil {
			return configErr("upper layer %s is not writable: %v", p, err)
		}
		w, err := checkDir("workdir", c.Work)
		if err != nil {
			return err
		}
		c.Work = w
		if err := unix.Access(w, unix.W_OK); err != nil {
			return configErr("workdir %s is not writable: %v", w, err)
		}
		var su, sw unix.Stat_t
		if err := unix.Stat(p, &su); err != nil {
			return configErr("upper layer %s: %v", p, err)
		}
		if err := unix.Stat(w, &sw); err != nil {
			return configErr("workdir %s: %v", w, err)
		}
		if su.Dev != sw.Dev {
			return configErr("workdir %s is not on the same filesystem as upper layer %s", w, p)
		}
		if p == w || within(w, p) || within(p, w) {
			return configErr("workdir %s and upper layer %s must be separate directories, neither inside the other", w, p)
		}
		all = append(all, named{"upper layer", p})
	}
	for i := range all {
		for j := range all {
			if i == j {
				continue
			}
			a, b := all[i], all[j]
			if a.path == b.path {
				if i < j {
					return configErr("%s %s is given twice", a.role, a.path)
				}
				continue
			}
			if within(a.path, b.path) {
				return configErr("%s %s is inside %s %s: layers must not overlap", a.role, a.path, b.role, b.path)
			}
		}
	}
	if mountpoint == "" {
		return configErr("no mountpoint given")
	}
	m, err := checkDir("mountpoint", mountpoint)
	if err != nil {
		return err
	}
	if c.Work != "" {
		all = append(all, named{"workdir", c.Work})
	}
	for _, l := range all {
		if m == l.path || within(m, l.path) {
			return configErr("mountpoint %s is inside %s %s: the mount would serve itself", m, l.role, l.path)
		}
	}
	return nil
}

// checkDir makes p absolute with symlinks resolved and checks that it is a directory.
func checkDir(role, p string) (string, error) {
	if p == "" {
		return "", configErr("%s: empty path", role)
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", configErr("%s %s: %v", role, p, err)
	}
	real, err := filepath.EvalSymlinks(abs)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "", configErr("%s %s does not exist", role, p)
		}
		if errors.Is(err, unix.ENOTCONN) {
			return "", configErr("%s %s is a dead FUSE mount (its server is gone): unmount it first with fusermount3 -u %s", role, p, abs)
		}
		return "", configErr("%s %s: %v", role, p, err)
	}
	fi, err := os.Stat(real)
	if err != nil {
		return "", configErr("%s %s: %v", role, p, err)
	}
	if !fi.IsDir() {
		return "", configErr("%s %s is not a directory", role, p)
	}
	return real, nil
}

// within reports whether path a lies strictly below directory b (both clean and absolute).
func within(a, b string) bool {
	if b == "/" {
		return a != "/"
	}
	return strings.HasPrefix(a, b+"/")
}
