package driver

import (
	"errors"
	"go.uber.org/zap"

	"tsnsim/chip/proto"
)

// txLedger is the TX reconciliation state: the sum of the chip's
// FS_TOTAL_RX_FRAME_CNT_L and FS_TOTAL_BACK_PRESSURE_EVENT_CNT_L the
// driver expects, valid once read.
type txLedger struct {
	expected uint32
	valid    bool
}

// txOutcome is where one TX frame taken from the ring is counted.
type txOutcome int

const (
	txSent       txOutcome = iota // written: TxPackets
	txReconciled                  // write failed but the chip took it: TxPackets, TxReconciled
	txFailed                      // TxErrors
	txDropped                     // not written, the interface went down: TxDropped
	txResetLost                   // in flight when the chip was reset: TxErrors, TxResetLost
)

// takeTx removes the oldest frame from the ring and wakes a stopped queue.
func (d *Driver) takeTx() (txSlot, bool) {
	if d.txq.Load() == 0 {
		// Nothing queued (a frame queued meanwhile kicks the worker):
		// no lock on the RX-only rounds.
		return txSlot{}, false
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.queued == 0 {
		return txSlot{}, false
	}
	s := d.ring[d.head]
	d.ring[d.head] = txSlot{}
	d.head = (d.head + 1) % len(d.ring)
	d.queued--
	if d.queued == 0 {
		d.txq.Store(0)
	}
	d.inFlight++
	if d.stopped {
		d.stopped = false // netif_wake_queue
		signal(d.wake)
	}
	return s, true
}

// finishTx counts a frame taken by takeTx.
func (d *Driver) finishTx(s txSlot, o txOutcome) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.inFlight--
	if d.tsn != nil {
		d.tsnTxDone(s, o == txSent || o == txReconciled)
	}
	d.recycle(s.mosi)
	switch o {
	case txSent, txReconciled:
		d.stats.TxPackets++
		d.stats.TxBytes += uint64(s.n)
		if o == txReconciled {
			d.stats.TxReconciled++
		}
	case txFailed:
		d.stats.TxErrors++
	case txResetLost:
		d.stats.TxErrors++
		d.stats.TxResetLost++
	case txDropped:
		d.stats.TxDropped++
	}
}

// sendTx writes one frame to the chip's TX FIFO, reconciling failed
// writes with the chip's counters (see the package documentation). A
// write cut short by cancellation is left in d.limbo for Stop.
func (w *worker) sendTx(s txSlot) {
	// s is copied into d.limbo only where the write is cut short, so the
	// slot does not escape to the heap on every frame.
	d := w.d
	if !d.txl.valid {
		if sum, err := d.readTxSum(w.ctx, w.bo); err == nil {
			d.txl = txLedger{expected: sum, valid: true}
		}
	}
	if cap(w.scratch) < len(s.mosi) {
		w.scratch = make([]byte, len(s.mosi), proto.TxWriteHeader+proto.MaxWireLen)
	}
	if d.marker != nil {
		w.markEvent(s.offered) // the frame cannot leave before it was handed over
	}
	stamp := w.beforeStampedWrite(s)
	defer func() { w.stampWritten(stamp) }()
	for attempt := 1; ; attempt++ {
		err := d.tr.Transfer(w.ctx, s.mosi, w.scratch[:len(s.mosi)])
		if err == nil {
			d.txl.expected++
			d.finishTx(s, txSent)
			return
		}
		if w.ctx.Err() != nil {
			d.limbo = newLimbo(s)
			return
		}
		w.failed("TX write", err)
		sum, rerr := w.readTxSumPatiently()
		if rerr == nil && d.txl.valid && sum != d.txl.expected && sum != d.txl.expected+1 {
			sum, rerr = w.rereadTxSum(sum)
		}
		switch {
		case rerr != nil && w.ctx.Err() != nil:
			d.limbo = newLimbo(s)
			return
		case rerr != nil || !d.txl.valid:
			d.log.Warn("TX write failed and cannot be reconciled; counted as an error",
				zap.Error(err), zap.NamedError("reconcile", rerr))
			d.txl = txLedger{expected: sum, valid: rerr == nil}
			d.finishTx(s, txFailed)
			return
		case sum == d.txl.expected+1:
			d.txl.expected++
			d.finishTx(s, txReconciled)
			return
		case sum != d.txl.expected && w.chipWasReset():
			// TSN found off: the chip was reset or replaced; whether
			// the old one took this write is unknowable.
			d.finishTx(s, txResetLost)
			w.recoverReset("TX counters moved and TSN off after a failed write")
			return
		case sum != d.txl.expected:
			d.log.Warn("TX counters moved unexpectedly after a failed write; counted as an error, new baseline",
				zap.Uint32("expected", d.txl.expected), zap.Uint32("read", sum))
			d.txl.expected = sum
			d.finishTx(s, txFailed)
			return
		case attempt == MaxTxAttempts:
			d.log.Debug("TX write not taken after the last attempt", zap.Int("attempts", attempt))
			d.finishTx(s, txFailed)
			return
		}
		// The chip did not take it: write it again.
		d.count(func(st *Stats) { st.TxRetries++ })
		if !w.bo.wait(w.ctx) {
			d.finishTx(s, txDropped)
			return
		}
	}
}

// newLimbo returns a heap copy of s for Driver.limbo.
func newLimbo(s txSlot) *txSlot { return &s }

// readTxSumPatiently reads the TX counter sum after a failed write,
// retrying with backoff for as long as the bus fails (a chip server
// restarting, a stuck bus): the write's fate is known only to the chip,
// so the worker waits to learn it rather than guess. It gives up when the
// interface goes down (the write is then settled by Stop) or when the
// counters will not read the same twice.
func (w *worker) readTxSumPatiently() (uint32, error) {
	for {
		sum, err := w.d.readTxSum(w.ctx, w.bo)
		if err == nil || w.ctx.Err() != nil || errors.Is(err, errUnstable) {
			return sum, err
		}
		if !w.bo.wait(w.ctx) {
			return 0, w.ctx.Err()
		}
	}
}

// txRereads bounds rereadTxSum.
const txRereads = 3

// rereadTxSum reads the TX counter sum again after a failed write found
// it at sum, neither the expected value nor one more: only this write
// can have moved the counters since the last known value, so such a sum
// is two reads corrupted alike on MISO (the vote of readStable agrees
// with itself) or a chip that was reset. It returns the first plausible
// sum of up to txRereads more reads, else the last one read (for the
// reset check and the unexpected-move path).
func (w *worker) rereadTxSum(sum uint32) (uint32, error) {
	d := w.d
	for range txRereads {
		s, err := w.readTxSumPatiently()
		if err != nil {
			return s, err
		}
		sum = s
		if sum == d.txl.expected || sum == d.txl.expected+1 {
			return sum, nil
		}
	}
	d.log.Debug("TX counter sum still implausible after rereads", zap.Uint32("expected", d.txl.expected), zap.Uint32("read", sum))
	return sum, nil
}

// settleLimbo counts the write left in limbo by a stopped worker, given
// the TX counter sum read since (known false: it could not be read).
func (d *Driver) settleLimbo(sum uint32, known bool) {
	if d.limbo == nil {
		return
	}
	s := *d.limbo
	d.limbo = nil
	switch {
	case known && d.txl.valid && sum == d.txl.expected+1:
		d.txl.expected++
		d.finishTx(s, txReconciled)
	case known && d.txl.valid && sum == d.txl.expected:
		d.finishTx(s, txDropped)
	default:
		d.log.Warn("TX write cut short by Stop cannot be reconciled; counted as an error",
			zap.Bool("read", known), zap.Uint32("expected", d.txl.expected), zap.Uint32("sum", sum))
		d.txl = txLedger{expected: sum, valid: known}
		d.finishTx(s, txFailed)
	}
}
