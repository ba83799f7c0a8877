package driver

import (
	"context"
	"time"

	"go.uber.org/zap"

	"tsnsim/chip/proto"
)

// worker is the state of the one SPI thread of the vendor driver.
type worker struct {
	d   *Driver
	ctx context.Context
	bo  *backoff

	meta, metaMISO, frameMOSI []byte
	scratch                   []byte // TX MISO buffer
	polled                    bool   // draining because a poll found frames
	rxTicks                   uint64 // rx_metadata timestamp of the entry being read
	rxStamped                 bool   // rxTicks belongs to the frame being read
}

// worker is the SPI thread. Each round it writes one queued TX frame,
// resynchronises RX if the ledger asks for it, then reads one RX metadata
// entry and its frame, so TX and RX interleave fairly. A failed transfer
// costs a backoff. When idle it sleeps until an interrupt edge, a
// transmit or the poll ticker; the ticker also runs while busy, so frames
// behind a lost edge wait at most one PollInterval plus the drain.
func (d *Driver) worker(ctx context.Context, done chan struct{}) {
	defer close(done)
	d.log.Debug("SPI worker started")
	defer d.log.Debug("SPI worker stopped")
	w := &worker{d: d, ctx: ctx, bo: newBackoff(),
		meta: proto.RxMetaRead(), metaMISO: make([]byte, proto.RxMetaReadLen),
		frameMOSI: proto.RxFrameRead(proto.MaxWireLen)}
	l := &d.rxl
	rxPending := true // drain whatever is already queued at open
	idleChecked := false
	irq := d.tr.Interrupt()
	tick := time.NewTicker(d.cfg.PollInterval)
	defer tick.Stop()
	for ctx.Err() == nil {
		failed := false
		switch gotIRQ, gotTick := ready(irq), ready(tick.C); {
		case gotIRQ:
			rxPending, w.polled = true, false
		case gotTick && !rxPending:
			rxPending, failed = w.pollOnce()
			idleChecked = false
		}
		if !failed && !w.tsnRound() {
			failed = true
		}
		progress := false
		if slot, ok := d.takeTx(); ok {
			w.sendTx(slot)
			progress = true
		}
		if l.trouble && !failed {
			failed = w.resync() != nil
		}
		if rxPending && !failed && !l.trouble {
			switch got, err := w.receiveOne(); {
			case err != nil:
				failed = true
			case got:
				progress = true
				if w.polled {
					w.polled = false
					d.count(func(s *Stats) { s.RxPollRecoveries++ })
				}
			default:
				rxPending, w.polled = false, false
			}
		}
		if failed {
			if !w.bo.wait(ctx) {
				return
			}
			continue
		}
		w.bo.reset()
		if progress {
			idleChecked = false
			continue
		}
		if l.dirty && !idleChecked {
			// Idle with failed reads to settle: the FIFOs are
			// probably empty now.
			idleChecked, l.trouble = true, true
			continue
		}
		// Wake on whichever comes first, then take every other wake-up
		// that is ready too, in a fixed order: when an edge and the
		// poll tick arrive at the same instant the worker does the same
		// thing whichever select picked, so a run is repeatable.
		gotIRQ, gotTick := false, false
		select {
		case <-irq:
			gotIRQ = true
		case <-d.kick:
		case <-tick.C:
			gotTick = true
		case <-w.tsnWake():
		case <-ctx.Done():
			return
		}
		gotIRQ = ready(irq) || gotIRQ
		gotTick = ready(tick.C) || gotTick
		ready(d.kick)
		switch {
		case gotIRQ:
			rxPending, w.polled = true, false
		case gotTick:
			idleChecked = false
			if rxPending, failed = w.pollOnce(); failed && !w.bo.wait(ctx) {
				return
			}
		}
	}
}

// ready takes a pending value from c, if there is one.
func ready[T any](c <-chan T) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// pollOnce runs poll and reports (frames pending, transfer failed).
func (w *worker) pollOnce() (bool, bool) {
	pending, err := w.poll()
	w.polled = pending
	return pending, err != nil
}

// failed counts and logs a failed transfer of the worker, unless the
// interface is going down.
func (w *worker) failed(what string, err error) {
	if w.ctx.Err() != nil {
		return
	}
	w.d.count(func(s *Stats) { s.SPIErrors++ })
	w.d.log.Debug(what+" failed", zap.Error(err))
	if w.d.clk != nil {
		w.d.clk.stale = true // resample SYSCOUNT after any fault
	}
}
