package spibridge

import (
	"fmt"
	"syscall"
)

// IRQFaults decides about the interrupt line of an InProcess bus. The
// fault package implements it.
type IRQFaults interface {
	// Edge is called for each falling edge the chip raises; false drops
	// it (a lost edge, or the line is stuck asserted). It must not block.
	Edge() bool
	// Spurious delivers edges to inject that the chip did not raise. The
	// bus reads it while the source is set; nil injects none.
	Spurious() <-chan struct{}
}

// irqLine is the fault-aware interrupt line of a bus: once IRQ faults are
// set, one goroutine forwards the chip's edges to out through the fault
// source and adds its spurious edges. Without IRQ faults there is no
// goroutine and Interrupt returns the chip's own channel.
type irqLine struct {
	out     chan struct{} // the line as the host sees it; nil until faults are set
	changed chan struct{} // wakes the forwarder when the source changes
	done    chan struct{} // closed when the forwarder has stopped
	handed  bool          // Interrupt returned the chip's channel
}

// SetIRQFaults sets the fault source of the interrupt line; nil removes
// it (edges then pass unchanged). The first non-nil source starts the
// forwarding goroutine, which stops on Close. It must be set before
// Interrupt is first called (the driver keeps the channel it got), so a
// topology sets it when it builds the node and changes faults through
// the source; a later first call fails with EBUSY.
func (b *InProcess) SetIRQFaults(f IRQFaults) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if f == nil {
		b.irqFaults.Store(nil)
	} else {
		b.irqFaults.Store(&f)
	}
	l := &b.irq
	if l.out != nil {
		signal(l.changed)
		return nil
	}
	if f == nil {
		return nil
	}
	if l.handed {
		b.irqFaults.Store(nil)
		return fmt.Errorf("spibridge: IRQ faults set after the interrupt line was handed out: %w", syscall.EBUSY)
	}
	select {
	case <-b.closed:
		b.irqFaults.Store(nil)
		return errClosed
	default:
	}
	l.out, l.changed, l.done = make(chan struct{}, 1), make(chan struct{}, 1), make(chan struct{})
	go b.forwardIRQ(b.dev.IRQ(), l.out, l.changed, l.done)
	return nil
}

// forwardIRQ is the fault-aware interrupt line: it passes the chip's
// edges through the fault source and adds its spurious edges, coalescing
// as the chip does, until the bus is closed.
func (b *InProcess) forwardIRQ(in <-chan struct{}, out chan struct{}, changed <-chan struct{}, done chan struct{}) {
	defer close(done)
	b.log.Debug("IRQ forwarder started")
	defer b.log.Debug("IRQ forwarder stopped")
	for {
		var spurious <-chan struct{}
		if fp := b.irqFaults.Load(); fp != nil {
			spurious = (*fp).Spurious()
		}
		select {
		case <-in:
			deliver := true
			if fp := b.irqFaults.Load(); fp != nil {
				deliver = (*fp).Edge()
			}
			b.countIRQ(deliver, false)
			if deliver {
				signal(out)
			}
		case <-spurious:
			b.countIRQ(true, true)
			signal(out)
		case <-changed:
		case <-b.closed:
			return
		}
	}
}

func (b *InProcess) countIRQ(delivered, spurious bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case spurious:
		b.stats.IRQSpurious++
	case delivered:
		b.stats.IRQEdges++
	default:
		b.stats.IRQEdges++
		b.stats.IRQDropped++
	}
}

// signal makes a coalesced notification: a pending value stands for one
// or more.
func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}
