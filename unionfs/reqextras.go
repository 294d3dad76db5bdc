package unionfs

import (
	"context"
	"sync"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// Some of what the kernel sends never reaches go-fuse's node API: the caller's umask, which
// the kernel leaves to us with FUSE_DONT_MASK (it applies only where the directory has no
// default ACL, which the kernel cannot know), SETXATTR's flags (FUSE_SETXATTR_EXT), which
// say when setting an ACL must clear the set-group-id bit, and WRITE's, which say whether a
// write must drop set-id bits and whether it writes back the page cache. The raw-level hooks file them
// under the request's cancel channel, which go-fuse passes on unchanged as the node's
// ctx.(*fuse.Context).Cancel, for the node to find while it serves that request.

// requestExtra is what one request carries besides its node-level arguments.
type requestExtra struct {
	umask    uint32
	hasUmask bool
	// killSgid: the caller setting an access ACL is neither in the object's group nor
	// privileged, so the set-group-id bit goes, as posix_acl_update_mode does.
	killSgid bool
	// killSuidgid: the caller writing lacks CAP_FSETID (FUSE_HANDLE_KILLPRIV_V2,
	// killpriv.go). OPEN's FUSE_OPEN_KILL_SUIDGID comes only with O_TRUNC, which OPEN does
	// not carry on a connection without atomic_o_trunc: the SETATTR of the size that follows
	// carries FATTR_KILL_SUIDGID instead.
	killSuidgid bool
	// cached: the WRITE writes back the page cache (FUSE_WRITE_CACHE), through whichever
	// writable handle of the inode the kernel picked, not the caller's own data (file.go).
	cached bool
}

// requestExtras maps in-flight requests to their extras.
type requestExtras struct{ m sync.Map }

func (r *requestExtras) put(cancel <-chan struct{}, e requestExtra) { r.m.Store(cancel, e) }
func (r *requestExtras) done(cancel <-chan struct{})                { r.m.Delete(cancel) }

// of returns the extras of the request ctx serves, if it has any.
func (r *requestExtras) of(ctx context.Context) (requestExtra, bool) {
	c, ok := ctx.(*fuse.Context)
	if !ok || c.Cancel == nil {
		return requestExtra{}, false
	}
	v, ok := r.m.Load(c.Cancel)
	if !ok {
		return requestExtra{}, false
	}
	return v.(requestExtra), true
}

// umask returns the caller's umask when the kernel left applying it to us.
func (r *requestExtras) umask(ctx context.Context) (uint32, bool) {
	e, ok := r.of(ctx)
	return e.umask, ok && e.hasUmask
}

// Create files the caller's umask for the node.
func (h *hookedFS) Create(cancel <-chan struct{}, in *fuse.CreateIn, name string, out *fuse.CreateOut) fuse.Status {
	h.extras.put(cancel, requestExtra{umask: in.Umask, hasUmask: h.dontMask()})
	defer h.extras.done(cancel)
	st := h.RawFileSystem.Create(cancel, in, name, out)
	noCache(&out.AttrValid, &out.AttrValidNsec) // a passthrough writer (passthrough.go)
	return st
}

// Tmpfile files the caller's umask for the node.
func (h *hookedFS) Tmpfile(cancel <-chan struct{}, in *fuse.CreateIn, out *fuse.CreateOut) fuse.Status {
	h.extras.put(cancel, requestExtra{umask: in.Umask, hasUmask: h.dontMask()})
	defer h.extras.done(cancel)
	return h.RawFileSystem.Tmpfile(cancel, in, out)
}

// Mkdir files the caller's umask for the node.
func (h *hookedFS) Mkdir(cancel <-chan struct{}, in *fuse.MkdirIn, name string, out *fuse.EntryOut) fuse.Status {
	h.extras.put(cancel, requestExtra{umask: in.Umask, hasUmask: h.dontMask()})
	defer h.extras.done(cancel)
	return h.RawFileSystem.Mkdir(cancel, in, name, out)
}

// Mknod files the caller's umask for the node.
func (h *hookedFS) Mknod(cancel <-chan struct{}, in *fuse.MknodIn, name string, out *fuse.EntryOut) fuse.Status {
	h.extras.put(cancel, requestExtra{umask: in.Umask, hasUmask: h.dontMask()})
	defer h.extras.done(cancel)
	return h.RawFileSystem.Mknod(cancel, in, name, out)
}

// SetXAttr files SETXATTR's flags for the node.
func (h *hookedFS) SetXAttr(cancel <-chan struct{}, in *fuse.SetXAttrIn, attr string, data []byte) fuse.Status {
	if in.SetXAttrFlags&fuse.SETXATTR_ACL_KILL_SGID == 0 {
		return h.RawFileSystem.SetXAttr(cancel, in, attr, data)
	}
	h.extras.put(cancel, requestExtra{killSgid: true})
	defer h.extras.done(cancel)
	return h.RawFileSystem.SetXAttr(cancel, in, attr, data)
}

// Write files FUSE_WRITE_KILL_SUIDGID and FUSE_WRITE_CACHE for the node; a write with neither
// needs no record. It is counted as activity (idle.go).
func (h *hookedFS) Write(cancel <-chan struct{}, in *fuse.WriteIn, data []byte) (uint32, fuse.Status) {
	h.load.served.Add(1)
	e, ok := writeExtra(in)
	if !ok {
		return h.RawFileSystem.Write(cancel, in, data)
	}
	h.extras.put(cancel, e)
	defer h.extras.done(cancel)
	return h.RawFileSystem.Write(cancel, in, data)
}

// Writev is Write for a request whose data arrived in pieces (go-fuse asks Writev first).
func (h *hookedFS) Writev(cancel <-chan struct{}, in *fuse.WriteIn, data [][]byte) (uint32, fuse.Status) {
	h.load.served.Add(1)
	e, ok := writeExtra(in)
	if !ok {
		return h.RawFileSystem.Writev(cancel, in, data)
	}
	h.extras.put(cancel, e)
	defer h.extras.done(cancel)
	return h.RawFileSystem.Writev(cancel, in, data)
}

// writeExtra is what a WRITE's flags tell the node, and whether there is anything.
func writeExtra(in *fuse.WriteIn) (requestExtra, bool) {
	e := requestExtra{
		killSuidgid: in.WriteFlags&fuse.WRITE_KILL_SUIDGID != 0,
		cached:      in.WriteFlags&fuse.WRITE_CACHE != 0,
	}
	return e, e.killSuidgid || e.cached
}

// dontMask reports whether the kernel agreed to FUSE_DONT_MASK: only then is a request's
// mode unmasked.
func (h *hookedFS) dontMask() bool {
	return h.hooks.srv != nil && h.hooks.srv.KernelSettings().Flags64()&fuse.CAP_DONT_MASK != 0
}
