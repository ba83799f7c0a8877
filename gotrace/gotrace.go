// Package gotrace reads the Go execution trace of a run (tsnsim run
// --go-trace) and says why the SPI buses' waits ended late: for each wait
// the bus logged (spibridge.WaitLogCategory) that woke more than a
// threshold after its end, what the waiting goroutine was doing in the
// longest stretch without an event of its own before it woke: blocked
// on its timer (the precise timer's timerfd, read through the
// netpoller), woken but not yet running, yielded in the polled tail
// while other goroutines ran on its processor, yielded or running with
// its thread off the CPU, and so on. tsnsim trace FILE prints the result.
package gotrace

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"golang.org/x/exp/trace"

	"tsnsim/spibridge"
)

// DefaultThreshold is how late a wait must end to be explained.
const DefaultThreshold = 40 * time.Microsecond

// Causes of a late wait, by the waiting goroutine's state in the longest
// stretch without an event of its own before it woke.
const (
	// CauseTimer: blocked in the netpoller (the precise timer's timerfd)
	// and woken late: typically a CPU that went idle and woke slowly.
	CauseTimer = "blocked on its timer (netpoller), woken late"
	// CauseYieldedOthers: runnable after yielding (in the polled tail)
	// or being preempted, while other goroutines ran on the processor it
	// left.
	CauseYieldedOthers = "yielded, other goroutines ran on its processor"
	// CauseYieldedOff: runnable after yielding or being preempted, and
	// nothing started on its processor: the thread was off the CPU.
	CauseYieldedOff = "yielded, its thread off the CPU"
	// CauseWoken: woken (by its timer or another goroutine) and runnable,
	// but not yet running: waiting for a processor or a thread.
	CauseWoken = "woken, waiting to run"
	// CauseRunningOff: running (polling the clock, or working) with no
	// event for the stretch: the thread was off the CPU, or the
	// goroutine ran that long.
	CauseRunningOff = "running or polling, its thread off the CPU"
	// CauseSyscall: in a system call.
	CauseSyscall = "in a system call"
	// CauseUnknown: the trace has no state for the goroutine then.
	CauseUnknown = "unknown (no state in the trace)"
)

// guard widens the stretch looked at before a wait's start.
const guard = 10 * time.Microsecond

// Report is what a Go execution trace says about the SPI buses' waits.
type Report struct {
	Waits     int           `json:"waits"`     // waits the buses logged
	Threshold time.Duration `json:"threshold"` // a wait is late past this
	Late      int           `json:"late"`      // waits that ended later than Threshold
	Causes    []CauseCount  `json:"causes"`    // the late ones by cause, most first
	// Incomplete says why the trace could not be read to its end (a
	// file cut short: its process was killed); the report covers the
	// events read before that. Empty for a whole trace.
	Incomplete string `json:"incomplete,omitempty"`
}

// CauseCount is how many late waits had one cause, and how late they
// ended.
type CauseCount struct {
	Cause   string        `json:"cause"`
	Waits   int           `json:"waits"`
	LateP50 time.Duration `json:"late_p50"`
	LateMax time.Duration `json:"late_max"`
}

// transition is a goroutine's state change.
type transition struct {
	at       trace.Time
	from, to trace.GoState
	reason   string
	proc     trace.ProcID // where it happened
}

// start is a goroutine starting to run on a processor.
type start struct {
	at trace.Time
	g  trace.GoID
}

// wait is one logged wait of a bus.
type wait struct {
	at        trace.Time // when the goroutine logged it, after waking
	g         trace.GoID
	late, dur time.Duration
}

// history is what Analyse keeps of a trace.
type history struct {
	goroutines map[trace.GoID][]transition // in time order
	starts     map[trace.ProcID][]start    // in time order
	waits      []wait
	cut        error // why reading stopped before the end, if it did
}

// Analyse reads a Go execution trace and explains the waits that ended
// more than threshold late. A trace cut short (its process was killed
// while tracing) is reported as far as it could be read, with
// Report.Incomplete saying so; one that yields no goroutine event and no
// wait before it fails is an error.
func Analyse(r io.Reader, threshold time.Duration) (Report, error) {
	h, err := read(r)
	if err != nil {
		return Report{}, err
	}
	rep := h.report(threshold)
	if h.cut != nil {
		rep.Incomplete = h.cut.Error()
	}
	return rep, nil
}

func read(r io.Reader) (*history, error) {
	tr, err := trace.NewReader(r)
	if err != nil {
		return nil, fmt.Errorf("gotrace: not a Go execution trace: %w", err)
	}
	h := &history{goroutines: map[trace.GoID][]transition{}, starts: map[trace.ProcID][]start{}}
	for {
		ev, err := tr.ReadEvent()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			if len(h.goroutines) == 0 && len(h.waits) == 0 {
				return nil, fmt.Errorf("gotrace: %w", err)
			}
			h.cut = err
			break
		}
		switch ev.Kind() {
		case trace.EventStateTransition:
			st := ev.StateTransition()
			if st.Resource.Kind != trace.ResourceGoroutine {
				continue
			}
			g := st.Resource.Goroutine()
			from, to := st.Goroutine()
			h.goroutines[g] = append(h.goroutines[g], transition{at: ev.Time(), from: from, to: to, reason: st.Reason, proc: ev.Proc()})
			if to == trace.GoRunning && ev.Proc() != trace.NoProc {
				h.starts[ev.Proc()] = append(h.starts[ev.Proc()], start{at: ev.Time(), g: g})
			}
		case trace.EventLog:
			l := ev.Log()
			if l.Category != spibridge.WaitLogCategory {
				continue
			}
			var late, dur int64
			if _, err := fmt.Sscanf(l.Message, "late_ns=%d wait_ns=%d", &late, &dur); err != nil {
				return nil, fmt.Errorf("gotrace: %s event %q: %w", l.Category, l.Message, err)
			}
			h.waits = append(h.waits, wait{at: ev.Time(), g: ev.Goroutine(), late: time.Duration(late), dur: time.Duration(dur)})
		}
	}
	return h, nil
}

// report classifies the late waits.
func (h *history) report(threshold time.Duration) Report {
	rep := Report{Waits: len(h.waits), Threshold: threshold}
	byCause := map[string][]time.Duration{}
	for _, w := range h.waits {
		if w.late <= threshold {
			continue
		}
		rep.Late++
		c := h.cause(w)
		byCause[c] = append(byCause[c], w.late)
	}
	for c, lates := range byCause {
		slices.Sort(lates)
		rep.Causes = append(rep.Causes, CauseCount{Cause: c, Waits: len(lates), LateP50: lates[(len(lates)-1)/2], LateMax: lates[len(lates)-1]})
	}
	slices.SortFunc(rep.Causes, func(a, b CauseCount) int { return cmp.Or(cmp.Compare(b.Waits, a.Waits), cmp.Compare(a.Cause, b.Cause)) })
	return rep
}

// cause says what w's goroutine was doing in the longest stretch without
// an event of its own between the wait's start (less guard) and its
// wake-up.
func (h *history) cause(w wait) string {
	trs := h.goroutines[w.g]
	from := w.at - trace.Time(w.late+w.dur+guard)
	i, _ := slices.BinarySearchFunc(trs, from, func(t transition, at trace.Time) int { return cmp.Compare(t.at, at) })
	gapStart, gapEnd, prev := from, from, from
	for ; i < len(trs) && trs[i].at <= w.at; i++ {
		if trs[i].at-prev > gapEnd-gapStart {
			gapStart, gapEnd = prev, trs[i].at
		}
		prev = trs[i].at
	}
	if w.at-prev > gapEnd-gapStart {
		gapStart, gapEnd = prev, w.at
	}
	// The state the goroutine was in when the stretch began.
	j, found := slices.BinarySearchFunc(trs, gapStart, func(t transition, at trace.Time) int { return cmp.Compare(t.at, at) })
	if found {
		for j+1 < len(trs) && trs[j+1].at == gapStart {
			j++
		}
	} else {
		j--
	}
	if j < 0 {
		return CauseUnknown
	}
	t := trs[j]
	switch t.to {
	case trace.GoWaiting:
		if t.reason == "network" {
			return CauseTimer
		}
		return fmt.Sprintf("blocked (%s), woken late", t.reason)
	case trace.GoRunnable:
		if t.from != trace.GoRunning {
			return CauseWoken
		}
		if h.othersRan(t.proc, w.g, gapStart, gapEnd) {
			return CauseYieldedOthers
		}
		return CauseYieldedOff
	case trace.GoRunning:
		return CauseRunningOff
	case trace.GoSyscall:
		return CauseSyscall
	}
	return CauseUnknown
}

// othersRan reports whether a goroutine other than g started running on
// proc between from and to.
func (h *history) othersRan(proc trace.ProcID, g trace.GoID, from, to trace.Time) bool {
	s := h.starts[proc]
	i, _ := slices.BinarySearchFunc(s, from, func(x start, at trace.Time) int { return cmp.Compare(x.at, at) })
	for ; i < len(s) && s[i].at <= to; i++ {
		if s[i].g != g {
			return true
		}
	}
	return false
}
