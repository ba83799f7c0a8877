package fault

import (
	"fmt"
	"slices"
	"time"

	"go.uber.org/zap"

	"tsnsim/chip"
	"tsnsim/chip/clock"
)

// ChipControl is what the injector drives on a chip. *chip.Chip
// implements it.
type ChipControl interface {
	// SetFIFOLimits caps the FIFO capacities (chip.NoFIFOLimit: no cap).
	SetFIFOLimits(hostFrames, rxWords, rxMeta int)
	// Clock is the chip's SYSCOUNT, to step and drift.
	Clock() *clock.Clock
}

// chipState is an attached chip and what the injector has applied to it.
type chipState struct {
	c         ChipControl
	baseDrift float64 // the drift when attached, restored when no drift fault is active
	caps      [3]int  // FIFO caps applied
	drift     float64 // drift applied
}

// AttachChip lets the chip faults of node act on c. Chip faults are
// driven by timers: at a fault's Start the injector applies it (caps the
// FIFOs, sets the drift, steps the clock), at Start+Duration it restores
// the chip. Faults already active when the chip is attached apply at
// once (a clock step that has already happened does not).
func (inj *Injector) AttachChip(node string, c ChipControl) error {
	inj.mu.Lock()
	defer inj.mu.Unlock()
	if inj.closed {
		return fmt.Errorf("fault: injector closed")
	}
	if _, ok := inj.chips[node]; ok {
		return fmt.Errorf("fault: a chip is already attached for node %q", node)
	}
	d := c.Clock().DriftPPM()
	inj.chips[node] = &chipState{c: c, baseDrift: d, drift: d,
		caps: [3]int{chip.NoFIFOLimit, chip.NoFIFOLimit, chip.NoFIFOLimit}}
	now := inj.now()
	for _, e := range inj.faults {
		if e.active && e.applies(node) {
			inj.record(e, node, now)
		}
	}
	inj.reconcileChips()
	return nil
}

// armChip starts chip fault e now if its Start has come, else at Start,
// and ends it at Start+Duration. Called with mu held.
func (inj *Injector) armChip(e *entry, now time.Duration) {
	if now >= e.spec.Start {
		inj.startChip(e, now)
	} else {
		e.timers = append(e.timers, time.AfterFunc(e.spec.Start-now, func() {
			inj.mu.Lock()
			defer inj.mu.Unlock()
			if !e.removed && !e.ended {
				inj.startChip(e, inj.now())
			}
		}))
	}
	if e.k.shape == window && e.spec.Duration > 0 {
		e.timers = append(e.timers, time.AfterFunc(e.spec.Start+e.spec.Duration-now, func() {
			inj.mu.Lock()
			defer inj.mu.Unlock()
			if !e.removed {
				inj.endChip(e)
			}
		}))
	}
}

// startChip applies chip fault e to the attached chips it targets,
// counting one injection per chip. Called with mu held.
func (inj *Injector) startChip(e *entry, now time.Duration) {
	for _, node := range inj.chipNodes() {
		if !e.applies(node) {
			continue
		}
		if e.k.shape == instant { // clock-step
			inj.chips[node].c.Clock().Step(e.spec.Step)
			inj.record(e, node, now, zap.Duration("step", e.spec.Step))
			continue
		}
		inj.record(e, node, now)
	}
	if e.k.shape == instant {
		e.ended = true
		return
	}
	e.active = true
	inj.reconcileChips()
}

// endChip ends window fault e and restores the chips. Called with mu held.
func (inj *Injector) endChip(e *entry) {
	e.active, e.ended = false, true
	inj.log.Debug("fault ended", zap.Int("id", e.id), zap.Stringer("spec", e.spec), zap.Duration("at", inj.now()))
	inj.reconcileChips()
}

func (inj *Injector) chipNodes() []string {
	nodes := make([]string, 0, len(inj.chips))
	for n := range inj.chips {
		nodes = append(nodes, n)
	}
	slices.Sort(nodes)
	return nodes
}

// reconcileChips sets every attached chip to what its active faults
// want: FIFO caps are the smallest of the active caps (host-fifo-full
// caps the host FIFO at 0), the drift is that of the latest-added active
// clock-drift fault, or the chip's own; without active faults the chip
// is restored. Called with mu held.
func (inj *Injector) reconcileChips() {
	for _, node := range inj.chipNodes() {
		st := inj.chips[node]
		caps := [3]int{chip.NoFIFOLimit, chip.NoFIFOLimit, chip.NoFIFOLimit}
		drift, driftID := st.baseDrift, 0
		for _, e := range inj.faults {
			if e.spec.Layer != LayerChip || !e.active || !e.applies(node) {
				continue
			}
			switch e.spec.Kind {
			case "fifo-limit":
				for i, v := range e.spec.fifoCaps() {
					caps[i] = capMin(caps[i], v)
				}
			case "host-fifo-full":
				caps[0] = 0
			case "clock-drift":
				if e.id > driftID {
					drift, driftID = e.spec.PPM, e.id
				}
			}
		}
		if caps != st.caps {
			st.c.SetFIFOLimits(caps[0], caps[1], caps[2])
			st.caps = caps
		}
		if drift != st.drift {
			st.c.Clock().SetDriftPPM(drift)
			st.drift = drift
		}
	}
}

// capMin combines two FIFO caps, NoFIFOLimit (negative) being no cap.
func capMin(a, b int) int {
	switch {
	case a < 0:
		return b
	case b < 0:
		return a
	}
	return min(a, b)
}

var _ ChipControl = (*chip.Chip)(nil)
