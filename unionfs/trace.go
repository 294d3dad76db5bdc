package unionfs

import (
	"fmt"
	"time"
)

// Event is one overlay action the mount takes on the layers, for people watching it happen.
type Event struct {
	Time time.Time `json:"time"`
	// Kind is "copy-up", "link-up" (another name of a copied-up hard link), "whiteout",
	// "opaque", "redirect", or "error" (a problem a person must act on; Detail says it).
	Kind string `json:"kind"`
	// Path is the merged path the action concerns, from the mount's root ("/etc/passwd");
	// empty for a problem of the mount as a whole.
	Path string `json:"path"`
	// Layer is the layer copied from (copy-up) or hidden below (whiteout), -1 if none.
	Layer    int           `json:"layer"`
	Bytes    int64         `json:"bytes,omitempty"`
	Duration time.Duration `json:"duration_ns,omitempty"`
	// Detail says more in words (the redirect target, the layer directory).
	Detail string `json:"detail,omitempty"`
}

// String is the event as one human-readable line.
func (e Event) String() string {
	p := e.Path
	switch e.Kind {
	case "copy-up":
		return fmt.Sprintf("copy-up of %s from layer %d (%d bytes, %s)", p, e.Layer, e.Bytes, e.Duration.Round(time.Microsecond))
	case "link-up":
		return fmt.Sprintf("link-up of %s: another name of a copied-up hard link", p)
	case "whiteout":
		return fmt.Sprintf("whiteout created for %s (hides layer %d)", p, e.Layer)
	case "opaque":
		return fmt.Sprintf("directory %s made opaque", p)
	case "redirect":
		return fmt.Sprintf("directory %s redirected to its lower parts at %s", p, e.Detail)
	case "error":
		return "error: " + e.Detail
	}
	return e.Kind + " " + p
}

// trace reports an event to the configured hook, if any.
func (u *unionFS) trace(e Event) {
	if u.cfg.Trace == nil {
		return
	}
	e.Time = time.Now()
	if e.Path != "" || e.Kind != "error" {
		// Inside, paths are relative to the layers' roots; people read them from the mount's.
		e.Path = "/" + e.Path
	}
	u.cfg.Trace(e)
}
