package unionfs

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/layerfs/layerfs/unionfs/merge"
	"github.com/layerfs/layerfs/unionfs/xattrs"
	"golang.org/x/sys/unix"
)

// The kernel's overlayfs, mounted with index=on, copies a hard-linked lower object up once,
// into workdir/index/<file handle of the lower object in hex>, and links its names into the
// upper one by one as they are touched. Names not linked yet stay lower-only in the upper
// directory but show the indexed copy. layerfs reads such an upper the same way: it finds the
// index entry of a lower hard link by the inode number in the file handle (merge.KernelIndex
// reads the index) and links the name up on lookup. It writes no index of its own: it links
// every name up at copy-up instead.

// linkUpFromKernelIndex links a name of a lower hard link that the kernel has already copied
// up into its index, so that it shows the copy. It reports whether it did.
func (n *node) linkUpFromKernelIndex(ctx context.Context, name string, res *merge.Resolution) bool {
	u := n.u
	if u.kindex == nil || !u.hasUpper || u.Layers[res.Top()].Upper || isDirStat(&res.St) || res.St.Nlink < 2 {
		return false
	}
	entry, ok := u.kindex[res.St.Ino]
	if !ok {
		return false
	}
	if errno := n.copyUp(ctx, true); errno != 0 {
		return false
	}
	d, err := u.upper().OpenDir(n.path())
	if err != nil {
		return false
	}
	defer d.Release()
	var st unix.Stat_t
	if unix.Fstat(d.FD, &st) != nil {
		return false
	}
	if err := unix.Linkat(u.kindexFd, entry, d.FD, name, 0); err != nil {
		if !errors.Is(err, unix.EEXIST) {
			u.logf("link %s from the kernel's index: %v", name, err)
		}
		return false
	}
	restoreTimes(d.FD, &st)
	// The new link is a name the object had already: count it out of the kernel's
	// overlay.nlink, and record the merged number the name had, as copy-up does.
	u.adjustKernelNlink(u.kindexFd, entry, -1)
	unix.Lsetxattr(xattrs.Path(d.FD, name), u.xattrPrefix()+merge.OriginAttr,
		[]byte(strconv.FormatUint(res.Ino, 10)), 0)
	return true
}

// adjustKernelNlink adds delta to the N of an indexed object's "U±N" overlay.nlink.
func (u *unionFS) adjustKernelNlink(dirfd int, name string, delta int) {
	p := xattrs.Path(dirfd, name)
	if base, d, attr, ok := merge.KernelNlink(p); ok && base == 'U' {
		unix.Lsetxattr(p, attr, []byte(fmt.Sprintf("U%+d", d+delta)), 0)
	}
}
