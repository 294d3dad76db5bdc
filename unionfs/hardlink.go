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
	paths = u.mergedNames(l.Index, paths)
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

// mergedNames returns the merged paths that may show the objects at paths of lower layer
// layer: each path itself, and, where merged directories redirect to a directory holding
// one, the path below each of them. The redirected directories are the upper's and those of
// the lower layers above layer, each lower one taken at every merged path that shows it (so
// a chain of redirects through several layers is followed back). The kernel finds such names
// through its index when they are looked up; layerfs links them all at copy-up, so it has to
// find them first. Callers resolve each path to check that it shows the object. Where a layer
// cannot be walked (a directory a rootless server may not read), the copy-up goes on without
// the names it would have given, and the problem is logged.
func (u *unionFS) mergedNames(layer int, paths []string) []string {
	if !u.FollowRedirects {
		return paths
	}
	// from[l][p] are the merged directories whose part in layer l is at p, p being another
	// path than theirs.
	from := map[int]map[string][]string{}
	add := func(merged string) {
		res, errno := u.ResolvePath(merged)
		if errno != 0 || !isDirStat(&res.St) {
			return
		}
		for _, part := range res.Parts {
			if part.Path == merged {
				continue
			}
			if from[part.Layer] == nil {
				from[part.Layer] = map[string][]string{}
			}
			from[part.Layer][part.Path] = append(from[part.Layer][part.Path], merged)
		}
	}
	// namesOf is p of layer l, and p below each merged directory showing an ancestor of it.
	namesOf := func(l int, p string) []string {
		out := []string{p}
		for dir, _ := merge.SplitPath(p); dir != ""; dir, _ = merge.SplitPath(dir) {
			for _, d := range from[l][dir] {
				out = append(out, d+p[len(dir):])
			}
		}
		return out
	}
	if u.hasUpper {
		up, err := u.redirected()
		if err != nil {
			u.logf("looking for redirected directories in the upper: %v; a hard link's names below them are not linked up", err)
		}
		for _, d := range up {
			add(d)
		}
	}
	// Top down, so that a layer's redirected directories are found at the merged paths the
	// redirects above them give.
	for _, l := range u.Layers[:layer] {
		if l.Upper {
			continue
		}
		low, err := l.RedirectedDirs()
		if err != nil {
			u.logf("looking for redirected directories in layer %s: %v; a hard link's names below them are not linked up", l.Path, err)
		}
		for _, q := range low {
			for _, m := range namesOf(l.Index, q) {
				add(m)
			}
		}
	}
	if len(from[layer]) == 0 {
		return paths
	}
	var out []string
	seen := map[string]bool{}
	for _, p := range paths {
		for _, q := range namesOf(layer, p) {
			if !seen[q] {
				seen[q] = true
				out = append(out, q)
			}
		}
	}
	return out
}
