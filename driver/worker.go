package driver

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"tsnsim/chip/proto"
)

// worker is the state of the one SPI thread of the vendor driver.
type worker struct {
	d   *Driver
	ctx context.Context
	// finish is ctx without its cancellation, cut LifecycleTimeout/2
	// after ctx is cancelled: for a transfer that must complete even if
	// the interface is going down (readFrame). One per session, so the
	// frame path arms no timer per transfer.
	finish context.Context
	bo     *backoff

	meta, metaMISO, frameMOSI []byte
	scratch                   []byte // TX MISO buffer
	polled                    bool   // draining because a poll found frames
	traffic                   bool   // an edge, TX or RX since the last poll
	rxTicks                   uint64 // rx_metadata timestamp of the entry being read
	rxStamped                 bool   // rxTicks belongs to the frame being read

	reset         resetState
	lastChipStats time.Time
	// woke is when the worker last woke from waiting for work, until
	// the event it woke for is marked (markEvent); zero unless
	// Config.ModelWakeups on a bus with a marker.
	woke time.Time
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
	finish, stopFinish := finishContext(ctx, LifecycleTimeout/2)
	defer stopFinish()
	w.finish = finish
	l := &d.rxl
	rxPending := true // drain whatever is already queued at open
	idleChecked := false
	irq := d.tr.Interrupt()
	tick := newPollTicker(d.cfg.PollInterval, d.cfg.IdlePollInterval)
	defer tick.stop()
	for ctx.Err() == nil {
		failed := false
		gotIRQ, gotTick := ready(irq), tick.ready()
		w.markIRQ(gotIRQ)
		if (gotTick || w.reset.pending) && !w.periodic() {
			if !w.bo.wait(ctx) {
				return
			}
			continue
		}
		switch {
		case gotIRQ:
			rxPending, w.polled = true, false
			w.sawTraffic(tick)
		case gotTick && !rxPending:
			rxPending, failed = w.pollTick(tick)
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
			w.sawTraffic(tick)
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
		gotIRQ, gotTick = false, false
		w.woke = time.Time{} // a wake-up's credit is for the round right after it
		select {
		case <-irq:
			gotIRQ = true
		case <-d.kick:
		case v := <-tick.t.C:
			tick.took(v)
			gotTick = true
		case <-w.tsnWake():
		case <-ctx.Done():
			return
		}
		if d.marker != nil && d.cfg.ModelWakeups {
			w.woke = time.Now()
		}
		gotIRQ = ready(irq) || gotIRQ
		w.markIRQ(gotIRQ)
		gotTick = tick.ready() || gotTick
		ready(d.kick)
		if gotTick && !w.periodic() {
			if !w.bo.wait(ctx) {
				return
			}
			continue
		}
		switch {
		case gotIRQ:
			rxPending, w.polled = true, false
			w.sawTraffic(tick)
		case gotTick:
			idleChecked = false
			if rxPending, failed = w.pollTick(tick); failed && !w.bo.wait(ctx) {
				return
			}
		}
	}
}

// markIRQ marks an interrupt edge the worker has just seen (got) as an
// event for the bus (Driver.marker): the edge came at the latest now
// (with Config.ModelWakeups: when the chip raised it in the model), and
// the reads that answer it start no earlier in the model.
func (w *worker) markIRQ(got bool) {
	if got && w.d.marker != nil {
		edge := time.Now()
		if w.d.cfg.ModelWakeups {
			if e := w.d.marker.LastEdge(); !e.IsZero() && e.Before(edge) {
				edge = e
			}
		}
		w.markEvent(edge)
	}
}

// markEvent marks an event the worker answers for the bus; with
// Config.ModelWakeups, if the worker was idle and woke for it, as a
// wake-up the bus takes back from the first transfer that answers it
// (EventMarker.Woke), as in virtual time, where the worker wakes at the
// event. Only with a marker.
func (w *worker) markEvent(at time.Time) {
	if w.woke.IsZero() {
		w.d.marker.MarkEvent(at)
		return
	}
	w.d.marker.Woke(at, w.woke)
	w.woke = time.Time{}
}

// periodic runs the worker's low-rate work on a poll tick: the check for
// a reset chip (and the recovery from one) and the read of the chip's
// drop counters. It reports false when the chip is found reset and could
// not be re-initialised yet (the worker backs off and tries again).
func (w *worker) periodic() bool {
	if !w.resetCheckDue() {
		return false
	}
	w.chipStatsDue()
	return true
}

// finishContext returns a context that is not cancelled with ctx but
// expires grace after ctx is done, and a function that releases it (and
// its timer) once nothing uses it any more. It arms no timer until ctx is
// done.
func finishContext(ctx context.Context, grace time.Duration) (context.Context, func()) {
	finish, cancel := context.WithCancel(context.WithoutCancel(ctx))
	var mu sync.Mutex
	var timer *time.Timer
	released := false
	stopWatch := context.AfterFunc(ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		if !released {
			timer = time.AfterFunc(grace, cancel)
		}
	})
	return finish, func() {
		stopWatch()
		mu.Lock()
		released = true
		if timer != nil {
			timer.Stop()
		}
		mu.Unlock()
		cancel()
	}
}

// sawTraffic notes an interrupt edge, a TX frame written or an RX frame
// read: the poll period returns to PollInterval.
func (w *worker) sawTraffic(tick *pollTicker) {
	w.traffic = true
	tick.busy()
}

// pollTick polls on a tick and reports (frames pending, transfer failed).
// A poll that finds nothing with no traffic since the one before lets
// the poll period grow (pollTicker.quiet).
func (w *worker) pollTick(tick *pollTicker) (bool, bool) {
	pending, failed := w.pollOnce()
	if !pending && !failed && !w.traffic {
		tick.quiet()
	}
	w.traffic = false
	return pending, failed
}

// pollTicker is the worker's poll ticker with a cheap look: a ticker's
// channel costs two runtime timer locks to look at, and a clock read
// costs tens of nanoseconds on some machines, once per round of the
// worker. A Ticker ticks at its start plus whole periods (skipping those
// nobody took), and the time it delivers is the tick's own. So no tick
// is pending before the start (read before the ticker was made) plus a
// period, nor, once a tick was taken, before the next point of its grid
// after the last look that found none (next). A timer raises a flag a
// little before next (pollLead), so until then a look is one atomic
// load; from then on a clock read tells whether next has come, and only
// then is the channel looked at.
//
// In virtual time the flag is always up by next: the bubble does not
// reach next before the timer's function ran at next-lead. In real time
// a timer that fires more than lead late delays the look (as it would
// delay the ticker's own delivery to a waiting worker).
//
// The period is base while there is traffic and doubles up to most with
// each quiet poll (quiet, busy). Ticks stay on the grid of the start
// plus whole base periods whatever the period: a change resets the
// ticker to the grid point it wants next, and that tick resets it to
// the period (realign). So in virtual time the ticks fall where a fixed
// ticker's would, never on the instants of the traffic that moved them
// (an edge and a tick at one instant would make a run depend on which
// goroutine the bubble ran first).
type pollTicker struct {
	t       *time.Ticker
	period  time.Duration
	base    time.Duration // the period with traffic (PollInterval)
	most    time.Duration // the longest period (IdlePollInterval)
	origin  time.Time     // the grid: origin plus whole base periods
	realign bool          // the ticker runs at a one-off period to the next grid point
	lead    time.Duration
	next    time.Time   // no tick is pending before this
	phased  bool        // next is on the grid of a delivered tick
	near    atomic.Bool // next-lead has come
	raise   *time.Timer // sets near at next-lead
}

func newPollTicker(period, most time.Duration) *pollTicker {
	p := &pollTicker{period: period, base: period, most: max(most, period), lead: min(period/8, pollLead)}
	p.origin = time.Now()
	p.next = p.origin.Add(period)
	p.t = time.NewTicker(period)
	p.raise = time.AfterFunc(period-p.lead, func() { p.near.Store(true) })
	return p
}

// stop stops the ticker and the flag's timer.
func (p *pollTicker) stop() {
	p.t.Stop()
	p.raise.Stop()
}

// pollLead bounds how long before a poll tick can be due its flag is
// raised: the rounds in between read the clock.
const pollLead = 500 * time.Microsecond

// ready takes a pending tick, if there is one.
func (p *pollTicker) ready() bool {
	if !p.near.Load() {
		return false
	}
	wait := time.Until(p.next) // a monotonic clock read only
	if wait > 0 {
		return false
	}
	select {
	case v := <-p.t.C:
		p.took(v)
		return true
	default:
	}
	if p.phased {
		// None pending now: the next one is on the grid after now.
		p.next = p.next.Add((-wait/p.period + 1) * p.period)
		p.arm()
	}
	return false
}

// quiet notes a poll that found nothing with no traffic since the one
// before: the period doubles, up to most.
func (p *pollTicker) quiet() {
	if p.period < p.most {
		p.restart(min(2*p.period, p.most))
	}
}

// busy notes traffic: the period returns to base. On the frame path it
// costs one comparison.
func (p *pollTicker) busy() {
	if p.period != p.base {
		p.restart(p.base)
	}
}

// restart sets the period and has the next tick come one new period
// after the last grid point: quiet runs on (or just after) a tick, so
// the next one is a whole new period on; busy (period base) runs
// anywhere, and the next one is the next grid point. The clock is read
// before the ticker is reset, so no tick comes before next.
func (p *pollTicker) restart(period time.Duration) {
	now := time.Now()
	last := now.Add(-now.Sub(p.origin) % p.base)
	first := last.Add(period).Sub(now)
	p.period = period
	p.next, p.phased, p.realign = now.Add(first), false, first != period
	p.t.Reset(first)
	p.arm()
}

// took notes a tick received from p.t.C with the time v it delivered.
func (p *pollTicker) took(v time.Time) {
	if p.realign {
		// The one-off tick to the grid: from here on, the period.
		now := time.Now()
		p.realign = false
		p.next, p.phased = now.Add(p.period), false
		p.t.Reset(p.period)
		p.arm()
		return
	}
	p.next, p.phased = v.Add(p.period), true
	p.arm()
}

// arm lowers the flag and has it raised lead before next (at once if
// that has come).
func (p *pollTicker) arm() {
	p.near.Store(false)
	d := time.Until(p.next) - p.lead
	if d <= 0 {
		p.near.Store(true)
		return
	}
	p.raise.Reset(d)
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
