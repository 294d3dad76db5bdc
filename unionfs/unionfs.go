package unionfs

import (
	"sync/atomic"
	"syscall"

	"github.com/layerfs/layerfs/unionfs/merge"
	"github.com/layerfs/layerfs/unionfs/workdir"
	"golang.org/x/sys/unix"
)

// unionFS is the state shared by every node of one mount.
type unionFS struct {
	cfg Config
	// Stack is the layers and the lookup and listing rules (package merge); its Identity is
	// this unionFS.
	merge.Stack
	hasUpper bool
	// Numbering gives merged inode numbers and link counts: with OverrideType, unionFS is
	// the Stack's Identity.
	merge.Numbering
	// work is workdir/work, where objects are built before they appear in the upper.
	work workdir.Dir
	// kindex is the kernel's index of copied-up hard links, if it left one (kindex.go).
	kindex   merge.KernelIndex
	kindexFd int
	// dirs keeps one merged directory per directory inode number (identity.go).
	dirs dirIdentities
	// overrideXattrs are the override attributes some layer uses (overridestat.go).
	overrideXattrs map[string]bool
	// pt is the passthrough switch and registrations (passthrough.go).
	pt passthrough
	// upperNoatimeFd is the root of a detached noatime clone of the upper layer's mount, on
	// which the backing files of upper objects are opened under -o noatime (atime.go); -1
	// otherwise.
	upperNoatimeFd int
	// selinux is set when the host runs SELinux (xattr.go, absentXattr).
	selinux bool
	// extras holds what in-flight requests carry beyond go-fuse's node API (reqextras.go).
	extras requestExtras
	// lockFds hold the locks on the upper and work directories for the server's life (lock.go).
	lockFds []int
	// problems limits and routes what is reported to a person (problems.go).
	problems problemLog
	// redirects are the upper's redirected directories, for hard-link copy-up (redirect.go).
	redirects redirectedDirs
	// births are the objects whose birth time the kernel holds stale (statx.go).
	births staleBirths
	// noClone is set once the upper's file system has refused a reflink (copyup.Options).
	noClone atomic.Bool
}

func newUnionFS(cfg Config) (*unionFS, error) {
	u := &unionFS{cfg: cfg, work: workdir.Dir{FD: -1}, kindexFd: -1, upperNoatimeFd: -1, selinux: selinuxEnabled()}
	u.Identity = u
	u.Prefix = u.xattrPrefix()
	u.FollowRedirects = cfg.RedirectDir != RedirectNoFollow
	paths := cfg.Lowers
	if cfg.Upper != "" {
		paths = append([]string{cfg.Upper}, cfg.Lowers...)
		u.hasUpper = true
	}
	devs := map[uint64]uint64{}
	for i, p := range paths {
		l, err := merge.OpenLayer(p)
		if err != nil {
			u.close()
			return nil, err
		}
		l.Index = i
		l.Alone = []merge.Part{{Layer: i}}
		l.Upper = u.hasUpper && i == 0
		idx, ok := devs[l.Dev]
		if !ok {
			idx = uint64(len(devs))
			devs[l.Dev] = idx
		}
		l.FsIdx = idx
		u.Layers = append(u.Layers, l)
	}
	u.SameFS = len(devs) == 1
	if u.hasUpper && cfg.Work != "" {
		// Locked before the work directory is cleaned: that would remove what another
		// server is building there.
		locks, err := lockDirs([]string{"upper directory", "work directory"}, []string{cfg.Upper, cfg.Work})
		if err != nil {
			u.close()
			return nil, err
		}
		u.lockFds = locks
		w, err := workdir.Open(cfg.Work)
		if err != nil {
			u.close()
			return nil, err
		}
		u.work = w
		u.kindex, u.kindexFd = merge.ReadKernelIndex(cfg.Work)
	}
	return u, nil
}

func (u *unionFS) close() {
	for _, l := range u.Layers {
		l.Close()
	}
	for _, fd := range []*int{&u.work.FD, &u.kindexFd, &u.upperNoatimeFd} {
		if *fd >= 0 {
			unix.Close(*fd)
			*fd = -1
		}
	}
	// The locks go last: nothing of this server touches the work directory any more.
	for _, fd := range u.lockFds {
		unix.Close(fd)
	}
	u.lockFds = nil
}

// toErrno turns an error from the unix package into an errno for FUSE.
func toErrno(err error) syscall.Errno { return merge.Errno(err) }
