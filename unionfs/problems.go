package unionfs

import (
	"errors"
	"fmt"
	"sync"
	"syscall"
	"time"

	"github.com/layerfs/layerfs/unionfs/workdir"
	"golang.org/x/sys/unix"
)

// Problems are what a person must act on and the caller sees only as an errno: a copy-up that
// failed and why, an I/O error or a full disk in a layer, a layer or the work directory removed
// under the mount, a backing file the kernel refused. They go to Config.Log (syslog or a file,
// chosen by the command), to the debug log, and to watchers as "error" events; nothing else is
// logged without --debug.

// problemBurst and problemEvery bound how much a storm of failures (a full disk under a build)
// writes: problemBurst lines at once, then one every problemEvery, with a count of those left
// out.
const (
	problemBurst = 20
	problemEvery = time.Second
)

// problemLog is the rate limit of the problems reported; the zero value is ready.
type problemLog struct {
	mu      sync.Mutex
	tokens  int
	last    time.Time
	dropped int
	// gone marks the layers (by index, the work directory at len(layers)) already reported
	// removed, so that each is said once.
	gone sync.Map
}

// allow reports whether one more problem may be written now, and how many were left out
// since the last one written.
func (p *problemLog) allow(now time.Time) (bool, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.last.IsZero() {
		p.tokens, p.last = problemBurst, now
	}
	if n := int(now.Sub(p.last) / problemEvery); n > 0 {
		p.tokens = min(problemBurst, p.tokens+n)
		p.last = p.last.Add(time.Duration(n) * problemEvery)
	}
	if p.tokens == 0 {
		p.dropped++
		return false, 0
	}
	p.tokens--
	dropped := p.dropped
	p.dropped = 0
	return true, dropped
}

// problem reports a problem about the merged path (empty for the mount as a whole).
func (u *unionFS) problem(path, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	now := time.Now()
	ok, dropped := u.problems.allow(now)
	if !ok {
		return
	}
	if dropped > 0 {
		msg += fmt.Sprintf(" (%d more problems not logged)", dropped)
	}
	if u.cfg.Log != nil {
		fmt.Fprintln(u.cfg.Log, msg)
	}
	if u.cfg.DebugLog != nil && u.cfg.DebugLog != u.cfg.Log {
		fmt.Fprintf(u.cfg.DebugLog, "layerfs: %s\n", msg)
	}
	u.trace(Event{Kind: "error", Path: path, Layer: -1, Detail: msg})
}

// logf reports a problem of the mount as a whole.
func (u *unionFS) logf(format string, args ...any) { u.problem("", format, args...) }

// failed reports what operation op on path met, when it is something a person must act on
// rather than an answer the caller expects (EEXIST, EACCES, ENOTEMPTY …), and returns it as
// an errno. ENOENT is such an answer too, unless a layer or the work directory is gone.
func (u *unionFS) failed(op, path string, err error) syscall.Errno {
	errno := toErrno(err)
	switch errno {
	case syscall.EIO, syscall.ENOSPC, syscall.EDQUOT, syscall.EUCLEAN, syscall.ESTALE,
		syscall.ENOTCONN, syscall.EROFS, syscall.EMFILE, syscall.ENFILE, syscall.ENOMEM:
		u.problem(path, "%s of /%s failed: %v", op, path, err)
		u.checkLayers()
	case syscall.ENOENT:
		u.checkLayers()
	}
	return errno
}

// copyFailed reports a copy-up of path from layer that failed, whatever the cause: the
// operation that needed it fails with an errno that does not say why.
func (u *unionFS) copyFailed(path string, layer int, err error) syscall.Errno {
	u.problem(path, "copy-up of /%s from layer %d (%s) failed: %v", path, layer, u.Layers[layer].Path, err)
	u.checkLayers()
	return toErrno(err)
}

// checkLayers reports, once each, layers and the work directory that have been removed while
// mounted: every operation that needs them fails from then on, and nothing else would say why.
func (u *unionFS) checkLayers() {
	for _, l := range u.Layers {
		if removed(l.FD) {
			if _, said := u.problems.gone.LoadOrStore(l.Index, true); !said {
				u.problem("", "layer %s was removed while mounted: what it held is gone from the mount", l.Path)
			}
		}
	}
	if u.work.FD >= 0 && removed(u.work.FD) {
		if _, said := u.problems.gone.LoadOrStore(len(u.Layers), true); !said {
			u.problem("", "work directory %s/%s was removed while mounted: copy-ups, whiteouts and new directories fail until the mount is made again", u.cfg.Work, workdir.Name)
		}
	}
}

// removed reports whether the directory open at fd has been removed (no links left).
func removed(fd int) bool {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return errors.Is(err, unix.ESTALE) || errors.Is(err, unix.EIO)
	}
	return st.Nlink == 0
}
