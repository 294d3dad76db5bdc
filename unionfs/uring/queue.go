package uring

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The FUSE ring protocol (include/uapi/linux/fuse.h).
const (
	cmdRegister       = 1 // FUSE_IO_URING_CMD_REGISTER
	cmdCommitAndFetch = 2 // FUSE_IO_URING_CMD_COMMIT_AND_FETCH

	// struct fuse_uring_req_header: the in/out header (fuse_in_header on the way in,
	// fuse_out_header on the way out), the operation's own header, then struct
	// fuse_uring_ent_in_out.
	inOutOff       = 0
	opInOff        = 128
	entInOutOff    = 256
	commitIDOff    = entInOutOff + 8
	payloadSzOff   = entInOutOff + 16
	reqHeaderSize  = entInOutOff + 32
	inHeaderSize   = 40 // struct fuse_in_header
	outHeaderSize  = 16 // struct fuse_out_header
	iovOff         = 512
	payloadOff     = 4096
	sqeCmdOff      = 48 // struct fuse_uring_cmd_req in the SQE's command area
	sqeCmdOpOff    = 8
	opRead         = 22 // IORING_OP_READ, for the wake-up eventfd
	wakeTag        = ^uint64(0)
	opcodeOpen     = 14
	opcodeWrite    = 16
	openFlagsWrite = unix.O_WRONLY | unix.O_RDWR | unix.O_TRUNC
)

// Handler serves one request: in holds the request as the kernel wrote it (header, the
// operation's header, its payload), out the room for the reply (header, then the rest); it
// returns the bytes of reply written, 0 for none.
type Handler func(in, out [][]byte) int

// Config says how to serve.
type Config struct {
	// FuseFd is the connection's /dev/fuse descriptor, INIT already answered with
	// FUSE_OVER_IO_URING.
	FuseFd int
	// Depth is the number of requests each queue holds at once.
	Depth int
	// PayloadSize is the size of the payload buffer of each entry: at least the
	// connection's max_write and max_pages×page size (the kernel refuses smaller).
	PayloadSize int
	// Handle serves requests.
	Handle Handler
	// Logf, if set, reports a queue that stopped for another reason than the unmount.
	Logf func(format string, args ...any)
}

// Transport is the set of running queues.
type Transport struct {
	queues []*queue
	wg     sync.WaitGroup
}

// Start registers one queue per possible CPU, each served by an OS thread of its own bound to
// its CPU, and returns once every entry is registered (the kernel then routes requests to the
// rings), or with the first error, after which the kernel goes on with /dev/fuse.
func Start(cfg Config) (*Transport, error) {
	cpus, err := possibleCPUs()
	if err != nil {
		return nil, err
	}
	t := &Transport{}
	errs := make(chan error, cpus)
	for qid := range cpus {
		q := &queue{id: qid, cfg: cfg}
		t.queues = append(t.queues, q)
		t.wg.Add(1)
		go func() {
			defer t.wg.Done()
			q.run(errs)
		}()
	}
	for range cpus {
		if err := <-errs; err != nil {
			return t, err
		}
	}
	return t, nil
}

// Queues is the number of queues.
func (t *Transport) Queues() int { return len(t.queues) }

// Wait waits until every queue has stopped (the connection ended).
func (t *Transport) Wait() { t.wg.Wait() }

// possibleCPUs is the kernel's num_possible_cpus(): the queues it expects.
func possibleCPUs() (int, error) {
	data, err := os.ReadFile("/sys/devices/system/cpu/possible")
	if err != nil {
		return 0, err
	}
	return parseCPUList(string(data))
}

// parseCPUList returns one more than the highest CPU of a kernel CPU list ("0-3,8").
func parseCPUList(data string) (int, error) {
	n := 0
	for _, r := range strings.Split(strings.TrimSpace(data), ",") {
		lo, hi, found := strings.Cut(r, "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			return 0, fmt.Errorf("/sys/devices/system/cpu/possible: %q", data)
		}
		b := a
		if found {
			if b, err = strconv.Atoi(hi); err != nil {
				return 0, fmt.Errorf("/sys/devices/system/cpu/possible: %q", data)
			}
		}
		n = max(n, b+1)
	}
	return n, nil
}

// entry is one request slot of a queue: headers, the iovec the kernel was given and the
// payload, in memory of its own outside the Go heap (the kernel keeps the addresses).
type entry struct {
	idx  int
	mem  []byte
	dead bool
	// scratch holds a request's payload (names, attribute values) while the reply is
	// written over the payload buffer.
	scratch []byte
}

func (e *entry) header() []byte  { return e.mem[:reqHeaderSize] }
func (e *entry) payload() []byte { return e.mem[payloadOff:] }

type queue struct {
	id   int
	cfg  Config
	r    *ring
	ents []*entry
	// wake is an eventfd a worker writes when it finished a request handed off to it;
	// wakeBuf (outside the Go heap) receives the read that is always pending on it.
	wake    int
	wakeBuf []byte
	mu      sync.Mutex
	done    []*entry // handed-off requests answered, to commit
}

// run serves the queue on the calling goroutine's own OS thread, bound to the queue's CPU,
// until the connection ends; it reports on errs whether registration worked.
func (q *queue) run(errs chan<- error) {
	runtime.LockOSThread()
	// Never unlocked: the thread ends with the goroutine rather than carrying its CPU
	// binding to other goroutines.
	var set unix.CPUSet
	set.Set(q.id)
	unix.SchedSetaffinity(0, &set) // a CPU offline now: served from wherever we run
	err := q.setup()
	errs <- err
	if err != nil {
		q.release()
		return
	}
	if err := q.loop(); err != nil && q.cfg.Logf != nil {
		q.cfg.Logf("io_uring queue %d stopped: %v", q.id, err)
	}
	q.release()
}

func (q *queue) setup() error {
	depth := q.cfg.Depth
	r, err := newRing(uint32(2*depth+2), true) // run holds the thread
	if err != nil {
		return err
	}
	q.r = r
	if q.wake, err = unix.Eventfd(0, unix.EFD_CLOEXEC); err != nil {
		return err
	}
	if q.wakeBuf, err = unix.Mmap(-1, 0, 4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS); err != nil {
		return err
	}
	size := payloadOff + (q.cfg.PayloadSize+4095)&^4095
	for i := range depth {
		mem, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
		if err != nil {
			return err
		}
		e := &entry{idx: i, mem: mem}
		q.ents = append(q.ents, e)
		// struct iovec[2]: the headers, then the payload.
		iov := (*[2]unix.Iovec)(unsafe.Pointer(&mem[iovOff]))
		iov[0].Base = &mem[0]
		iov[0].SetLen(reqHeaderSize)
		iov[1].Base = &mem[payloadOff]
		iov[1].SetLen(size - payloadOff)
		sqe := q.r.nextSQE()
		q.prepCmd(sqe, e, cmdRegister, 0)
		binary.LittleEndian.PutUint64(sqe[16:], uint64(uintptr(unsafe.Pointer(iov)))) // addr
		binary.LittleEndian.PutUint32(sqe[24:], 2)                                    // len: iovecs
	}
	q.armWake()
	if err := q.r.enter(false); err != nil {
		return fmt.Errorf("registering queue %d: %w", q.id, err)
	}
	// A registration the kernel refused completes at once with its error.
	for _, c := range q.r.reap(nil) {
		if c.userData != wakeTag && c.res < 0 {
			return fmt.Errorf("registering queue %d: %w", q.id, unix.Errno(-c.res))
		}
	}
	return nil
}

// prepCmd fills sqe as a FUSE ring command for entry e.
func (q *queue) prepCmd(sqe []byte, e *entry, op uint32, commitID uint64) {
	sqe[0] = opURingCmd
	binary.LittleEndian.PutUint32(sqe[4:], uint32(q.cfg.FuseFd))
	binary.LittleEndian.PutUint32(sqe[sqeCmdOpOff:], op)
	binary.LittleEndian.PutUint64(sqe[32:], uint64(e.idx)) // user_data
	// struct fuse_uring_cmd_req: flags, commit_id, qid.
	binary.LittleEndian.PutUint64(sqe[sqeCmdOff+8:], commitID)
	binary.LittleEndian.PutUint16(sqe[sqeCmdOff+16:], uint16(q.id))
}

// armWake queues a read of the wake-up eventfd.
func (q *queue) armWake() {
	sqe := q.r.nextSQE()
	sqe[0] = opRead
	binary.LittleEndian.PutUint32(sqe[4:], uint32(q.wake))
	binary.LittleEndian.PutUint64(sqe[16:], uint64(uintptr(unsafe.Pointer(&q.wakeBuf[0]))))
	binary.LittleEndian.PutUint32(sqe[24:], 8)
	binary.LittleEndian.PutUint64(sqe[32:], wakeTag)
}

func (q *queue) loop() error {
	var cqes []cqe
	live := len(q.ents)
	for live > 0 {
		if err := q.r.enter(true); err != nil {
			return err
		}
		cqes = q.r.reap(cqes[:0])
		for _, c := range cqes {
			if c.userData == wakeTag {
				q.commitDone()
				q.armWake()
				continue
			}
			e := q.ents[c.userData]
			if c.res < 0 {
				// The connection is going (ENOTCONN, ECANCELED) or the entry was
				// refused: either way it carries no more requests.
				if !e.dead {
					e.dead = true
					live--
				}
				continue
			}
			if q.handOff(e) {
				go q.serveAside(e)
				continue
			}
			q.commit(e, q.serve(e))
		}
	}
	return nil
}

// handOff says whether a request may wait long for another one (an open for writing waits
// for the release of files of the same inode, which the kernel may queue behind it here) and
// is served by a goroutine of its own.
func (q *queue) handOff(e *entry) bool {
	h := e.header()
	if binary.LittleEndian.Uint32(h[inOutOff+4:]) != opcodeOpen {
		return false
	}
	return binary.LittleEndian.Uint32(h[opInOff:])&openFlagsWrite != 0
}

// serveAside serves a handed-off request and gives it back to the queue's thread, which
// alone submits to the ring.
func (q *queue) serveAside(e *entry) {
	n := q.serve(e)
	q.setPayloadSize(e, n)
	q.mu.Lock()
	q.done = append(q.done, e)
	q.mu.Unlock()
	var one [8]byte
	binary.LittleEndian.PutUint64(one[:], 1)
	unix.Write(q.wake, one[:])
}

// commitDone commits the handed-off requests that are answered.
func (q *queue) commitDone() {
	q.mu.Lock()
	done := q.done
	q.done = nil
	q.mu.Unlock()
	for _, e := range done {
		q.commitPrepared(e)
	}
}

// serve runs the handler on the request in e and leaves the reply in place; it returns the
// bytes of reply.
func (q *queue) serve(e *entry) int {
	h := e.header()
	inLen := int(binary.LittleEndian.Uint32(h[inOutOff:]))
	payloadSz := int(binary.LittleEndian.Uint32(h[payloadSzOff:]))
	opLen := inLen - inHeaderSize - payloadSz
	if opLen < 0 || opLen > entInOutOff-opInOff || payloadSz > len(e.payload()) {
		return q.errorReply(e, unix.EIO)
	}
	// The reply's header goes where the request's was, and everything after it into the
	// payload buffer: keep the unique id before the handler overwrites the header.
	unique := binary.LittleEndian.Uint64(h[inOutOff+8:])
	payload := e.payload()[:payloadSz]
	if payloadSz > 0 && binary.LittleEndian.Uint32(h[inOutOff+4:]) != opcodeWrite {
		// The reply is written into the payload buffer, some of it (a READ's data, an
		// attribute's value) while the request is served: keep the request's payload
		// apart. A WRITE's data is written to the file before any reply.
		if cap(e.scratch) < payloadSz {
			e.scratch = make([]byte, payloadSz)
		}
		payload = e.scratch[:payloadSz]
		copy(payload, e.payload())
	}
	in := [][]byte{h[inOutOff : inOutOff+inHeaderSize], h[opInOff : opInOff+opLen], payload}
	out := [][]byte{h[inOutOff : inOutOff+outHeaderSize], e.payload()}
	n := q.cfg.Handle(in, out)
	if n < outHeaderSize {
		binary.LittleEndian.PutUint64(h[inOutOff+8:], unique)
		return q.errorReply(e, unix.EIO)
	}
	return n
}

// errorReply writes a reply carrying only errno.
func (q *queue) errorReply(e *entry, errno unix.Errno) int {
	h := e.header()
	binary.LittleEndian.PutUint32(h[inOutOff:], outHeaderSize)
	binary.LittleEndian.PutUint32(h[inOutOff+4:], uint32(-int32(errno)))
	return outHeaderSize
}

func (q *queue) setPayloadSize(e *entry, n int) {
	binary.LittleEndian.PutUint32(e.header()[payloadSzOff:], uint32(n-outHeaderSize))
}

// commit answers the request in e with the n bytes of reply there and asks for the next.
func (q *queue) commit(e *entry, n int) {
	q.setPayloadSize(e, n)
	q.commitPrepared(e)
}

func (q *queue) commitPrepared(e *entry) {
	commitID := binary.LittleEndian.Uint64(e.header()[commitIDOff:])
	sqe := q.r.nextSQE()
	if sqe == nil {
		// Twice the depth plus the wake-up read: cannot be full.
		panic("io_uring submission ring full")
	}
	q.prepCmd(sqe, e, cmdCommitAndFetch, commitID)
}

func (q *queue) release() {
	if q.r != nil {
		q.r.close()
	}
	if q.wake > 0 {
		unix.Close(q.wake)
	}
	if q.wakeBuf != nil {
		unix.Munmap(q.wakeBuf)
	}
	for _, e := range q.ents {
		unix.Munmap(e.mem)
	}
}

// Probe reports whether this process can run the transport: an io_uring with 128-byte
// entries (a sysctl or a seccomp profile may forbid io_uring) and the list of CPUs.
func Probe() error {
	if _, err := possibleCPUs(); err != nil {
		return err
	}
	r, err := newRing(4, false)
	if err != nil {
		return err
	}
	r.close()
	return nil
}

// Refuse makes the kernel give up io_uring for the connection of fuseFd and go on with
// /dev/fuse: after INIT agreed to io_uring it holds every request until the queues are
// registered, or until a registration fails — this one does (no room for the headers).
func Refuse(fuseFd int) error {
	r, err := newRing(4, false)
	if err != nil {
		return err
	}
	defer r.close()
	mem, err := unix.Mmap(-1, 0, 4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return err
	}
	defer unix.Munmap(mem)
	iov := (*[2]unix.Iovec)(unsafe.Pointer(&mem[0]))
	iov[0].Base, iov[1].Base = &mem[64], &mem[64]
	q := &queue{cfg: Config{FuseFd: fuseFd}, r: r}
	sqe := r.nextSQE()
	q.prepCmd(sqe, &entry{}, cmdRegister, 0)
	binary.LittleEndian.PutUint64(sqe[16:], uint64(uintptr(unsafe.Pointer(iov))))
	binary.LittleEndian.PutUint32(sqe[24:], 2)
	if err := r.enter(true); err != nil {
		return err
	}
	for _, c := range r.reap(nil) {
		if c.res >= 0 {
			return errors.New("the kernel took a registration without room for the headers")
		}
	}
	return nil
}
