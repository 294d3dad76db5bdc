package unionfs

import (
	"fmt"
	"os"
	"strings"

	"github.com/layerfs/layerfs/unionfs/workdir"
	"github.com/layerfs/layerfs/whiteout"
	"golang.org/x/sys/unix"
)

// privilege says what the server may do on disk, which decides the formats it writes.
type privilege struct {
	// trusted is set when trusted.* attributes can be written: root in the initial user
	// namespace. Otherwise markers are user.overlay.*, as the kernel writes them with userxattr.
	trusted bool
	// why says how the marker namespace was chosen, for --debug.
	why string
}

// detectPrivilege looks at who the server runs as. In a user namespace (unshare -Ur, podman
// unshare) the server may be uid 0 but trusted.* attributes still belong to the initial
// namespace's root.
func detectPrivilege(cfg *Config) privilege {
	switch {
	case cfg.UserXattr:
		return privilege{why: "-o userxattr"}
	case os.Geteuid() != 0:
		return privilege{why: fmt.Sprintf("running as uid %d", os.Geteuid())}
	case !inInitialUserNS():
		return privilege{why: "running in a user namespace"}
	}
	return privilege{trusted: true, why: "running as root"}
}

// inInitialUserNS reports whether this process runs in the initial user namespace, whose
// uid_map is the identity over the whole range.
func inInitialUserNS() bool {
	data, err := os.ReadFile("/proc/self/uid_map")
	if err != nil {
		return true // no user namespaces in this kernel
	}
	f := strings.Fields(string(data))
	return len(f) == 3 && f[0] == "0" && f[1] == "0" && f[2] == "4294967295"
}

// canMakeWhiteouts tries to make a character device 0/0 in the work directory: unprivileged
// users may since Linux 5.8; where they may not, whiteouts are ".wh.<name>" files.
func canMakeWhiteouts(workFd int) bool {
	tmp := workdir.TempName()
	if err := whiteout.MakeWhiteoutAt(workFd, tmp); err != nil {
		return false
	}
	unix.Unlinkat(workFd, tmp, 0)
	return true
}

// formats describes the formats this mount writes, for --debug.
func (u *unionFS) formats(p privilege) string {
	markers := "trusted.overlay.*"
	if u.cfg.UserXattr {
		markers = "user.overlay.*"
	}
	s := fmt.Sprintf("layerfs: markers %s (%s)", markers, p.why)
	if u.hasUpper {
		if canMakeWhiteouts(u.work.FD) {
			s += "; whiteouts: character devices 0/0"
		} else {
			s += "; whiteouts: .wh.<name> files (mknod of 0/0 refused here)"
		}
	}
	switch {
	case u.cfg.NoPassthrough:
		s += "; passthrough: off (-o nopassthrough)"
	case u.cfg.NoOpen:
		s += "; passthrough: off (-o noopen)"
	case u.pt.off.Load():
		s += "; passthrough: off (the kernel grants it to root of the initial user namespace only)"
	default:
		s += "; passthrough: on where the kernel grants it"
	}
	return s
}
