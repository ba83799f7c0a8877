package spibridge

import (
	"context"
	"fmt"
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
	timing Timing
	log    *zap.Logger

	bus    busLock // held while a transfer owns the bus
	closed chan struct{}
	isShut atomic.Bool // closed is closed; one load on the hot path
	once   sync.Once

	// Owned by the transfer holding the bus: timer-slack compensation,
	// and the end of a stuck period injected by a fault (zero: not
	// stuck).
	debt       time.Duration // time overslept by earlier transfers, not yet repaid
	lastEnd    time.Time
	stuckUntil time.Time

	faults    atomic.Pointer[SPIFaults] // nil: no SPI faults
	irqFaults atomic.Pointer[IRQFaults] // nil: edges pass unchanged

	// Completed transfers of the fast path (no model, no faults), counted
	// without the mutex; Stats adds them in.
	fastTransfers, fastBytes, fastRejected atomic.Uint64

	mu    sync.Mutex
	stats BusStats
	irq   irqLine // under mu
}

// maxDebt bounds the oversleep the bus repays; debt older than this (the
// bus was idle) is forgotten.
const maxDebt = 2 * time.Millisecond

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
	return &InProcess{
		dev: dev, timing: t, log: log.Named("spi"),
		closed: make(chan struct{}),
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
	if len(tx) == 0 || len(rx) != len(tx) {
		return fmt.Errorf("spibridge: transfer of %d bytes into a %d-byte buffer: %w", len(tx), len(rx), syscall.EINVAL)
	}
	throttled := b.timing.Throttled()
	var issued time.Time
	if throttled {
		issued = time.Now()
	}
	if err := b.acquire(ctx); err != nil {
		return err
	}
	fp := b.faults.Load()
	if !throttled && fp == nil && b.stuckUntil.IsZero() {
		// No timing model, no faults: no clock reads, no timers.
		err := b.dev.Transact(tx, rx)
		b.bus.unlock()
		b.fastTransfers.Add(1)
		b.fastBytes.Add(uint64(len(tx)))
		if err != nil {
			b.fastRejected.Add(1)
			b.rejected(err)
		}
		return nil
	}
	start := time.Now()
	if !throttled {
		issued = start // waits are accounted only with the model on
	}
	return b.started(fp, tx, rx, start.Sub(issued), start)
}

// started runs a transfer that owns the bus since start (after waiting
// waited for it) and releases the bus. Its deadline is start plus its
// timeout.
func (b *InProcess) started(fp *SPIFaults, tx, rx []byte, waited time.Duration, start time.Time) error {
	if start.Sub(b.lastEnd) > maxDebt {
		b.debt = 0
	}
	timeout := b.timing.TimeoutFor(len(tx))
	if !b.stuckUntil.IsZero() && !b.stuckUntil.After(start) {
		b.stuckUntil = time.Time{} // the stuck period is over
	}
	var f SPIFault
	if fp != nil && b.stuckUntil.IsZero() {
		// A transfer that finds the bus stuck draws nothing else.
		f = (*fp).Decide(len(tx), tx[0])
	}
	if f != (SPIFault{}) || !b.stuckUntil.IsZero() {
		return b.faulty(f, tx, rx, waited, start, timeout) // releases the bus
	}

	defer b.release()
	hold := b.timing.Duration(len(tx))
	if hold > timeout {
		time.Sleep(timeout)
		b.account(waited, timeout, 0, true, false)
		return b.timedOut(len(tx), timeout)
	}
	err := b.transact(tx, rx, hold)
	b.rejected(err)
	b.account(waited, hold, len(tx), false, err != nil)
	return nil
}

// release gives the bus up, noting when for the oversleep repayment.
// Called by the transfer that owns the bus.
func (b *InProcess) release() {
	if b.timing.Throttled() {
		b.lastEnd = time.Now()
	}
	b.bus.unlock()
}

// transact holds the bus for hold and has the chip decode the
// transaction when the model says: a read when its first data byte is
// due, a write when its last byte is in.
func (b *InProcess) transact(tx, rx []byte, hold time.Duration) error {
	if tx[0] != proto.CmdRead {
		b.hold(hold)
		return b.dev.Transact(tx, rx)
	}
	dataDue := b.dataDue()
	b.hold(dataDue)
	err := b.dev.Transact(tx, rx)
	b.hold(hold - dataDue)
	return err
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

// hold keeps the bus for d. Timers wake late in real time (tens of
// microseconds to a millisecond, against transfers of tens of
// microseconds), so the bus repays what it overslept from the next holds
// of a busy period: over a burst, emulated bus time tracks the model
// instead of the timer granularity. In virtual time (synctest) sleeps are
// exact and the debt is always zero.
func (b *InProcess) hold(d time.Duration) {
	if d <= 0 {
		return
	}
	if b.debt >= d {
		b.debt -= d
		return
	}
	d -= b.debt
	start := time.Now()
	time.Sleep(d)
	b.debt = min(time.Since(start)-d, maxDebt)
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
