package main

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"

	"github.com/layerfs/layerfs/unionfs"
	flag "github.com/spf13/pflag"
)

// eventSocket is where the server of mountpoint mnt publishes its events: one socket per
// mountpoint, below the runtime directory.
func eventSocket(mnt string) string {
	dir := "/run"
	if os.Geteuid() != 0 {
		dir = os.Getenv("XDG_RUNTIME_DIR")
		if dir == "" {
			dir = os.TempDir()
		}
	}
	sum := sha256.Sum256([]byte(mnt))
	return filepath.Join(dir, "layerfs", hex.EncodeToString(sum[:8])+".sock")
}

// events fans the server's events out to the watchers connected to its socket. A watcher
// that does not keep up loses events rather than slowing the filesystem down.
type events struct {
	ln    net.Listener
	path  string
	mu    sync.Mutex
	conns map[chan []byte]bool
}

// listenEvents opens the event socket of mnt; a stale socket file from a dead server is
// replaced.
func listenEvents(mnt string) (*events, error) {
	path := eventSocket(mnt)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	e := &events{ln: ln, path: path, conns: map[chan []byte]bool{}}
	go e.accept()
	return e, nil
}

func (e *events) accept() {
	for {
		c, err := e.ln.Accept()
		if err != nil {
			return
		}
		ch := make(chan []byte, 256)
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
		if w != nil {
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
		flags.PrintDefaults()
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
	c, err := net.Dial("unix", eventSocket(mnt))
	if err != nil {
		fmt.Fprintf(stderr, "layerfs watch: no layerfs server serves %s\n", mnt)
		return 1
	}
	defer c.Close()
	fmt.Fprintf(stderr, "layerfs watch: watching %s\n", mnt)
	sc := bufio.NewScanner(c)
	for sc.Scan() {
		if *asJSON {
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
