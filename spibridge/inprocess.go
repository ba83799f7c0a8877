package spibridge

import (
	"context"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.uber.org/zap"

	"tsnsim/chip/proto"
)

// InProcess is an SPI bus to a chip in the same process, with the
// cycle-approximate timing model. It is one shared bus: every user of the
// same *InProcess (the driver's SPI worker, register readers) queues for
// it, and a transfer waits while another is on the wire.
//
// Timing of one transfer of n bytes, once it owns the bus: the bus is held
// for Overhead + 8n/ClockHz. A read is decoded by the chip when its first
// data byte is due (Overhead + 4 bytes in), so a register read samples the
// register then; a write is decoded when its last byte has arrived.
// Timeouts follow Linux: waiting for the bus is not timed (spi_sync waits
// for the message queue without a timeout); the timeout runs from when
// the transfer owns the bus (spi_transfer_wait). A transfer that cannot
// complete within its timeout holds the bus until its deadline and fails
// with ETIMEDOUT without reaching the chip.
//
// Faults can be injected into transfers (SetFaults, faulthook.go) and
// into the interrupt line (SetIRQFaults, irqfaults.go); without them the
// bus pays one atomic load per transfer.
type InProcess struct {
	dev    Device
	timed  TimedDevice // dev, if it takes decode times
	timing Timing
	log    *zap.Logger

	bus    busLock // held while a transfer owns the bus
	closed chan struct{}
	isShut atomic.Bool // closed is closed; one load on the hot path
	once   sync.Once

	// Owned by the transfer holding the bus: the emulated time the bus
	// became free (the end of the last transfer's modelled occupancy),
	// how late on the wall clock that transfer's goroutine woke, and the
	// end of a stuck period injected by a fault (zero: not stuck).
	lastEnd  time.Time
	lastLate time.Duration
	// floor is the latest event the host marked (MarkEvent), ns since
	// epoch (noFloor: none): no transfer starts before it in the model.
	floor      atomic.Int64
	epoch      time.Time
	lastReturn time.Time // wall clock, when that transfer released the bus
	woke       time.Time // wall clock, when the holder woke from its last sleep
	stuckUntil time.Time

	// edges is dev, when it times its interrupt edges (EdgeTimer) and the
	// model is on; wake is the credit of the host's last late wake-up
	// (Woke), until a transfer takes it.
	edges   EdgeTimer
	wakeMu  sync.Mutex
	wake    wakeCredit
	hasWake atomic.Bool // wake is set: one load when it is not

	faults    atomic.Pointer[SPIFaults] // nil: no SPI faults
	irqFaults atomic.Pointer[IRQFaults] // nil: edges pass unchanged

	// Completed transfers of the fast path (no model, no faults), counted
	// without the mutex; Stats adds them in.
	fastTransfers, fastBytes, fastRejected atomic.Uint64

	mu    sync.Mutex
	stats BusStats
	irq   irqLine // under mu
}

// The emulated timeline may lag the wall clock by at most this much:
// what a transfer's wake-up overslept is repaid from the next transfers
// of a busy period (they start when the previous one ended in the model,
// not when its goroutine woke), up to the bound; beyond it the timeline
// jumps to the wall clock. With the precise timer (Timing.Timer) what is
// left to repay is its lateness, tens of microseconds; Go's own timers
// wake up to a millisecond late, so without it the bound is larger. In
// virtual time the timeline never lags.
const (
	maxLag        = 2 * time.Millisecond
	maxLagPrecise = 250 * time.Microsecond
)

// chainWindow is how soon after the previous transfer returned a
// transfer must be issued for the bus to take the previous wake-up's
// lateness back from its start: a host's next step, not a new event.
const chainWindow = 20 * time.Microsecond

// BusStats is the accounting of one bus.
type BusStats struct {
	Transfers uint64        // completed transfers (rejected ones included)
	Bytes     uint64        // bytes clocked by completed transfers
	Busy      time.Duration // emulated time the bus was held
	Wait      time.Duration // total time transfers queued for the bus (model on only)
	MaxWait   time.Duration
	Timeouts  uint64 // transfers failed with ETIMEDOUT (injected ones included)
	Rejected  uint64 // transfers the chip rejected (counted by the chip too)

	// Injected SPI faults (SetFaults), by kind: transfers affected.
	FaultTimeoutBefore uint64 // failed before reaching the chip
	FaultTimeoutAfter  uint64 // failed after the chip executed them
	FaultLatency       uint64 // delayed by injected latency
	FaultStuck         uint64 // transfers that found the bus stuck
	FaultFlips         uint64 // reads whose MISO had bits flipped
	FlippedBits        uint64 // MISO bits flipped, total

	// Interrupt line, counted only while IRQ faults are set
	// (SetIRQFaults).
	IRQEdges    uint64 // edges the chip raised
	IRQDropped  uint64 // of those, dropped by the fault source
	IRQSpurious uint64 // edges injected by the fault source
}

// NewInProcess returns a bus to dev with the given timing.
func NewInProcess(dev Device, t Timing, log *zap.Logger) *InProcess {
	if log == nil {
		log = zap.NewNop()
	}
	timed, _ := dev.(TimedDevice)
	b := &InProcess{
		dev: dev, timed: timed, timing: t, log: log.Named("spi"),
		closed: make(chan struct{}), epoch: time.Now(),
	}
	b.floor.Store(noFloor)
	if et, ok := dev.(EdgeTimer); ok && t.Throttled() {
		et.TimeEdges()
		b.edges = et
	}
	return b
}

// wakeCredit is a late wake-up of the host (Woke): it woke at woke for an
// event at event.
type wakeCredit struct {
	event, woke time.Time
}

// Woke implements EventMarker.
func (b *InProcess) Woke(event, woke time.Time) {
	b.MarkEvent(event)
	b.wakeMu.Lock()
	b.wake = wakeCredit{event: event, woke: woke}
	b.hasWake.Store(true)
	b.wakeMu.Unlock()
}

// takeWake returns the credit Woke left, if any, and clears it: only the
// first transfer after a wake-up can use it.
func (b *InProcess) takeWake() wakeCredit {
	if !b.hasWake.Load() {
		return wakeCredit{}
	}
	b.wakeMu.Lock()
	w := b.wake
	b.wake = wakeCredit{}
	b.hasWake.Store(false)
	b.wakeMu.Unlock()
	return w
}

// LastEdge implements EventMarker: the device's last edge, unless edges
// pass through an injected IRQ fault (which may delay, drop or invent
// them) or the device does not time them.
func (b *InProcess) LastEdge() time.Time {
	if b.edges == nil || b.irqFaults.Load() != nil {
		return time.Time{}
	}
	return b.edges.LastEdge()
}

// noFloor is InProcess.floor before any event is marked.
const noFloor = math.MinInt64

// Timed implements EventMarker: whether the timing model is on.
func (b *InProcess) Timed() bool { return b.timing.Throttled() }

// MarkEvent implements EventMarker: transfers from now on start no
// earlier than at on the bus's emulated timeline (the lateness a
// previous wake-up repays cannot move them before the event they
// answer). In virtual time events are marked when they happen and
// transfers start later anyway, so nothing changes.
func (b *InProcess) MarkEvent(at time.Time) {
	ns := int64(at.Sub(b.epoch))
	for {
		old := b.floor.Load()
		if ns <= old || b.floor.CompareAndSwap(old, ns) {
			return
		}
	}
}

// Timing returns the bus's timing model.
func (b *InProcess) Timing() Timing { return b.timing }

// Transfer implements Transport.
//
// Waiting for the bus is not timed, as spi_sync on Linux waits for the
// controller's message queue without a timeout: ctx (and Close) end the
// wait. The timeout starts when the transfer owns the bus, as
// spi_transfer_wait() times only the transfer the controller started.
// With the timing model off and no fault source set, the hot path reads
// no clock and arms no timer.
func (b *InProcess) Transfer(ctx context.Context, tx, rx []byte) error {
	return b.transfer(ctx, tx, rx, nil)
}

// TransferTimeline implements TimelineTransport: Transfer, reporting the
// transfer's modelled bus occupancy in tl. With the timing model off, or
// for a transfer an injected fault took over, tl's Start and End are
// wall-clock readings.
func (b *InProcess) TransferTimeline(ctx context.Context, tx, rx []byte, tl *Timeline) error {
	return b.transfer(ctx, tx, rx, tl)
}

func (b *InProcess) transfer(ctx context.Context, tx, rx []byte, tl *Timeline) error {
	if len(tx) == 0 || len(rx) != len(tx) {
		return fmt.Errorf("spibridge: transfer of %d bytes into a %d-byte buffer: %w", len(tx), len(rx), syscall.EINVAL)
	}
	throttled := b.timing.Throttled()
	var issued time.Time
	if throttled || tl != nil {
		issued = time.Now()
	}
	if err := b.acquire(ctx); err != nil {
		return err
	}
	fp := b.faults.Load()
	if !throttled && fp == nil && b.stuckUntil.IsZero() {
		// No timing model, no faults: no clock reads, no timers (unless
		// the caller asked for the timeline).
		if tl != nil {
			tl.Queued, tl.Start = issued, time.Now()
		}
		err := b.dev.Transact(tx, rx)
		if tl != nil {
			tl.End = time.Now()
		}
		b.bus.unlock()
		b.fastTransfers.Add(1)
		b.fastBytes.Add(uint64(len(tx)))
		if err != nil {
			b.fastRejected.Add(1)
			b.rejected(err)
		}
		return nil
	}
	now := time.Now()
	if issued.IsZero() {
		issued = now
	}
	return b.started(fp, tx, rx, issued, now, tl)
}

// started runs a transfer that owns the bus since now, issued at issued,
// and releases the bus. Its deadline is its start plus its timeout (the
// wait for the bus is not timed).
func (b *InProcess) started(fp *SPIFaults, tx, rx []byte, issued, now time.Time, tl *Timeline) error {
	throttled := b.timing.Throttled()
	var waited time.Duration
	if throttled {
		waited = now.Sub(issued) // waits are accounted only with the model on
	}
	timeout := b.timing.TimeoutFor(len(tx))
	if !b.stuckUntil.IsZero() && !b.stuckUntil.After(now) {
		b.stuckUntil = time.Time{} // the stuck period is over
	}
	var f SPIFault
	if fp != nil && b.stuckUntil.IsZero() {
		// A transfer that finds the bus stuck draws nothing else.
		f = (*fp).Decide(len(tx), tx[0])
	}
	if f != (SPIFault{}) || !b.stuckUntil.IsZero() {
		b.lastLate = 0
		var kinds string
		err := b.faulty(f, tx, rx, waited, now, timeout, &kinds) // releases the bus
		if tl != nil {
			*tl = Timeline{Queued: issued, Start: now, End: time.Now(), Faults: kinds}
		}
		return err
	}
	// The transfer starts on the modelled bus when it was issued or when
	// the previous one ended in the model, whichever is later, and no
	// further behind the wall clock than the lag bound. A transfer issued
	// right after the previous one returned (within chainWindow: the
	// driver's next step, such as the frame read after its metadata) has
	// its issue time taken back by how late the previous holder woke, so
	// it starts when the model says, not when the late wake-up let it;
	// the time the host really took in between still counts. Likewise the
	// host's first transfer right after it woke, idle, for an event
	// (Woke: within chainWindow of the wake-up) has its issue time taken
	// back by how late the wake-up was: in the model the host wakes at
	// the event. Neither goes to before the last event the host marked
	// (MarkEvent: an interrupt edge, a frame to send), which it may be
	// answering. In virtual time nothing is late and the start is the
	// issue or the previous end. With the model off the transfer starts
	// now.
	start := now
	if throttled {
		eff := issued
		w := b.takeWake()
		var back time.Duration // how far the issue time is taken back
		switch {
		case issued.Sub(b.lastReturn) <= chainWindow:
			back = b.lastLate
		case !w.woke.IsZero() && w.woke.After(b.lastReturn) && issued.Sub(w.woke) <= chainWindow:
			// The host's first step after a late wake-up: in the model
			// it woke at the event.
			back = max(w.woke.Sub(w.event), 0)
		}
		if back > 0 {
			eff = issued.Add(-back)
			if f := b.floor.Load(); f != noFloor {
				eff = later(eff, b.epoch.Add(time.Duration(f)))
			}
		}
		start = later(later(eff, b.lastEnd), now.Add(-b.maxLag()))
		issued = earlier(issued, start) // in the model it was issued no later than it started
	}
	b.woke = time.Time{}
	hold := b.timing.Duration(len(tx))
	end := start.Add(hold)
	tooLong := hold > timeout
	if tooLong {
		end = start.Add(timeout)
	}
	if tl != nil {
		*tl = Timeline{Queued: issued, Start: start, End: end}
	}
	defer func() {
		b.lastEnd = end
		// What the last wake-up overslept past the end (device time
		// excluded; zero in virtual time, where sleeps are exact).
		b.lastReturn = time.Now()
		b.lastLate = 0
		if !b.woke.IsZero() {
			b.lastLate = min(max(b.woke.Sub(end), 0), b.maxLag())
		}
		b.bus.unlock()
	}()
	if tooLong {
		b.sleepUntil(end)
		b.account(waited, timeout, 0, true, false)
		return b.timedOut(len(tx), timeout)
	}
	err := b.transact(tx, rx, start, hold)
	b.rejected(err)
	b.account(waited, hold, len(tx), false, err != nil)
	return nil
}

// release gives the bus up after a transfer an injected fault took over
// (it ran on the wall clock: the emulated timeline resumes from now).
// Called by the transfer that owns the bus.
func (b *InProcess) release() {
	b.lastEnd, b.lastReturn, b.lastLate = time.Now(), time.Now(), 0
	b.bus.unlock()
}

// maxLag is how far the bus's emulated timeline may lag the wall clock.
func (b *InProcess) maxLag() time.Duration {
	if b.timing.Timer != nil {
		return maxLagPrecise
	}
	return maxLag
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func earlier(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// transact holds the bus from start for hold and has the chip decode
// the transaction when the model says: a read when its first data byte
// is due, a write when its last byte is in.
func (b *InProcess) transact(tx, rx []byte, start time.Time, hold time.Duration) error {
	if tx[0] != proto.CmdRead {
		b.sleepUntil(start.Add(hold))
		return b.decode(tx, rx, start.Add(hold))
	}
	b.sleepUntil(start.Add(b.dataDue()))
	err := b.decode(tx, rx, start.Add(b.dataDue()))
	b.sleepUntil(start.Add(hold))
	return err
}

// sleepUntil holds the bus until t on the emulated timeline, through the
// precise timer in a real-time run that opted in (Timing.Timer), through
// the time package otherwise (exact in virtual time). Real-time wake-ups
// are late; the next transfer of a busy period starts at t all the same
// (see maxLag and chainWindow), so the lateness is repaid instead of
// accumulating. It notes when the holder woke: after a sleep it made,
// or at the transfer's first deadline if that had already passed; a
// sleep it made is recorded in a running Go execution trace (logWait).
func (b *InProcess) sleepUntil(t time.Time) {
	switch d := time.Until(t); {
	case d > 0:
		b.timing.Timer.Sleep(d)
		b.woke = time.Now()
		logWait(b.woke.Sub(t), d)
	case b.woke.IsZero():
		// Already past t (an earlier wake-up was late): the lateness
		// carries over, measured before the chip decodes anything.
		b.woke = time.Now()
	}
}

// decode has the chip decode the transaction, telling a TimedDevice the
// modelled decode time at.
func (b *InProcess) decode(tx, rx []byte, at time.Time) error {
	if b.timed != nil {
		return b.timed.TransactAt(tx, rx, at)
	}
	return b.dev.Transact(tx, rx)
}

// dataDue is when, into its hold, a read's first data byte is due: when
// the chip decodes it. Zero with the timing model off.
func (b *InProcess) dataDue() time.Duration {
	if !b.timing.Throttled() {
		return 0
	}
	return b.timing.Overhead + b.timing.WireTime(proto.ReadDataStart)
}

// rejected logs a transaction the chip rejected; the bus completes it.
func (b *InProcess) rejected(err error) {
	if err != nil {
		b.log.Debug("chip rejected transaction", zap.Error(err))
	}
}

// acquire takes the bus. The wait has no timeout (see Transfer): it
// ends when the bus is handed over (in arrival order), ctx is done or the
// bus is closed. It arms no timer.
func (b *InProcess) acquire(ctx context.Context) error {
	if b.isShut.Load() {
		return errClosed
	}
	return b.bus.lock(ctx, b.closed)
}

func errWaitCancelled(err error) error {
	return fmt.Errorf("spibridge: waiting for the bus: %w", err)
}

var errClosed = fmt.Errorf("spibridge: transport closed: %w", syscall.EBADF)

func (b *InProcess) timedOut(n int, timeout time.Duration) error {
	b.log.Debug("SPI transfer timed out", zap.Int("len", n), zap.Duration("timeout", timeout))
	return fmt.Errorf("spibridge: SPI transfer timed out after %v: %w", timeout, syscall.ETIMEDOUT)
}

func (b *InProcess) account(wait, busy time.Duration, n int, timeout, rejected bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := &b.stats
	s.Wait += wait
	s.MaxWait = max(s.MaxWait, wait)
	s.Busy += busy
	switch {
	case timeout:
		s.Timeouts++
	default:
		s.Transfers++
		s.Bytes += uint64(n)
		if rejected {
			s.Rejected++
		}
	}
}

// Stats returns the bus accounting.
func (b *InProcess) Stats() BusStats {
	b.mu.Lock()
	s := b.stats
	b.mu.Unlock()
	s.Transfers += b.fastTransfers.Load()
	s.Bytes += b.fastBytes.Load()
	s.Rejected += b.fastRejected.Load()
	return s
}

// Interrupt implements Transport: the chip's interrupt line, or the
// fault-aware line once SetIRQFaults has set a source.
func (b *InProcess) Interrupt() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.irq.out != nil {
		return b.irq.out
	}
	b.irq.handed = true
	return b.dev.IRQ()
}

// Close implements Transport. Transfers waiting for the bus fail; a
// transfer on the wire completes. The IRQ forwarder, if any, has stopped
// when Close returns.
func (b *InProcess) Close() error {
	b.once.Do(func() {
		b.isShut.Store(true)
		close(b.closed)
	})
	b.mu.Lock()
	done := b.irq.done
	b.mu.Unlock()
	if done != nil {
		<-done
	}
	return nil
}

var _ Transport = (*InProcess)(nil)
