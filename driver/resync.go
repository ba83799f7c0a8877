package driver

import (
	"context"
	"errors"
	"slices"

	"go.uber.org/zap"

	"tsnsim/chip"
	"tsnsim/chip/proto"
)

// rxLedger is the RX reconciliation state: what the driver knows it took
// off the chip's RX FIFOs since a base, against what the chip's FD
// counters say it accepted.
//
// The chip's metadata FIFO is exact: entries accepted since the base
// (FD_TOTAL_RX_FRAME_CNT - FD_TOTAL_DROP_FRAME_CNT - aBase) minus the
// entries still queued is how many left the chip, whether or not the
// driver saw them. Frames are not: a failed frame read may or may not have
// taken its frame (u counts those). With no such read pending, the frames
// at the head of the frame FIFO that have no entry in the chip number
// exactly (entries taken - frames taken); otherwise the driver realigns:
// it takes every queued entry (their lengths are then known), and the
// frame FIFO level in 16-byte words says which frames are still there.
type rxLedger struct {
	valid     bool
	aBase     uint32 // accepted-frame count at the base, minus the frames then queued
	mk        int64  // metadata entries taken since the base (pending ones included)
	fk        int64  // frames taken since the base and counted
	u         int64  // failed frame reads that may or may not have taken a frame
	g         int64  // failed frame reads found to have taken their frame, not yet counted
	candidate int    // length of a frame whose read failed and may still be queued
	pending   []int  // lengths of entries taken while realigning; their frames are next
	trouble   bool   // resynchronise before reading on
	unstable  int    // snapshots in a row spoilt by arriving frames
	bad       int    // bad frames in a row: two mean the ledger is out of step
	badLen    int    // metadata entries read with a length out of range, not yet placed
	dirty     bool   // failed reads to settle at the next idle moment
	mfail     int64  // metadata reads since the base that failed or read a length out of range
	jumps     int    // snapshots in a row whose entry count the driver's own reads cannot explain
}

// rebase starts the ledger at s with the frame FIFO holding exactly the
// frames of the pending entries and of the entries queued in the chip.
func (l *rxLedger) rebase(s rxSnap, pending []int) {
	*l = rxLedger{valid: true, aBase: s.accepted - uint32(s.metas+len(pending)),
		mk: int64(len(pending)), pending: pending}
}

// errResetPending: the chip was found reset and is not re-initialised yet.
var errResetPending = errors.New("driver: chip reset, not re-initialised yet")

// maxUnexplained is how many more metadata entries than its failed or
// corrupted metadata reads explain the driver accepts as gone without
// reading the counters again (a length corrupted to zero on MISO reads
// as an empty FIFO); maxJumps is how many stable snapshots in a row must
// agree on a larger jump before it is believed.
const (
	maxUnexplained = 8
	maxJumps       = 3
)

// maxResyncSteps bounds one resynchronisation (snapshots taken); the rest
// is done on the next round.
const maxResyncSteps = 32

// maxUnstable bounds the resynchronisations in a row that find frames
// arriving too fast for a snapshot, after which RX reads go on unchecked
// (the ledger is settled at the next idle moment).
const maxUnstable = 8

// maxUnseen bounds how many more metadata entries than it saw the driver
// accepts as taken by failed reads before it decides the counters were
// cleared (the metadata FIFO holds at most 511).
const maxUnseen = 1024

// words is how many 16-byte frame FIFO words a frame of n bytes takes.
func words(n int) int { return (n + chip.FrameFIFOWordLen - 1) / chip.FrameFIFOWordLen }

func sumWords(lengths []int) int {
	w := 0
	for _, n := range lengths {
		w += words(n)
	}
	return w
}

// resync brings the driver's RX reads back in step with the chip after a
// failed RX transfer, a bad frame or an idle poll that found frames
// without metadata. It takes an rxSnap; with no failed frame read
// pending it discards exactly the orphan frames the counters reveal,
// otherwise it realigns. It returns an error when a transfer failed.
// While l.trouble stays set (frames arriving during the snapshot, or more
// to do than one call does) the worker reads no RX.
func (w *worker) resync() error {
	d, l := w.d, &w.d.rxl
	for range maxResyncSteps {
		s, err := d.rxSnapshot(w.ctx, w.bo)
		if err != nil {
			return err
		}
		if w.unsettled(s) {
			return nil
		}
		if !l.valid {
			d.log.Debug("RX ledger baseline taken", zap.Int("metas", s.metas), zap.Int("words", s.words))
			l.rebase(s, nil)
			d.sessionBase(s)
		}
		pm := int64(int32(s.accepted - uint32(s.metas) - l.aBase))
		if pm < 0 && w.chipWasReset() {
			// Counters behind the baseline and TSN off: the chip was
			// reset or replaced.
			if !w.recoverReset("RX counters behind the baseline, TSN off") {
				return errResetPending
			}
			return nil
		}
		if pm < 0 || pm > l.mk+maxUnseen {
			d.log.Warn("RX counters moved unexpectedly (cleared?); RX ledger rebased",
				zap.Int64("entries", pm), zap.Int64("seen", l.mk))
			l.rebase(s, nil)
			pm = 0
		}
		if unseen := pm - l.mk; unseen > l.mfail+maxUnexplained && l.jumps < maxJumps {
			// Each failed (or corrupted) metadata read takes at most one
			// entry: more entries gone than that is implausible. Read
			// again before believing it.
			l.jumps++
			d.log.Debug("RX entry count jumped beyond what failed reads explain; reading again",
				zap.Int64("unseen", unseen), zap.Int64("failed_meta_reads", l.mfail))
			continue
		}
		l.jumps = 0
		if unseen := pm - l.mk; unseen != 0 {
			d.log.Debug("RX metadata entries taken by failed reads", zap.Int64("n", unseen))
			// A failed metadata read is followed straight by a
			// resynchronisation, so the entries it took are the last
			// ones taken: their frames follow the pending ones.
			for range max(unseen, 0) {
				mark := unknownLen
				if l.badLen > 0 {
					mark = badLen
					l.badLen--
				}
				l.pending = append(l.pending, mark)
			}
			l.mk = pm
		}
		if l.badLen > 0 {
			d.log.Debug("RX metadata corrupted on an empty FIFO", zap.Int("n", l.badLen))
			l.badLen = 0
		}
		np := int64(len(l.pending))
		orphans := pm - l.fk - l.g - np // frames ahead of the pending ones with no entry anywhere
		switch {
		case s.empty() && np == 0:
			w.settle(s, nil)
			return nil
		case l.u == 1 && l.candidate > 0 && orphans == 1:
			// The head is the frame whose read failed, or (if that
			// read took it) the next one: tell them apart by FCS.
			if err := w.tryHead(); err != nil {
				return err
			}
		case l.u > 0 && orphans-l.u >= 1:
			// Orphans ahead of any frame a failed read may have left.
			if err := w.discardHead(); err != nil {
				return err
			}
		case l.u == 0 && orphans < 0 && l.bad < 2:
			// Entries whose frames are gone: the oldest pending ones,
			// then the next ones in the chip.
			if drop := int(min(-orphans, np)); drop > 0 {
				l.pending = l.pending[drop:]
				continue
			}
			if _, err := w.readMeta(); err != nil {
				return err
			}
		case l.u > 0 || orphans < 0 || l.bad >= 2:
			return w.realign(s)
		case orphans > 0:
			if err := w.discardHead(); err != nil {
				return err
			}
		case s.metas == 0 && !wordsFit(s.words, l.pending):
			// The frame FIFO disagrees with the ledger.
			return w.realign(s)
		default:
			l.trouble = false
			return nil
		}
	}
	return nil
}

// unsettled reports whether snapshot s was spoilt by arriving frames.
// Then RX reads wait for the next round's attempt, but not forever:
// after maxUnstable spoilt attempts in a row they go on unchecked and the
// ledger is settled at the next idle moment.
func (w *worker) unsettled(s rxSnap) bool {
	l := &w.d.rxl
	if s.stable {
		l.unstable = 0
		return false
	}
	if l.unstable++; l.unstable >= maxUnstable {
		w.d.log.Debug("RX resync gave up for now: frames keep arriving", zap.Int("tries", l.unstable))
		l.trouble, l.dirty, l.unstable = false, true, 0
	}
	return true
}

// Pending entries whose frame is discarded when its turn comes: unknownLen
// for an entry taken by a failed read, badLen for one whose length was out
// of range.
const (
	unknownLen = 0
	badLen     = -1
)

// wordsFit reports whether w frame FIFO words can be the frames of the
// pending entries (unknown lengths: 1 to 98 words).
func wordsFit(w int, pending []int) bool {
	known, unknown := 0, 0
	for _, n := range pending {
		if n <= unknownLen {
			unknown++
		} else {
			known += words(n)
		}
	}
	return w >= known+unknown && w <= known+unknown*words(proto.MaxWireLen)
}

// realign takes every metadata entry queued in the chip (their frames
// are behind whatever is at the head of the frame FIFO), then compares
// the frame FIFO level with the words those frames take: more words mean
// frames without an entry at the head (the frame whose read failed,
// re-read at its length and delivered when its FCS checks, or orphans,
// discarded); fewer mean the first entries' frames are already gone. Once
// the words match, the frames queued are exactly those of the entries
// taken, which become l.pending, and the ledger is settled.
func (w *worker) realign(s rxSnap) error {
	d, l := w.d, &w.d.rxl
	for range maxResyncSteps {
		if w.unsettled(s) {
			return nil
		}
		switch extra := s.words - sumWords(l.pending); {
		case s.metas > 0:
			for range s.metas {
				n, err := w.readMeta()
				if err != nil || n < 0 {
					return err // a corrupted entry: the next resync places it
				}
				if n == 0 {
					break // cannot happen: only the driver takes entries
				}
				l.pending = append(l.pending, n)
			}
		case slices.ContainsFunc(l.pending, func(n int) bool { return n <= unknownLen }):
			// An entry of unknown length among them: the level
			// cannot tell which frames are there.
			return w.flush(s)
		case extra == 0:
			w.settle(s, l.pending)
			return nil
		case extra > 0 && l.candidate > 0 && extra == words(l.candidate):
			if _, err := w.readCandidate(); err != nil {
				return err
			}
		case extra > 0:
			if err := w.discardHead(); err != nil {
				return err
			}
		default:
			// Frames of the first pending entries are gone already.
			drop := 0
			for extra < 0 && drop < len(l.pending) {
				extra += words(l.pending[drop])
				drop++
			}
			if extra != 0 {
				return w.flush(s)
			}
			d.log.Debug("RX entries whose frames are gone", zap.Int("n", drop))
			l.pending = l.pending[drop:]
		}
		var err error
		if s, err = d.rxSnapshot(w.ctx, w.bo); err != nil {
			return err
		}
	}
	return nil // l.trouble stays: go on next round
}

// flush is the last resort when the frames queued in the chip cannot be
// matched with metadata entries: it takes every entry and discards every
// frame (RxOrphans) until both FIFOs are empty, then settles the ledger.
func (w *worker) flush(s rxSnap) error {
	d, l := w.d, &w.d.rxl
	d.log.Debug("RX frames cannot be matched with their metadata; flushing the RX FIFOs",
		zap.Int("metas", s.metas), zap.Int("words", s.words), zap.Int("pending", len(l.pending)))
	l.pending, l.candidate = nil, 0
	for range maxResyncSteps {
		if w.unsettled(s) {
			return nil
		}
		switch {
		case s.metas > 0:
			for range s.metas {
				if _, err := w.readMeta(); err != nil {
					return err
				}
			}
		case s.words > 0:
			if err := w.discardHead(); err != nil {
				return err
			}
		default:
			w.settle(s, nil)
			return nil
		}
		var err error
		if s, err = d.rxSnapshot(w.ctx, w.bo); err != nil {
			return err
		}
	}
	return nil // l.trouble stays: go on next round
}

// settle closes the ledger when the frames queued in the chip are known
// to be exactly those of the pending entries (s.metas == 0): every other
// frame the chip accepted since the base has left it, and what the driver
// did not count was lost inside failed reads (RxFIFOErrors).
func (w *worker) settle(s rxSnap, pending []int) {
	d, l := w.d, &w.d.rxl
	taken := int64(int32(s.accepted-l.aBase)) - int64(len(pending))
	switch lost := taken - l.fk; {
	case lost > 0:
		if lost > l.u {
			d.log.Debug("RX frames lost beyond the failed frame reads", zap.Int64("lost", lost), zap.Int64("failed", l.u))
		}
		d.count(func(st *Stats) { st.RxErrors += uint64(lost); st.RxFIFOErrors += uint64(lost) })
		d.rxSess.guessed += uint64(lost)
	case lost < 0:
		d.log.Warn("RX ledger counted more frames than the chip gave", zap.Int64("excess", -lost))
	}
	l.rebase(s, pending)
}

// rxSession is the RX side of a session (or of a chip, after a reset),
// for the exact settlement at Stop: entries gone from the chip
// (accepted - queued) and frames the driver had accounted for
// (RxAccounted) at the session's first stable snapshot.
type rxSession struct {
	gone    uint32
	counted uint64
	valid   bool
	guessed uint64 // RxFIFOErrors counted by settle in the session (inferred, not seen)
}

// sessionBase takes the session's RX base at stable snapshot s, once.
func (d *Driver) sessionBase(s rxSnap) {
	if d.rxSess.valid || !s.stable {
		return
	}
	d.rxSess = rxSession{gone: s.accepted - uint32(s.metas), counted: d.Stats().RxAccounted(), valid: true, guessed: d.rxSess.guessed}
}

// settleRx counts, when the interface goes down, the frames whose
// metadata entries the driver took in this session but never counted
// (taken while realigning, before a failed frame read, or lost in
// failed reads not settled yet): they are lost to this session (RxErrors,
// RxFIFOErrors), so none is left uncounted. The count is exact when the
// chip answers: a stable snapshot says how many entries left the chip
// since the session's base, whatever the ledger's later rebases did, and
// every one the driver did not account for is counted here. Otherwise it
// is what the ledger knows it took. The next Open starts a new ledger.
func (d *Driver) settleRx(ctx context.Context) {
	l := &d.rxl
	// mk counts every entry taken since the ledger's base (pending ones
	// and those of failed frame reads included), fk the frames counted.
	n := max(l.mk-l.fk, 0)
	exact := false
	if d.rxSess.valid {
		for range 5 {
			s, err := d.rxSnapshot(ctx, newLifeBackoff())
			if err != nil {
				break
			}
			if s.stable {
				gone := int64(int32(s.accepted - uint32(s.metas) - d.rxSess.gone))
				counted := int64(d.Stats().RxAccounted() - d.rxSess.counted)
				if excess := counted - gone; excess > 0 {
					// Frames the ledger took for lost (RxFIFOErrors)
					// that were read after all, and so counted twice:
					// the exact count replaces the guess.
					fix := min(uint64(excess), d.rxSess.guessed)
					d.log.Warn("RX ledger counted more frames than the chip gave this session; RX FIFO errors corrected",
						zap.Int64("excess", excess), zap.Uint64("corrected", fix))
					d.count(func(st *Stats) { st.RxErrors -= fix; st.RxFIFOErrors -= fix })
				}
				n, exact = max(gone-counted, 0), true
				break
			}
		}
	}
	*l = rxLedger{}
	d.rxSess = rxSession{}
	if n == 0 {
		return
	}
	d.log.Debug("RX frames taken but not read at Stop", zap.Int64("frames", n), zap.Bool("exact", exact))
	d.count(func(s *Stats) { s.RxErrors += uint64(n); s.RxFIFOErrors += uint64(n) })
}
