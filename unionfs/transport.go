package unionfs

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"unsafe"

	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/layerfs/layerfs/unionfs/uring"
)

// The transport: FUSE over io_uring where the kernel offers it (uring/), /dev/fuse otherwise.
// go-fuse's server answers INIT and keeps reading /dev/fuse, where the kernel still sends
// FORGET, INTERRUPT and the replies to notifications; once INIT has asked for
// FUSE_OVER_IO_URING, every other request waits in the kernel until each CPU's queue is
// registered, and then arrives on the rings, where go-fuse's ProtocolServer decodes and
// dispatches it to the same file system.

// uringDepth is how many requests each CPU's queue holds at once.
const uringDepth = 8

// IOUringMode says whether to use FUSE over io_uring.
type IOUringMode int

// The modes. io_uring is used only when asked for, where the kernel offers it: on Linux 6.18
// a server killed in the middle of a request over io_uring can be left unkillable (a thread
// of it waits in request_wait_answer for ever; aborting the connection does not free it, as
// it frees a /dev/fuse server — TestCrashDuringCopyUp met it), and container engines kill
// mount programs.
const (
	IOUringOff IOUringMode = iota
	IOUringOn
)

// uringOffered reports whether this kernel would let a connection use io_uring, and if not
// why: the module's switch, and an io_uring the server may create (a sysctl or a seccomp
// profile can forbid them). Asked before INIT, because once INIT has accepted io_uring the
// kernel holds every request until the queues are there.
func uringOffered() (bool, string) {
	data, err := os.ReadFile("/sys/module/fuse/parameters/enable_uring")
	if err != nil {
		return false, "this kernel has no FUSE over io_uring"
	}
	if strings.TrimSpace(string(data)) != "Y" {
		return false, "off in the kernel (/sys/module/fuse/parameters/enable_uring)"
	}
	if err := uring.Probe(); err != nil {
		return false, err.Error()
	}
	return true, ""
}

// startUring serves the connection's requests over io_uring, if INIT agreed to it. It is
// called once INIT is answered (the kernel refuses queues before).
func (h *hookedFS) startUring(srv *fuse.Server) {
	if h.mountOpts == nil || srv.KernelSettings().Flags64()&fuse.CAP_OVER_IO_URING == 0 {
		return
	}
	fd, err := fuseDevFd()
	if err == nil {
		var t *uring.Transport
		if t, err = h.serveUring(srv, fd); err == nil {
			h.transport = fmt.Sprintf("io_uring (%d queues of %d)", t.Queues(), uringDepth)
			h.rings = t
			return
		}
		// Queues registered before the failure end with the connection: Server.Wait waits
		// for them (waiting here would keep go-fuse from ever reading /dev/fuse).
		h.rings = t
		// The kernel goes on with /dev/fuse once a registration fails; make sure one does.
		uring.Refuse(fd)
	}
	h.transport = "/dev/fuse (io_uring failed: " + err.Error() + ")"
	if h.logf != nil {
		h.logf("FUSE over io_uring: %v; serving through /dev/fuse", err)
	}
}

func (h *hookedFS) serveUring(srv *fuse.Server, fd int) (*uring.Transport, error) {
	ps := fuse.NewProtocolServer(h, h.mountOpts)
	// The ProtocolServer learns what INIT agreed on from INIT itself.
	init := *srv.KernelSettings()
	init.Length = uint32(unsafe.Sizeof(init))
	init.Opcode = 26 // FUSE_INIT
	init.Unique = 1
	in := unsafe.Slice((*byte)(unsafe.Pointer(&init)), unsafe.Sizeof(init))
	out := make([]byte, 4096)
	if _, st := ps.HandleRequest([][]byte{in}, [][]byte{out}); !st.Ok() {
		return nil, fmt.Errorf("replaying INIT: %v", st)
	}
	payload := max(8192, h.mountOpts.MaxWrite, 256*os.Getpagesize())
	if v, err := strconv.Atoi(os.Getenv("LAYERFS_URING_PAYLOAD")); err == nil {
		// A test's way to have the kernel refuse the queues (too small a payload buffer)
		// and see the mount go on over /dev/fuse.
		payload = v
	}
	return uring.Start(uring.Config{
		FuseFd:      fd,
		Depth:       uringDepth,
		PayloadSize: payload,
		Handle: func(in, out [][]byte) int {
			n, _ := ps.HandleRequest(in, out)
			return n
		},
		Logf: h.logf,
	})
}

// waitTransport waits until the io_uring queues, if any, have served their last request: the
// connection is gone when /dev/fuse says so, but a request taken from a ring before may still
// be running.
func (h *hookedFS) waitTransport() {
	if h.rings != nil {
		h.rings.Wait()
	}
}

// fuseDevFd finds the connection's /dev/fuse descriptor: go-fuse keeps it to itself, and the
// server has no other.
func fuseDevFd() (int, error) {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return -1, err
	}
	for _, e := range ents {
		if target, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && target == "/dev/fuse" {
			return strconv.Atoi(e.Name())
		}
	}
	return -1, errors.New("no /dev/fuse descriptor")
}

// uringCapability is what Mount asks of INIT for the transport, and why not where it does not.
func uringCapability(cfg Config) (uint64, string) {
	if cfg.IOUring != IOUringOn {
		return 0, "not asked for (-o io_uring=on)"
	}
	if ok, why := uringOffered(); !ok {
		return 0, why
	}
	return fuse.CAP_OVER_IO_URING, ""
}
