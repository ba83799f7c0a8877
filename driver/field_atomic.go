package driver

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"

	"tsnsim/chip/proto"
	"tsnsim/spibridge"
)

// The atomic-sleep detector and the aftermath of failure 2 (chip.md
// section 6; docs/field-failures.md has the mapping onto the kernel).
//
// In Linux, ndo_start_xmit runs with bottom halves disabled (softirq
// context: NET_RX softirq -> arp_process -> dev_queue_xmit). spi_sync
// takes a mutex and waits for a completion: it sleeps. With
// CONFIG_DEBUG_ATOMIC_SLEEP the scheduler reports that as `BUG:
// scheduling while atomic`. The emulator marks the contexts of the
// transmit path as atomic (withAtomic) and the field driver's transport
// checks every transfer for the mark, the way might_sleep() checks the
// preempt count: a transfer issued under it is the BUG, counted and
// logged with its caller. The transfer itself then completes.
//
// What follows on the board (the NET_RX softirq exits with a corrupted
// preempt count, then every SPI transfer times out with -110 about every
// 0.25-0.5 s for seconds, tx_packets stuck) is modelled as the loss of
// the SPI controller's completions for FieldAftermath after the BUG:
// each transfer is clocked out (the chip acts on it) but its waiter never
// learns, holds the controller for the Linux transfer timeout from its
// start and fails with ETIMEDOUT; transfers queued behind it wait
// untimed, as spi_sync waits for the message queue.

type atomicKey struct{}

// withAtomic marks ctx as the transmit path's atomic context; caller is
// who called Transmit.
func withAtomic(ctx context.Context, caller string) context.Context {
	return context.WithValue(ctx, atomicKey{}, caller)
}

func atomicFrom(ctx context.Context) (string, bool) {
	s, ok := ctx.Value(atomicKey{}).(string)
	return s, ok
}

// fieldTransport is the field driver's view of the SPI bus: its locks
// (FieldLockOrder), the atomic-sleep detector and lost completions
// (FieldXmitClock).
type fieldTransport struct {
	spibridge.Transport
	d *Driver
}

// Transfer takes the field driver's locks, detects a transfer from
// atomic context and, while completions are lost, fails the transfer
// after the Linux timeout.
func (ft *fieldTransport) Transfer(ctx context.Context, tx, rx []byte) error {
	d, f := ft.d, &ft.d.fld
	txWrite := len(tx) >= proto.HeaderLen && tx[0] == proto.CmdWrite && uint16(tx[1])<<8|uint16(tx[2]) == proto.AddrTxFrame
	if d.cfg.Field.Has(FieldLockOrder) {
		t := taskOf(ctx, "driver open/stop")
		if txWrite {
			// The SPI thread takes the TX-queue lock to take the
			// frame, then the register (SPI) lock to write it.
			if err := f.txLock.lock(ctx, t, d); err != nil {
				return err
			}
			defer f.txLock.unlock(t)
		}
		if err := f.regLock.lock(ctx, t, d); err != nil {
			return err
		}
		defer f.regLock.unlock(t)
	}
	if !d.cfg.Field.Has(FieldXmitClock) {
		return ft.Transport.Transfer(ctx, tx, rx)
	}
	caller, atomic := atomicFrom(ctx)
	if atomic {
		d.atomicSleepBug(caller)
	}
	var err error
	if f.completionsLost() {
		err = ft.lostCompletion(ctx, tx, rx)
	} else {
		err = ft.Transport.Transfer(ctx, tx, rx)
		if atomic {
			d.startAftermath()
		}
	}
	if txWrite {
		f.noteTx(err == nil)
	}
	return err
}

// atomicSleepBug counts and logs one blocking transfer from atomic
// context, with the Go call chain that made it.
func (d *Driver) atomicSleepBug(caller string) {
	f := &d.fld
	f.mu.Lock()
	f.bugs++
	n := f.bugs
	f.mu.Unlock()
	d.log.Error("BUG: scheduling while atomic: blocking SPI transfer from the transmit path (softirq context)",
		zap.String("caller", caller), zap.Uint64("count", n),
		zap.String("call_trace", callTrace()),
		zap.String("kernel_equivalent", "netif_rx -> arp_process -> arp_xmit -> dev_queue_xmit -> start_xmit -> get_sys_clock -> spi_transfer -> mutex_lock"))
}

// callTrace is the Go call chain of the current goroutine, innermost
// first, as the kernel prints a call trace.
func callTrace() string {
	var pcs [24]uintptr
	n := runtime.Callers(3, pcs[:])
	frames := runtime.CallersFrames(pcs[:n])
	var b strings.Builder
	for {
		fr, more := frames.Next()
		if strings.HasPrefix(fr.Function, "runtime.") {
			break
		}
		if b.Len() > 0 {
			b.WriteString(" <- ")
		}
		b.WriteString(shortFunc(fr.Function))
		if !more {
			break
		}
	}
	return b.String()
}

// startAftermath starts losing completions, unless they are lost
// already (a BUG during the aftermath does not prolong it).
func (d *Driver) startAftermath() {
	f := &d.fld
	f.mu.Lock()
	defer f.mu.Unlock()
	now := time.Now()
	if now.Before(f.lostUntil) {
		return
	}
	f.lostUntil = now.Add(FieldAftermath)
	if !f.txFailing {
		// TX stalls from here until a TX write next succeeds, whether
		// the worker's writes fail or it is busy with other transfers
		// that fail (the reset check, counter reads) and writes none.
		f.txFailing, f.stallStart = true, now
	}
	d.log.Error("softirq exited with a corrupted preempt count (modelled): SPI completions are lost",
		zap.Duration("for", FieldAftermath))
}

// aftermathLeft is how long completions stay lost from now.
func (f *fieldState) aftermathLeft() time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	return max(time.Until(f.lostUntil), 0)
}

func (f *fieldState) completionsLost() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return time.Now().Before(f.lostUntil)
}

// lostCompletion is one transfer whose completion is lost: it waits for
// the controller (untimed), clocks the transfer out, then waits for the
// Linux transfer timeout counted from its start and fails with
// ETIMEDOUT, holding the controller all along.
func (ft *fieldTransport) lostCompletion(ctx context.Context, tx, rx []byte) error {
	d, f := ft.d, &ft.d.fld
	select {
	case f.ctrl <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("driver: SPI transfer: %w", ctx.Err())
	}
	defer func() { <-f.ctrl }()
	start := time.Now()
	if err := ft.Transport.Transfer(ctx, tx, rx); err != nil {
		return err
	}
	clear(rx) // the waiter never got the data
	timeout := d.cfg.FieldTiming.TimeoutFor(len(tx))
	if !sleepCtx(ctx, timeout-time.Since(start)) {
		return fmt.Errorf("driver: SPI transfer: %w", ctx.Err())
	}
	f.mu.Lock()
	f.lost++
	f.mu.Unlock()
	d.log.Warn("SPI transfer timed out", zap.Int("err", -int(syscall.ETIMEDOUT)), zap.Int("len", len(tx)),
		zap.Duration("timeout", timeout))
	return fmt.Errorf("driver: SPI transfer timed out (completion lost after BUG: scheduling while atomic): %w", syscall.ETIMEDOUT)
}

// noteTx tracks how long TX writes keep failing.
func (f *fieldState) noteTx(ok bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case ok && f.txFailing:
		f.maxStall = max(f.maxStall, time.Since(f.stallStart))
		f.txFailing = false
	case !ok && !f.txFailing:
		f.txFailing, f.stallStart = true, time.Now()
	}
}
