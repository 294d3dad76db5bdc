package unionfs

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// unwrapErrno digs the errno out of a wrapped error, or gives EIO.
func unwrapErrno(err error) error {
	var e unix.Errno
	if errors.As(err, &e) {
		return e
	}
	return unix.EIO
}

// logf reports a problem that reaches the caller only as an errno.
func (u *unionFS) logf(format string, args ...any) {
	if u.cfg.DebugLog != nil {
		fmt.Fprintf(u.cfg.DebugLog, "layerfs: "+format+"\n", args...)
	}
}
