package unionfs

import (
	"context"
	"errors"

	"github.com/layerfs/layerfs/unionfs/merge"
	"golang.org/x/sys/unix"
)

// linkUpOthers links the upper copy at donePath under every other name by which the merged
// view shows the same lower object (real inode realIno, found at src).
func (u *unionFS) linkUpOthers(ctx context.Context, root *node, src merge.Part, realIno uint64, donePath string) error {
	l := u.Layers[src.Layer]
	paths, err := l.HardlinkPaths(realIno)
	if err != nil {
		return err
	}
	doneDir, doneName := merge.SplitPath(donePath)
	for _, p := range paths {
		if p == donePath {
			continue
		}
		res, errno := u.ResolvePath(p)
		if errno != 0 || res.Top() != l.Index || res.St.Ino != realIno {
			continue // hidden, or shadowed by something else
		}
		dir, name := merge.SplitPath(p)
		if err := u.ensureUpperDir(ctx, root, dir); err != nil {
			return err
		}
		if err := u.linkInUpper(doneDir, doneName, dir, name); err != nil {
			return err
		}
		u.trace(Event{Kind: "link-up", Path: p, Layer: src.Layer})
	}
	return nil
}

// linkInUpper hard-links upper object fromDir/fromName as toDir/toName, keeping toDir's times.
func (u *unionFS) linkInUpper(fromDir, fromName, toDir, toName string) error {
	fd, err := u.upper().OpenDir(fromDir)
	if err != nil {
		return err
	}
	defer fd.Release()
	td, err := u.upper().OpenDir(toDir)
	if err != nil {
		return err
	}
	defer td.Release()
	var st unix.Stat_t
	if err := unix.Fstat(td.FD, &st); err != nil {
		return err
	}
	if err := unix.Linkat(fd.FD, fromName, td.FD, toName, 0); err != nil && !errors.Is(err, unix.EEXIST) {
		return err
	}
	restoreTimes(td.FD, &st)
	return nil
}
