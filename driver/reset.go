package driver

import (
	"context"
	"time"

	"go.uber.org/zap"

	"tsnsim/chip/regs"
)

// ResetCheckInterval is how often the SPI worker reads TSN_SYSTEM_CONTROL
// to find a chip that was reset or replaced behind its back (a chip
// server restarted): TSN_ENABLE found cleared. It also looks when
// counters are found behind the driver's baseline (TX reconciliation, RX
// resynchronisation). It does not ask the transport whether it reconnected: the driver is
// written against spibridge.Transport only, and a reconnect to a chip
// server that was restarted shows as a failed transfer followed by
// counters behind the baseline, or at the next periodic check.
const ResetCheckInterval = 250 * time.Millisecond

// resetState is the worker's view of chip resets.
type resetState struct {
	lastCheck time.Time
	pending   bool      // a reset was found but the chip could not be re-initialised yet
	since     time.Time // when the pending reset was found
}

// resetCheckDue checks for a chip reset when ResetCheckInterval has
// passed, and recovers from one. It reports false when the worker must
// back off (the chip is not back yet).
func (w *worker) resetCheckDue() bool {
	rs := &w.reset
	if rs.pending {
		return w.recoverReset("chip reset found earlier")
	}
	if time.Since(rs.lastCheck) < ResetCheckInterval {
		return true
	}
	rs.lastCheck = time.Now()
	if w.chipWasReset() {
		return w.recoverReset("TSN_ENABLE found cleared")
	}
	return true
}

// chipWasReset reads TSN_SYSTEM_CONTROL (until two reads agree, twice,
// so a bit flipped on MISO is not taken for a reset) and reports whether
// TSN is off: the driver enabled it at Open and only Stop clears it. A read that
// fails tells nothing (false).
func (w *worker) chipWasReset() bool {
	// Two stable reads must both say off: the bit flipped the same way
	// in two reads of each is far too rare to matter.
	for range 2 {
		v, ok, err := w.d.readStable(w.ctx, w.bo, txSumPasses, 2, regs.TSNSystemControl+4)
		if err != nil || !ok || regs.TSNEnable.Get(uint64(v[0])) != 0 {
			return false
		}
	}
	return true
}

// recoverReset is the driver's reset path, as a kernel driver's: it counts
// the event (ChipResets), counts the RX frames whose metadata entries it
// had taken but not read as lost to the reset (RxResetLost, in RxErrors;
// the caller counts a TX write in flight, TxResetLost), remembers how many
// RX frames it accounted for from the chip before (RxBeforeReset, for the
// audit), re-initialises the chip as Open does (TSN enable) and takes new
// baselines. If the chip cannot be re-initialised (not back yet), it
// reports false and the worker tries again after a backoff.
func (w *worker) recoverReset(reason string) bool {
	d, rs := w.d, &w.reset
	if !rs.pending {
		l := &d.rxl
		lost := uint64(max(l.mk-l.fk, 0))
		d.log.Warn("chip reset detected; re-initialising it", zap.String("why", reason),
			zap.Uint64("rx_lost", lost))
		d.mu.Lock()
		d.stats.ChipResets++
		d.stats.RxResetLost += lost
		d.stats.RxErrors += lost
		d.stats.RxBeforeReset = d.stats.RxAccounted()
		for _, c := range d.chipStats.all() {
			c.restart()
		}
		d.mu.Unlock()
		d.rxl = rxLedger{}
		d.rxSess = rxSession{} // the new chip's base is taken at its first snapshot
		d.txl = txLedger{}
		rs.pending = true
		rs.since = time.Now()
	}
	ctx, cancel := context.WithTimeout(w.ctx, d.cfg.OpenBudget)
	defer cancel()
	if err := d.initChip(ctx, newLifeBackoff()); err != nil {
		if w.ctx.Err() == nil {
			d.log.Warn("re-initialising a reset chip failed; trying again", zap.Error(err))
		}
		return false
	}
	rs.pending = false
	d.log.Info("chip re-initialised after a reset", zap.Duration("took", time.Since(rs.since)))
	rs.lastCheck = time.Now()
	return true
}
