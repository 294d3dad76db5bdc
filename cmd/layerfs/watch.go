package main

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/layerfs/layerfs/unionfs"
	flag "github.com/spf13/pflag"
)

// eventDir is the private directory of the user's event sockets: /run/layerfs for root,
// $XDG_RUNTIME_DIR/layerfs, or $TMPDIR/layerfs-UID where no runtime directory is set (after
// su -, say). It is made mode 0700 if missing, and used only if it is a directory (not a
// link) owned by the user and closed to everyone else: a directory another user made first
// in a shared place would let them replace the socket or read the events. Root of a user
// namespace does not own /run/layerfs and takes the others, as a user does; server and
// watcher come to the same choice.
func eventDir(create bool) (string, error) {
	uid := os.Geteuid()
	var dirs []string
	if uid == 0 {
		dirs = append(dirs, "/run/layerfs")
	}
	if rt := os.Getenv("XDG_RUNTIME_DIR"); rt != "" && filepath.IsAbs(rt) {
		dirs = append(dirs, filepath.Join(rt, "layerfs"))
	} else {
		dirs = append(dirs, filepath.Join(os.TempDir(), fmt.Sprintf("layerfs-%d", uid)))
	}
	var errs []string
	for _, dir := range dirs {
		err := privateDir(dir, uid, create)
		if err == nil {
			return dir, nil
		}
		errs = append(errs, err.Error())
	}
	return "", errors.New(strings.Join(errs, "; "))
}

// privateDir checks that dir is a directory of uid's closed to others, making it if create.
func privateDir(dir string, uid int, create bool) error {
	if create {
		if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
	}
	var st unix.Stat_t
	if err := unix.Lstat(dir, &st); err != nil {
		return err
	}
	switch {
	case st.Mode&unix.S_IFMT != unix.S_IFDIR:
		return fmt.Errorf("%s is not a directory (a link?): not used for event sockets", dir)
	case int(st.Uid) != uid:
		return fmt.Errorf("%s belongs to uid %d, not to this user (%d): not used for event sockets", dir, st.Uid, uid)
	case st.Mode&0o077 != 0:
		return fmt.Errorf("%s is open to other users (mode %04o): not used for event sockets", dir, st.Mode&0o7777)
	}
	return nil
}

// eventSocket is where the server of mountpoint mnt publishes its events: one socket per
// mountpoint, in the user's private event directory.
func eventSocket(mnt string, create bool) (string, error) {
	dir, err := eventDir(create)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256([]byte(mnt))
	return filepath.Join(dir, hex.EncodeToString(sum[:8])+".sock"), nil
}

// hello is what a server sends a watcher first, once events published reach it: the kind
// "hello" and the stack it serves (inspect --mount draws it).
type hello struct {
	Kind   string   `json:"kind"`
	Lowers []string `json:"lowers"`
	Upper  string   `json:"upper,omitempty"`
}

// readHello reads a server's greeting.
func readHello(sc *bufio.Scanner) (hello, bool) {
	var h hello
	if !sc.Scan() || json.Unmarshal(sc.Bytes(), &h) != nil || h.Kind != "hello" {
		return h, false
	}
	return h, true
}

// events fans the server's events out to the watchers connected to its socket. A watcher
// that does not keep up loses events rather than slowing the filesystem down.
type events struct {
	hello []byte // the first line every watcher gets
	ln    net.Listener
	path  string
	mu    sync.Mutex
	conns map[chan []byte]bool
}

// listenEvents opens the event socket of mnt; a stale socket file from a dead server is
// replaced.
func listenEvents(mnt string, cfg unionfs.Config) (*events, error) {
	path, err := eventSocket(mnt, true)
	if err != nil {
		return nil, err
	}
	os.Remove(path)
	removeStaleSockets(filepath.Dir(path))
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	line, _ := json.Marshal(hello{Kind: "hello", Lowers: cfg.Lowers, Upper: cfg.Upper})
	e := &events{hello: append(line, '\n'), ln: ln, path: path, conns: map[chan []byte]bool{}}
	go e.accept()
	return e, nil
}

// removeStaleSockets removes the sockets of dir that no server listens on any more: a server
// that was killed could not remove its own, and mountpoints of temporary directories are not
// used again.
func removeStaleSockets(dir string) {
	names, err := filepath.Glob(filepath.Join(dir, "*.sock"))
	if err != nil {
		return
	}
	for _, p := range names {
		if fi, err := os.Lstat(p); err != nil || fi.Mode()&fs.ModeSocket == 0 {
			continue
		}
		c, err := net.DialTimeout("unix", p, 100*time.Millisecond)
		if err == nil {
			c.Close()
			continue
		}
		if errors.Is(err, syscall.ECONNREFUSED) {
			os.Remove(p)
		}
	}
}

func (e *events) accept() {
	for {
		c, err := e.ln.Accept()
		if err != nil {
			return
		}
		ch := make(chan []byte, 256)
		// The first line tells the watcher that it is registered: every event from then on
		// reaches it.
		ch <- e.hello
		e.mu.Lock()
		e.conns[ch] = true
		e.mu.Unlock()
		go func() {
			defer c.Close()
			for line := range ch {
				if _, err := c.Write(line); err != nil {
					e.drop(ch)
					return
				}
			}
		}()
	}
}

func (e *events) drop(ch chan []byte) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.conns[ch] {
		delete(e.conns, ch)
		close(ch)
	}
}

// publish sends ev to every watcher.
func (e *events) publish(ev unionfs.Event) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.conns) == 0 {
		return
	}
	line, _ := json.Marshal(ev)
	line = append(line, '\n')
	for ch := range e.conns {
		select {
		case ch <- line:
		default:
		}
	}
}

// close stops publishing and removes the socket; watchers see their stream end.
func (e *events) close() {
	e.ln.Close()
	os.Remove(e.path)
	e.mu.Lock()
	defer e.mu.Unlock()
	for ch := range e.conns {
		delete(e.conns, ch)
		close(ch)
	}
}

// traceTo makes cfg report its events to e, and as lines to w if w is not nil.
func traceTo(cfg *unionfs.Config, e *events, w io.Writer) {
	var mu sync.Mutex
	cfg.Trace = func(ev unionfs.Event) {
		if e != nil {
			e.publish(ev)
		}
		if w != nil && ev.Kind != "error" {
			// Problems go to the problem log (logdest.go), not again here.
			mu.Lock()
			fmt.Fprintf(w, "layerfs: %s\n", ev)
			mu.Unlock()
		}
	}
}

const watchUsage = `Usage:
  layerfs watch [--json] MOUNTPOINT

Prints, as they happen, the overlay actions of the layerfs mount at MOUNTPOINT: copy-ups
(layer, bytes, time), whiteouts, opaque directories, redirects. It ends when the mount does.

Flags:
`

func runWatch(args []string, stdout, stderr io.Writer) int {
	flags := flag.NewFlagSet("layerfs watch", flag.ContinueOnError)
	flags.SetOutput(stderr)
	asJSON := flags.Bool("json", false, "print each event as a JSON object")
	flags.Usage = func() {
		fmt.Fprint(stderr, watchUsage)
		printFlags(stderr, flags)
	}
	if err := flags.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		fmt.Fprintf(stderr, "layerfs watch: %v\n", err)
		return 2
	}
	if len(flags.Args()) != 1 {
		fmt.Fprintln(stderr, "layerfs watch: one mountpoint expected (see layerfs watch --help)")
		return 2
	}
	mnt, err := filepath.Abs(flags.Args()[0])
	if err == nil {
		mnt, err = filepath.EvalSymlinks(mnt)
	}
	if err != nil {
		fmt.Fprintf(stderr, "layerfs watch: %v\n", err)
		return 1
	}
	c, err := dialEvents(mnt)
	if err != nil {
		fmt.Fprintf(stderr, "layerfs watch: no layerfs server publishes events of %s (%v)\n", mnt, err)
		return 1
	}
	return watchFrom(c, mnt, *asJSON, stdout, stderr)
}

// dialEvents connects to the event socket of the server of mnt.
func dialEvents(mnt string) (net.Conn, error) {
	sock, err := eventSocket(mnt, false)
	if err != nil {
		return nil, err
	}
	return net.Dial("unix", sock)
}

// watchFrom prints the events read from c until the server closes it.
func watchFrom(c net.Conn, mnt string, asJSON bool, stdout, stderr io.Writer) int {
	defer c.Close()
	sc := bufio.NewScanner(c)
	if _, ok := readHello(sc); !ok {
		fmt.Fprintf(stderr, "layerfs watch: the server of %s did not answer as a layerfs server\n", mnt)
		return 1
	}
	// Said only now: whatever happens on the mount from here on is shown.
	fmt.Fprintf(stderr, "layerfs watch: watching %s\n", mnt)
	for sc.Scan() {
		if asJSON {
			fmt.Fprintln(stdout, sc.Text())
			continue
		}
		var ev unionfs.Event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			continue
		}
		fmt.Fprintf(stdout, "%s %s\n", ev.Time.Format("15:04:05.000"), ev)
	}
	return 0
}
