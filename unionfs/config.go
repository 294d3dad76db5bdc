package unionfs

import (
	"errors"
	"fmt"
	"io"
	"time"
)

// Config describes one mount: the layers and the behaviour switches. It is validated by
// Validate; Mount calls it again.
type Config struct {
	// Lowers are the read-only layers, topmost first (the kernel's lowerdir=top:…:bottom).
	Lowers []string
	// Upper is the writable layer; empty for a read-only mount of the lowers.
	Upper string
	// Work is the work directory, on the same filesystem as Upper, used to build objects
	// before they are renamed into place. Required with Upper.
	Work string
	// UserXattr selects user.overlay.* attributes for the markers layerfs writes (the kernel's
	// userxattr mode); otherwise trusted.overlay.* is written. Both are always read. Mount
	// sets it when not running as root.
	UserXattr bool
	// Volatile skips fsync, as the kernel's volatile option does.
	Volatile bool
	// NoOpen lets the kernel open regular files without asking (nodeio.go): opening and
	// closing a file costs no round trip, at two differences from the kernel's overlayfs: a
	// copy-up happens at the first write (its errors come from write(2), not open(2)), and
	// the space of a removed file the kernel still knew comes back when the kernel forgets it.
	NoOpen bool
	// NoPassthrough serves every read and write through the daemon instead of letting the
	// kernel pass them to the layer's file (passthrough.go). Passthrough is used only where
	// the kernel grants it: root in the initial user namespace, Linux 6.9 or later.
	NoPassthrough bool
	// NoBirthTime answers FUSE_STATX with ENOSYS, after which the kernel never asks again:
	// statx gives no birth time, and the first statx of an inode that asks for one (stat(1),
	// Node's and Rust's stat) costs no round trip (statx.go).
	NoBirthTime bool
	// IOUring says whether requests may come over io_uring where the kernel offers it
	// (transport.go); off by default.
	IOUring IOUringMode
	// RedirectDir says whether renaming a directory with lower parts is allowed (recording
	// where they are, as the kernel's redirect_dir=on) and whether such records are followed.
	RedirectDir RedirectMode
	// Debug logs every FUSE operation to DebugLog.
	Debug bool
	// DebugLog receives the operation trace; nil means no trace.
	DebugLog io.Writer
	// Log receives, one line each, the problems a person must act on (problems.go): failed
	// copy-ups, I/O errors and full disks in a layer, layers removed while mounted, refused
	// passthrough. nil drops them (they still reach DebugLog and Trace).
	Log io.Writer
	// MountOptions are passed to the kernel as they are (nodev, nosuid, noexec, ...).
	MountOptions []string
	// Procs is how many Go processors (GOMAXPROCS) the server runs its code on; 0 leaves it
	// to the command: one over /dev/fuse, every CPU over io_uring. Package unionfs does not
	// read it: it is the serving process's setting, carried with the mount's options.
	Procs int
	// IdlePrune is how long the server waits without requests before it asks the kernel to
	// forget the names and inodes nothing uses (prune.go): 0 is DefaultIdlePrune, a negative
	// value never. Like Procs, the serving process's setting.
	IdlePrune time.Duration
	// FsName is the source shown in /proc/self/mountinfo; default "layerfs".
	FsName string
	// Subtype is the mount's type after "fuse." (libfuse's subtype=); default "layerfs".
	Subtype string
	// IDs maps and squashes owners (idmap.go); the zero value shows them as stored.
	IDs IDs
	// XattrPermissions, when 1 or 2, keeps chmod and chown of upper objects in an override
	// attribute instead of on the objects (fuse-overlayfs's xattr_permissions=): 1 uses
	// security.fuseoverlayfs.override_stat, 2 user.fuseoverlayfs.override_stat.
	XattrPermissions int
	// Trace, if set, is called with every overlay action the mount takes (copy-up, whiteout,
	// opaque directory, redirect) and every problem reported ("error"), from the goroutine
	// serving the operation.
	Trace func(Event)
}

// ReadOnly reports whether the mount has no upper layer.
func (c *Config) ReadOnly() bool { return c.Upper == "" }

// ErrConfig marks an invalid configuration; the message names the problem.
var ErrConfig = errors.New("invalid configuration")

func configErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrConfig, fmt.Sprintf(format, args...))
}

// RedirectMode is the kernel's redirect_dir setting.
type RedirectMode int

// Redirect modes. The zero value follows redirects but makes none: renaming a directory with
// lower parts fails with EXDEV (the kernel's "follow", its usual default).
const (
	RedirectFollow   RedirectMode = iota // follow, do not create (EXDEV)
	RedirectOn                           // follow and create
	RedirectNoFollow                     // neither (EXDEV)
)
