package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// syslogPath is the system log's socket.
const syslogPath = "/dev/log"

// openProblemLog opens where the server logs the problems a person must act on (-o log=):
// the system log by default for a server in the background, as fuse-overlayfs logs; the
// terminal in the foreground; or a file, appended to. Every line is one problem, never a
// per-operation trace (that is --debug).
func openProblemLog(dest string, foreground bool, stderr io.Writer) (io.Writer, func(), error) {
	if dest == "" {
		dest = "syslog"
		if foreground {
			dest = "stderr"
		}
	}
	switch dest {
	case "syslog":
		return &syslogWriter{path: syslogPath, tag: "layerfs"}, func() {}, nil
	case "stderr":
		return &prefixWriter{w: &stopOnError{w: stderr}, prefix: func() string { return "layerfs: " }}, func() {}, nil
	}
	abs, err := filepath.Abs(dest)
	if err != nil {
		return nil, nil, fmt.Errorf("option log=%s: %v", dest, err)
	}
	f, err := os.OpenFile(abs, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return nil, nil, fmt.Errorf("option log=%s: cannot open the log file: %v", dest, err)
	}
	pid := os.Getpid()
	w := &prefixWriter{w: &stopOnError{w: f}, prefix: func() string {
		return fmt.Sprintf("%s layerfs[%d]: ", time.Now().Format(time.RFC3339), pid)
	}}
	return w, func() { f.Close() }, nil
}

// prefixWriter writes each write as one line with a prefix; writes are whole lines.
type prefixWriter struct {
	mu     sync.Mutex
	w      io.Writer
	prefix func() string
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	line := strings.TrimRight(string(b), "\n")
	io.WriteString(p.w, p.prefix()+line+"\n")
	return len(b), nil
}

// syslogWriter sends each write to the system log as one message (facility daemon, priority
// err, RFC 3164 form, as syslog(3) sends it). It connects at the first message and again
// after a failure, so a log daemon started after the mount is found; with no log daemon the
// message is dropped — a server never stops or slows down for its log. log/syslog would do
// the same but gives up for good when /dev/log is missing at start.
type syslogWriter struct {
	path string
	tag  string
	mu   sync.Mutex
	conn net.Conn
}

// priority is LOG_DAEMON|LOG_ERR.
const priority = 3<<3 | 3

func (s *syslogWriter) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	msg := fmt.Sprintf("<%d>%s %s[%d]: %s", priority, time.Now().Format(time.Stamp), s.tag, os.Getpid(), strings.TrimRight(string(b), "\n"))
	for try := 0; try < 2; try++ {
		if s.conn == nil {
			c, err := net.Dial("unixgram", s.path)
			if err != nil {
				return len(b), nil
			}
			s.conn = c
		}
		if _, err := s.conn.Write([]byte(msg)); err == nil {
			return len(b), nil
		}
		s.conn.Close()
		s.conn = nil
	}
	return len(b), nil
}
