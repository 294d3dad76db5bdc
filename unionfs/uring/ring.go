// Package uring serves FUSE requests over io_uring (the kernel's FUSE_OVER_IO_URING, Linux
// 6.14 and later): one queue per CPU, each an io_uring of its own whose entries the kernel
// fills with requests, and one submission that both answers a request and waits for the next
// (COMMIT_AND_FETCH). It knows the ring protocol of fs/fuse/dev_uring.c and
// Documentation/filesystems/fuse/fuse-io-uring.rst; what a request means is the business of
// the Handler it is given. No cgo: the rings are set up and mapped with raw system calls.
package uring

import (
	"errors"
	"fmt"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// io_uring constants from <linux/io_uring.h> that x/sys does not carry.
const (
	setupSQE128       = 1 << 10
	setupCoopTaskrun  = 1 << 8
	setupSingleIssuer = 1 << 12
	setupDeferTaskrun = 1 << 13

	enterGetEvents = 1 << 0

	offSQRing = 0
	offCQRing = 0x8000000
	offSQEs   = 0x10000000

	featSingleMmap = 1 << 0

	opURingCmd = 46

	sqeSize = 128 // SQE128: the FUSE command needs the larger entry
	cqeSize = 16
)

// sqringOffsets and cqringOffsets are struct io_sqring_offsets and io_cqring_offsets.
type sqringOffsets struct {
	Head, Tail, RingMask, RingEntries, Flags, Dropped, Array, Resv1 uint32
	UserAddr                                                        uint64
}

type cqringOffsets struct {
	Head, Tail, RingMask, RingEntries, Overflow, Cqes, Flags, Resv1 uint32
	UserAddr                                                        uint64
}

// params is struct io_uring_params.
type params struct {
	SQEntries, CQEntries, Flags, SQThreadCPU, SQThreadIdle, Features, WQFd uint32
	Resv                                                                   [3]uint32
	SQOff                                                                  sqringOffsets
	CQOff                                                                  cqringOffsets
}

// ring is one io_uring with 128-byte submission entries, used by one queue.
type ring struct {
	fd            int
	sqMem, cqMem  []byte
	sqes          []byte
	sqHead        *uint32
	sqTail        *uint32
	sqMask        uint32
	sqArray       unsafe.Pointer
	cqHead        *uint32
	cqTail        *uint32
	cqMask        uint32
	cqes          unsafe.Pointer
	pending       uint32 // entries written since the last submission
	entries       uint32
	sharedMapping bool
}

// errNoRing is returned where the kernel has no io_uring (or refuses the flags).
var errNoRing = errors.New("io_uring unavailable")

// newRing sets up an io_uring of entries submission entries. With single set it asks for a
// ring served only by the calling thread (SINGLE_ISSUER, DEFER_TASKRUN: the kernel then
// refuses io_uring_enter from any other thread with EEXIST, so the caller must hold its OS
// thread, runtime.LockOSThread), and falls back to a plain one where the kernel refuses those.
func newRing(entries uint32, single bool) (*ring, error) {
	var p params
	var fd uintptr
	var errno unix.Errno
	tries := []uint32{setupSQE128 | setupCoopTaskrun, setupSQE128}
	if single {
		tries = append([]uint32{setupSQE128 | setupSingleIssuer | setupDeferTaskrun}, tries...)
	}
	for _, flags := range tries {
		p = params{Flags: flags}
		fd, _, errno = unix.Syscall(unix.SYS_IO_URING_SETUP, uintptr(entries), uintptr(unsafe.Pointer(&p)), 0)
		if errno == 0 {
			break
		}
		if errno != unix.EINVAL {
			return nil, fmt.Errorf("%w: io_uring_setup: %v", errNoRing, errno)
		}
	}
	if errno != 0 {
		return nil, fmt.Errorf("%w: io_uring_setup: %v", errNoRing, errno)
	}
	r := &ring{fd: int(fd), entries: p.SQEntries}
	if err := r.mapRings(&p); err != nil {
		r.close()
		return nil, err
	}
	return r, nil
}

func (r *ring) mapRings(p *params) error {
	sqSize := int(p.SQOff.Array + p.SQEntries*4)
	cqSize := int(p.CQOff.Cqes + p.CQEntries*cqeSize)
	r.sharedMapping = p.Features&featSingleMmap != 0
	if r.sharedMapping {
		sqSize = max(sqSize, cqSize)
	}
	var err error
	r.sqMem, err = unix.Mmap(r.fd, offSQRing, sqSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return fmt.Errorf("mapping the submission ring: %w", err)
	}
	r.cqMem = r.sqMem
	if !r.sharedMapping {
		if r.cqMem, err = unix.Mmap(r.fd, offCQRing, cqSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE); err != nil {
			return fmt.Errorf("mapping the completion ring: %w", err)
		}
	}
	if r.sqes, err = unix.Mmap(r.fd, offSQEs, int(p.SQEntries)*sqeSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE); err != nil {
		return fmt.Errorf("mapping the submission entries: %w", err)
	}
	sq := unsafe.Pointer(&r.sqMem[0])
	cq := unsafe.Pointer(&r.cqMem[0])
	r.sqHead = (*uint32)(unsafe.Add(sq, p.SQOff.Head))
	r.sqTail = (*uint32)(unsafe.Add(sq, p.SQOff.Tail))
	r.sqMask = *(*uint32)(unsafe.Add(sq, p.SQOff.RingMask))
	r.sqArray = unsafe.Add(sq, p.SQOff.Array)
	r.cqHead = (*uint32)(unsafe.Add(cq, p.CQOff.Head))
	r.cqTail = (*uint32)(unsafe.Add(cq, p.CQOff.Tail))
	r.cqMask = *(*uint32)(unsafe.Add(cq, p.CQOff.RingMask))
	r.cqes = unsafe.Add(cq, p.CQOff.Cqes)
	return nil
}

// nextSQE returns the next free submission entry, zeroed, or nil when the ring is full.
func (r *ring) nextSQE() []byte {
	head := atomic.LoadUint32(r.sqHead)
	tail := *r.sqTail + r.pending
	if tail-head >= r.entries {
		return nil
	}
	idx := tail & r.sqMask
	*(*uint32)(unsafe.Add(r.sqArray, idx*4)) = idx
	sqe := r.sqes[int(idx)*sqeSize : int(idx+1)*sqeSize]
	clear(sqe)
	r.pending++
	return sqe
}

// enter submits the entries written since the last call and, with wait set, waits until at
// least one completion is there.
func (r *ring) enter(wait bool) error {
	submit := r.pending
	if submit > 0 {
		atomic.StoreUint32(r.sqTail, *r.sqTail+submit)
		r.pending = 0
	}
	var minComplete, flags uintptr
	if wait {
		minComplete, flags = 1, enterGetEvents
	}
	for {
		_, _, errno := unix.Syscall6(unix.SYS_IO_URING_ENTER, uintptr(r.fd), uintptr(submit), minComplete, flags, 0, 0)
		switch errno {
		case 0:
			return nil
		case unix.EINTR:
			submit = 0 // taken already: wait again
			continue
		default:
			return errno
		}
	}
}

// cqe is one completion: the entry's tag and the command's result.
type cqe struct {
	userData uint64
	res      int32
}

// reap appends the completions that are there to dst and consumes them.
func (r *ring) reap(dst []cqe) []cqe {
	head := *r.cqHead
	tail := atomic.LoadUint32(r.cqTail)
	for ; head != tail; head++ {
		p := unsafe.Add(r.cqes, (head&r.cqMask)*cqeSize)
		dst = append(dst, cqe{userData: *(*uint64)(p), res: *(*int32)(unsafe.Add(p, 8))})
	}
	atomic.StoreUint32(r.cqHead, head)
	return dst
}

func (r *ring) close() {
	if r.sqes != nil {
		unix.Munmap(r.sqes)
	}
	if r.cqMem != nil && !r.sharedMapping {
		unix.Munmap(r.cqMem)
	}
	if r.sqMem != nil {
		unix.Munmap(r.sqMem)
	}
	unix.Close(r.fd)
}
