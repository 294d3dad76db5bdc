package main

import (
	"io"
	"sync/atomic"
)

// stopOnError is a log destination that goes quiet at its first failed write: a server must
// not die, nor slow down, because whoever read its log went away (a pipe closed by `head`, a
// terminal gone). With SIGPIPE ignored (catchSignals) such a write fails with EPIPE instead
// of killing the server.
type stopOnError struct {
	w      io.Writer
	failed atomic.Bool
}

// Write writes to the destination until a write fails, then discards everything; it never
// reports an error, so loggers go on.
func (s *stopOnError) Write(p []byte) (int, error) {
	if s.failed.Load() {
		return len(p), nil
	}
	if _, err := s.w.Write(p); err != nil {
		s.failed.Store(true)
	}
	return len(p), nil
}
