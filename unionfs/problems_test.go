package unionfs

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/layerfs/layerfs/unionfs/workdir"
)

// TestProblemRateLimit: a storm writes problemBurst lines, then one a second, and the next
// line written says how many were left out.
func TestProblemRateLimit(t *testing.T) {
	var p problemLog
	now := time.Unix(1000, 0)
	for i := 0; i < problemBurst; i++ {
		if ok, _ := p.allow(now); !ok {
			t.Fatalf("problem %d of a burst refused", i)
		}
	}
	for i := 0; i < 5; i++ {
		if ok, _ := p.allow(now.Add(time.Duration(i) * time.Millisecond)); ok {
			t.Fatalf("problem %d past the burst allowed", i)
		}
	}
	ok, dropped := p.allow(now.Add(problemEvery))
	if !ok || dropped != 5 {
		t.Errorf("a second later: allowed %v, dropped %d; want true, 5", ok, dropped)
	}
	if ok, _ := p.allow(now.Add(problemEvery)); ok {
		t.Error("two problems allowed in one refill")
	}
}

// TestProblemRouting: a problem reaches the log, the debug log and the trace hook.
func TestProblemRouting(t *testing.T) {
	var log, debug bytes.Buffer
	var events []Event
	u := &unionFS{cfg: Config{Log: &log, DebugLog: &debug, Trace: func(e Event) { events = append(events, e) }}, work: workdir.Dir{FD: -1}}
	u.problem("d/f", "copy-up of /%s failed: %v", "d/f", "no space left on device")
	want := "copy-up of /d/f failed: no space left on device"
	if log.String() != want+"\n" {
		t.Errorf("log %q", log.String())
	}
	if !strings.Contains(debug.String(), want) {
		t.Errorf("debug log %q", debug.String())
	}
	if len(events) != 1 || events[0].Kind != "error" || events[0].Path != "/d/f" || events[0].Detail != want {
		t.Errorf("events %+v", events)
	}
	if s := events[0].String(); s != "error: "+want {
		t.Errorf("event line %q", s)
	}
}
