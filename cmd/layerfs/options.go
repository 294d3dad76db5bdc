package main

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/layerfs/layerfs/unionfs"
)

// splitEscaped splits s at every sep not escaped by a backslash. An escaped sep loses its
// backslash; every other escape is kept for the next level (a lowerdir value is split again at
// ':'). This is the escaping fuse-overlayfs and the kernel accept: "\," and "\:".
func splitEscaped(s string, sep byte) []string {
	var parts []string
	var cur strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '\\' && i+1 < len(s) {
			if s[i+1] == sep {
				cur.WriteByte(sep)
			} else {
				cur.WriteByte(c)
				cur.WriteByte(s[i+1])
			}
			i++
			continue
		}
		if c == sep {
			parts = append(parts, cur.String())
			cur.Reset()
			continue
		}
		cur.WriteByte(c)
	}
	return append(parts, cur.String())
}

// unescape resolves the remaining backslash escapes of a path: "\x" is "x".
func unescape(s string) string {
	if !strings.Contains(s, "\\") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			i++
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// kernelMountOptions are handed to the kernel as they are.
var kernelMountOptions = map[string]bool{
	"nodev": true, "dev": true, "nosuid": true, "suid": true, "noexec": true, "exec": true,
	"ro": true, "rw": true, "noatime": true, "nodiratime": true, "relatime": true,
	"strictatime": true, "sync": true, "async": true, "dirsync": true,
}

// acceptedOptions are accepted and have no effect: layerfs always behaves as they ask, or the
// choice is the kernel's business only.
var acceptedOptions = map[string]bool{
	"allow_other": true, "allow_root": true, "default_permissions": true, "noacl": true,
	"acl": true, "index": true, "xino": true, "nfs_export": true, "metacopy": true,
	"fsync": true, "uuid": true, "context": true, "fscontext": true, "defcontext": true,
	"rootcontext": true, "plugins": true, "threaded": true, "static_nlink": true,
	"noxattrs": true, "max_idle_threads": true,
	// FUSE's own options, which mountinfo shows and mount(8) hands back on a remount.
	"user_id": true, "group_id": true, "max_read": true, "blksize": true,
}

// logDest is the log= option's value: "syslog", "stderr" or a file; empty for the default.
var logDest string

// remount is set by the remount option: mount(8)'s "mount -o remount,ro MNT", which asks for
// the flags of an existing mount to change rather than for a new one.
var remount bool

// unknownBare is set when an unknown option without a value was given: perhaps the rest of a
// path cut at an unescaped comma, which a later "does not exist" should hint at.
var unknownBare bool

// parseOptions applies one -o string to cfg. Empty elements are skipped (container engines
// write "a,,b"); unknown options are reported through warn and otherwise ignored, as
// fuse-overlayfs does. It returns an error naming the first bad option.
func parseOptions(s string, cfg *unionfs.Config, warn func(string)) error {
	for _, opt := range splitEscaped(s, ',') {
		if opt == "" {
			continue
		}
		key, val, hasVal := strings.Cut(opt, "=")
		switch key {
		case "lowerdir", "upperdir", "workdir", "fsname", "subtype", "log":
			if !hasVal || val == "" {
				return fmt.Errorf("option %s has an empty value", key)
			}
		}
		switch key {
		case "lowerdir":
			if len(cfg.Lowers) > 0 {
				// The kernel refuses a second lowerdir=; stacking both silently would mount
				// something the caller did not write down.
				return fmt.Errorf("option lowerdir given twice: give every layer in one lowerdir=top:…:bottom")
			}
			for _, l := range splitEscaped(val, ':') {
				if l == "" {
					return fmt.Errorf("option lowerdir has an empty layer in %q (data-only layers, \"::\", are not supported)", val)
				}
				cfg.Lowers = append(cfg.Lowers, unescape(l))
			}
		case "upperdir":
			cfg.Upper = unescape(val)
		case "workdir":
			cfg.Work = unescape(val)
		case "gomaxprocs":
			n, err := strconv.Atoi(val)
			if err != nil || n < 1 || n > 1024 {
				return fmt.Errorf("option gomaxprocs=%q: want a number of processors from 1", val)
			}
			cfg.Procs = n
		case "idle_prune":
			n, err := strconv.ParseUint(val, 10, 31)
			if err != nil {
				return fmt.Errorf("option idle_prune=%q: want a number of seconds (0: never)", val)
			}
			cfg.IdlePrune = time.Duration(n) * time.Second
			if n == 0 {
				cfg.IdlePrune = -1
			}
		case "fsname":
			cfg.FsName = val
		case "subtype":
			cfg.Subtype = val
		case "log":
			// Where problems are logged; the command opens it (logdest.go).
			logDest = unescape(val)
		case "remount":
			// mount -o remount: change the flags of the mount in place (main.go).
			remount = true
		case "volatile":
			cfg.Volatile = true
		case "noopen":
			cfg.NoOpen = true
		case "nopassthrough":
			cfg.NoPassthrough = true
		case "nobirthtime":
			cfg.NoBirthTime = true
		case "io_uring":
			switch val {
			case "off":
				cfg.IOUring = unionfs.IOUringOff
			case "on", "":
				cfg.IOUring = unionfs.IOUringOn
			default:
				return fmt.Errorf("option io_uring=%q: want on or off", val)
			}
		case "userxattr":
			cfg.UserXattr = true
		case "debug":
			cfg.Debug = true
		case "redirect_dir":
			switch val {
			case "on":
				cfg.RedirectDir = unionfs.RedirectOn
			case "follow", "off":
				// "off" is "follow" where the kernel is built to always follow redirects,
				// as distributions build it.
				cfg.RedirectDir = unionfs.RedirectFollow
			case "nofollow":
				cfg.RedirectDir = unionfs.RedirectNoFollow
			default:
				return fmt.Errorf("option redirect_dir=%q: want on, follow, nofollow or off", val)
			}
		case "uidmapping", "gidmapping":
			m, err := unionfs.ParseIDMaps(val)
			if err != nil {
				return fmt.Errorf("option %s: %v", key, err)
			}
			if key == "uidmapping" {
				cfg.IDs.UIDMap = m
			} else {
				cfg.IDs.GIDMap = m
			}
		case "squash_to_root":
			cfg.IDs.SquashToRoot = true
		case "squash_to_uid", "squash_to_gid":
			id, err := strconv.ParseUint(val, 10, 32)
			if err != nil {
				return fmt.Errorf("option %s=%q: want a numeric id", key, val)
			}
			v := uint32(id)
			if key == "squash_to_uid" {
				cfg.IDs.SquashUID = &v
			} else {
				cfg.IDs.SquashGID = &v
			}
		case "xattr_permissions":
			switch val {
			case "0", "1", "2":
				cfg.XattrPermissions = int(val[0] - '0')
			default:
				return fmt.Errorf("option xattr_permissions=%q: want 0, 1 or 2", val)
			}
		default:
			if kernelMountOptions[key] && !hasVal {
				cfg.MountOptions = append(cfg.MountOptions, key)
				continue
			}
			if !acceptedOptions[key] {
				msg := fmt.Sprintf("ignoring unknown option %q", opt)
				if !hasVal {
					// Perhaps the rest of a path cut at a comma.
					unknownBare = true
					if strings.ContainsAny(opt, "/.") {
						msg += ` (the rest of a path? a comma in a path is written \,)`
					}
				}
				warn(msg)
			}
		}
	}
	return nil
}
