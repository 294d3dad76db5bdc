package unionfs

import (
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/layerfs/layerfs/unionfs/uring"
)

// hookedFS is go-fuse's bridge with two things taken over at the protocol level, where the
// node API cannot reach:
//   - Init is kept from the bridge, which then keeps talking to the backingHooks it was built
//     with, so only the hooks see the server and every backing-file registration passes
//     through them (passthrough.go);
//   - directories are opened without OPENDIR and read through handles of the hooks' own
//     (dirstream.go);
//   - what some requests carry that the node API drops (the umask, SETXATTR's flags) is filed
//     for the node serving them (reqextras.go).
type hookedFS struct {
	fuse.RawFileSystem
	hooks   *backingHooks
	streams dirStreams
	extras  *requestExtras
	// births are the objects whose birth time the kernel holds stale (statx.go).
	births *staleBirths
	// noStatx refuses FUSE_STATX (Config.NoBirthTime).
	noStatx bool
	// mountOpts are the server's options, for the io_uring transport's decoder; nil when
	// INIT did not ask for io_uring (transport.go).
	mountOpts *fuse.MountOptions
	// transport says how requests arrive, for --debug; rings are the io_uring queues.
	transport string
	rings     *uring.Transport
	// logf reports what a person needs to act on; nil for nothing.
	logf func(format string, args ...any)
	// load counts requests served at once, for AdaptProcs (procs.go).
	load load
}

// Init hands the server to the hooks and starts the io_uring queues where INIT agreed to them.
// go-fuse calls it once INIT is answered, before it reads another request.
func (h *hookedFS) Init(s *fuse.Server) {
	h.hooks.srv = s
	h.startUring(s)
}
