package driver

import (
	"go.uber.org/zap"
)

// rxLedger is the RX reconciliation state: what the driver knows it took
// off the chip's RX FIFOs since a base, against what the chip's FD
// counters say it accepted.
//
// The chip's metadata FIFO is exact: entries accepted since the base
// (FD_TOTAL_RX_FRAME_CNT - FD_TOTAL_DROP_FRAME_CNT - aBase) minus the
// entries still queued is how many left the chip, whether or not the
// driver saw them. Frames are not: a failed frame read may or may not have
// taken its frame (u counts those), so the frames at the head of the
// frame FIFO without a metadata entry number between (entries taken -
// frames taken - g - u) and (entries taken - frames taken - g). When both
// FIFOs are empty every accepted frame has left the chip and the
// difference to what the driver counted is what failed reads lost.
type rxLedger struct {
	valid     bool
	aBase     uint32 // accepted-frame count of the base, minus the entries then queued
	mk        int64  // metadata entries taken since the base
	fk        int64  // frames taken since the base and counted
	u         int64  // failed frame reads that may or may not have taken a frame
	g         int64  // failed frame reads assumed to have taken theirs, not yet counted
	skip      int    // metadata entries whose frame is gone: read no frame for them
	candidate int    // length of a frame whose read failed and may still be at the head
	trouble   bool   // resynchronise before reading on
	dirty     bool   // reconcile when the FIFOs are next found empty
}

// rebase starts the ledger at s, assuming the frame FIFO holds exactly
// the frames of the queued metadata entries.
func (l *rxLedger) rebase(s rxSnap) {
	*l = rxLedger{valid: true, aBase: s.accepted - uint32(s.metas)}
}

// maxResyncSteps bounds one resynchronisation (orphans discarded in a
// row); more are handled on the next round.
const maxResyncSteps = 32

// maxUnseen bounds how many more metadata entries than it saw the driver
// accepts as taken by failed reads before it decides the counters were
// cleared (the metadata FIFO holds at most 511).
const maxUnseen = 1024

// resync brings the driver's RX reads back in step with the chip: it
// takes an rxSnap, discards orphan frames at the head of the frame FIFO,
// re-reads a frame whose read failed, marks metadata entries whose frame
// is gone, and when both FIFOs are empty counts the frames failed reads
// lost and rebases the ledger. It returns an error when a transfer
// failed; when the state cannot be decided yet (frames kept arriving, or
// a failed read may or may not have taken its frame) it leaves the ledger
// dirty for the next idle moment.
func (w *worker) resync() error {
	d, l := w.d, &w.d.rxl
	for range maxResyncSteps {
		s, err := d.rxSnapshot(w.ctx, w.bo)
		if err != nil {
			return err
		}
		if !s.stable {
			l.trouble, l.dirty = false, true
			return nil
		}
		if !l.valid {
			d.log.Debug("RX ledger baseline taken", zap.Int("metas", s.metas), zap.Int("words", s.words))
			l.rebase(s)
		}
		pm := int64(int32(s.accepted - uint32(s.metas) - l.aBase))
		if pm < 0 || pm > l.mk+maxUnseen {
			d.log.Warn("RX counters moved unexpectedly (cleared?); RX ledger rebased",
				zap.Int64("entries", pm), zap.Int64("seen", l.mk))
			l.rebase(s)
			pm = 0
		}
		if pm != l.mk {
			d.log.Debug("RX metadata entries taken by failed reads", zap.Int64("n", pm-l.mk))
		}
		l.mk = pm
		if s.empty() {
			w.settle(s, pm)
			return nil
		}
		hi := pm - l.fk - l.g // orphan frames at the head, if no failed read took its frame
		lo := hi - l.u
		switch {
		case s.words == 0:
			// Entries whose frames are all gone.
			l.skip = s.metas
			l.trouble = false
			return nil
		case s.metas == 0 || lo >= 1:
			if err := w.discardHead(); err != nil {
				return err
			}
		case hi <= 0:
			l.skip = int(-hi)
			l.trouble = false
			return nil
		case l.candidate == 0:
			l.trouble = false
			return nil
		default:
			// The head is the frame whose read failed, or the next
			// entry's: try it at the failed frame's length.
			if err := w.discardHead(); err != nil {
				return err
			}
		}
	}
	return nil
}

// settle closes the ledger when both RX FIFOs are empty: every frame the
// chip accepted since the base has left it; what the driver did not count
// was lost inside failed reads (RxFIFOErrors).
func (w *worker) settle(s rxSnap, taken int64) {
	d, l := w.d, &w.d.rxl
	switch lost := taken - l.fk; {
	case lost > 0:
		if lost > l.u+l.g {
			d.log.Warn("RX frames lost beyond the failed reads", zap.Int64("lost", lost), zap.Int64("failed", l.u+l.g))
		}
		d.count(func(st *Stats) { st.RxErrors += uint64(lost); st.RxFIFOErrors += uint64(lost) })
	case lost < 0:
		d.log.Warn("RX ledger counted more frames than the chip gave", zap.Int64("excess", -lost))
	}
	l.rebase(s)
}
