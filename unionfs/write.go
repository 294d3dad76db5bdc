package unionfs

import (
	"context"
	"syscall"
)

// prepareWrite makes the node writable: on a read-only mount it fails with EROFS.
func (n *node) prepareWrite(ctx context.Context) syscall.Errno {
	if !n.u.hasUpper {
		return syscall.EROFS
	}
	if n.topLayer().upper {
		return 0
	}
	return syscall.ENOTSUP
}
