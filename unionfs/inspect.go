package unionfs

import (
	"syscall"

	"github.com/layerfs/layerfs/unionfs/merge"
	"github.com/layerfs/layerfs/whiteout"
	"golang.org/x/sys/unix"
)

// Inspector answers, without a mount, where each name of a stack's merged view comes from.
type Inspector struct {
	u *unionFS
}

// NewInspector opens the layers of cfg (which Validate with any mountpoint would accept,
// less the mountpoint).
func NewInspector(cfg Config) (*Inspector, error) {
	cfg.Work = "" // nothing is written: no work directory is needed or touched
	for i, l := range cfg.Lowers {
		p, err := checkDir("lower layer", l)
		if err != nil {
			return nil, err
		}
		cfg.Lowers[i] = p
	}
	if cfg.Upper != "" {
		p, err := checkDir("upper layer", cfg.Upper)
		if err != nil {
			return nil, err
		}
		cfg.Upper = p
	}
	u, err := newUnionFS(cfg)
	if err != nil {
		return nil, err
	}
	return &Inspector{u: u}, nil
}

// Close releases the layers.
func (i *Inspector) Close() { i.u.close() }

// Layers names the stack's layers, topmost first, as Origin.Layer numbers them.
func (i *Inspector) Layers() []string {
	out := make([]string, len(i.u.Layers))
	for k, l := range i.u.Layers {
		out[k] = l.Path
	}
	return out
}

// HasUpper reports whether layer 0 is the writable upper.
func (i *Inspector) HasUpper() bool { return i.u.hasUpper }

// Origin is where one merged name comes from.
type Origin struct {
	Name  string `json:"name"`
	Type  string `json:"type"`
	Size  int64  `json:"size"`
	Layer int    `json:"layer"` // the layer that serves it, 0 = topmost
	// Status is "added" (no layer below holds the name), "modified" (it hides a lower
	// object of the name), "merged" (a directory merging lower ones), "opaque" (a directory
	// hiding a lower one), or "deleted" (a whiteout in Layer hides the lower object).
	Status string `json:"status"`
	// Shadowed lists the lower layers whose object of this name the view does not show.
	Shadowed []int `json:"shadowed,omitempty"`
	// ShadowedBytes adds up their sizes (regular files).
	ShadowedBytes int64 `json:"shadowed_bytes"`
	// Merged lists, for a directory, the layers whose directories it merges.
	Merged []int `json:"merged,omitempty"`
}

// Lookup tells where the merged path (relative, "" for the root) comes from. A name that a
// whiteout hides has Status "deleted"; one that no layer holds gives ENOENT.
func (i *Inspector) Lookup(path string) (Origin, syscall.Errno) {
	if path == "" {
		o := Origin{Name: "", Type: "dir", Status: "merged"}
		for k := range i.u.Layers {
			o.Merged = append(o.Merged, k)
		}
		return o, 0
	}
	res, errno := i.u.ResolvePath(path)
	dir, name := merge.SplitPath(path)
	if errno == syscall.ENOENT {
		parent, perr := i.u.ResolvePath(dir)
		if dir == "" {
			parent, perr = i.rootResolution(), 0
		}
		if perr != 0 {
			return Origin{}, errno
		}
		return i.deleted(parent.Parts, name)
	}
	if errno != 0 {
		return Origin{}, errno
	}
	parentParts := i.rootResolution().Parts
	if dir != "" {
		parent, perr := i.u.ResolvePath(dir)
		if perr != 0 {
			return Origin{}, perr
		}
		parentParts = parent.Parts
	}
	return i.origin(parentParts, name, &res), 0
}

// List tells where every name of the merged directory at path comes from, deleted names
// included.
func (i *Inspector) List(path string) ([]Origin, syscall.Errno) {
	var parts []merge.Part
	if path == "" {
		parts = i.rootResolution().Parts
	} else {
		res, errno := i.u.ResolvePath(path)
		if errno != 0 {
			return nil, errno
		}
		if !isDirStat(&res.St) {
			return nil, syscall.ENOTDIR
		}
		parts = res.Parts
	}
	entries, errno := i.u.mergedEntries(parts, 0)
	if errno != 0 {
		return nil, errno
	}
	dirs := i.u.NewDirs(parts)
	defer dirs.Release()
	var out []Origin
	shown := map[string]bool{}
	for _, e := range entries {
		shown[e.Name] = true
		res, errno := i.u.Resolve(dirs, e.Name)
		if errno != 0 {
			continue
		}
		out = append(out, i.origin(parts, e.Name, &res))
	}
	// Names the layers hold but the view hides: deleted by a whiteout.
	for _, p := range parts {
		names, err := i.u.Layers[p.Layer].ReadNames(p.Path)
		if err != nil {
			continue
		}
		for _, n := range names {
			if hidden, ok := whiteout.HiddenName(n); ok {
				n = hidden
			}
			if shown[n] || whiteout.IsMarkerName(n) {
				continue
			}
			shown[n] = true
			if o, errno := i.deleted(parts, n); errno == 0 {
				out = append(out, o)
			}
		}
	}
	return out, 0
}

func (i *Inspector) rootResolution() merge.Resolution {
	var r merge.Resolution
	for k := range i.u.Layers {
		r.Parts = append(r.Parts, merge.Part{Layer: k})
	}
	return r
}

// origin describes res, the resolution of name in the directory of parentParts.
func (i *Inspector) origin(parentParts []merge.Part, name string, res *merge.Resolution) Origin {
	o := Origin{Name: name, Type: typeName(res.St.Mode), Layer: res.Top()}
	if o.Type == "reg" {
		o.Size = res.St.Size
	}
	for _, p := range res.Parts {
		o.Merged = append(o.Merged, p.Layer)
	}
	if len(res.Parts) < 2 {
		o.Merged = nil
	}
	// What the layers below the top hold under the name, and the view does not show.
	for _, p := range parentParts {
		if p.Layer <= res.Top() || contains(o.Merged, p.Layer) {
			continue
		}
		if e := i.classify(p, name); e.Kind == whiteout.Object {
			o.Shadowed = append(o.Shadowed, p.Layer)
			if e.Stat.Mode&unix.S_IFMT == unix.S_IFREG {
				o.ShadowedBytes += e.Stat.Size
			}
		}
	}
	switch {
	case len(o.Merged) > 1:
		o.Status = "merged"
	case o.Type == "dir" && len(o.Shadowed) > 0:
		o.Status = "opaque"
	case len(o.Shadowed) > 0:
		o.Status = "modified"
	default:
		o.Status = "added"
	}
	return o
}

// deleted describes name, which the view hides: the layer of the whiteout, and what it hides.
func (i *Inspector) deleted(parentParts []merge.Part, name string) (Origin, syscall.Errno) {
	o := Origin{Name: name, Status: "deleted", Layer: -1}
	for _, p := range parentParts {
		e := i.classify(p, name)
		if o.Layer < 0 {
			switch e.Kind {
			case whiteout.Whiteout:
				o.Layer = p.Layer
			case whiteout.Object:
				return Origin{}, syscall.ENOENT // shown after all: not deleted
			}
			continue
		}
		if e.Kind == whiteout.Object {
			o.Shadowed = append(o.Shadowed, p.Layer)
			o.Type = typeName(e.Stat.Mode)
			if e.Stat.Mode&unix.S_IFMT == unix.S_IFREG {
				o.ShadowedBytes += e.Stat.Size
			}
		}
	}
	if o.Layer < 0 || len(o.Shadowed) == 0 {
		return Origin{}, syscall.ENOENT
	}
	return o, 0
}

// classify tells what layer part p holds under name, as a lookup reads it; Absent when the
// directory cannot be read.
func (i *Inspector) classify(p merge.Part, name string) whiteout.Entry {
	d, err := i.u.Layers[p.Layer].OpenDir(p.Path)
	if err != nil {
		return whiteout.Entry{}
	}
	defer d.Release()
	e, _ := whiteout.Classify(d.FD, name, whiteout.LookupRule(i.u.Layers[p.Layer].Upper, true))
	return e
}

func contains(list []int, v int) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

func typeName(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFREG:
		return "reg"
	case unix.S_IFDIR:
		return "dir"
	case unix.S_IFLNK:
		return "symlink"
	case unix.S_IFIFO:
		return "fifo"
	case unix.S_IFSOCK:
		return "socket"
	case unix.S_IFCHR:
		return "chardev"
	case unix.S_IFBLK:
		return "blockdev"
	}
	return "unknown"
}

// Cell is what one layer holds under a name of a merged directory, for pictures of the stack.
type Cell struct {
	// Kind is "" (nothing), "reg", "dir", "symlink", "fifo", "socket", "chardev", "blockdev",
	// or "whiteout" (any of the formats).
	Kind string `json:"kind"`
	// Opaque and Redirect describe a directory: it hides the directories below it, or it
	// records where its lower parts are (Redirect is that path).
	Opaque   bool   `json:"opaque,omitempty"`
	Redirect string `json:"redirect,omitempty"`
	// Consulted is false for a layer the merge never reaches here: below an opaque
	// directory, or one whose parent directory it does not hold.
	Consulted bool `json:"consulted"`
}

// Cells tells what each layer, topmost first, holds under name in the merged directory dir
// ("" for the root).
func (i *Inspector) Cells(dir, name string) ([]Cell, syscall.Errno) {
	parts := i.rootResolution().Parts
	if dir != "" {
		res, errno := i.u.ResolvePath(dir)
		if errno != 0 {
			return nil, errno
		}
		parts = res.Parts
	}
	cells := make([]Cell, len(i.u.Layers))
	for _, p := range parts {
		c := &cells[p.Layer]
		c.Consulted = true
		d, err := i.u.Layers[p.Layer].OpenDir(p.Path)
		if err != nil {
			continue
		}
		e, _ := whiteout.Classify(d.FD, name, whiteout.LookupRule(i.u.Layers[p.Layer].Upper, true))
		switch e.Kind {
		case whiteout.Whiteout:
			c.Kind = "whiteout"
		case whiteout.Object:
			c.Kind = typeName(e.Stat.Mode)
			if c.Kind == "dir" {
				if info, err := whiteout.ReadDirInfo(d.FD, name); err == nil {
					c.Opaque = info.Opaque
					if info.HasRedirect {
						c.Redirect = info.Redirect
					}
				}
			}
		}
		d.Release()
	}
	return cells, 0
}
