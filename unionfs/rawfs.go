package unionfs

import "github.com/hanwen/go-fuse/v2/fuse"

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
}

// Init hands the server to the hooks.
func (h *hookedFS) Init(s *fuse.Server) { h.hooks.srv = s }
