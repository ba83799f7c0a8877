package driver

import (
	"go.uber.org/zap"
	"math/bits"

	"tsnsim/chip/proto"
	"tsnsim/chip/regs"
)

// receiveOne reads one RX metadata entry and, if the chip had one, reads
// its frame and hands it up. It reports whether the chip had an entry; an
// error means a transfer failed (the ledger knows what to check).
func (w *worker) receiveOne() (bool, error) {
	l := &w.d.rxl
	var n int
	if len(l.pending) > 0 {
		// Taken while realigning, or by a failed read: its frame is
		// at the head.
		n, l.pending = l.pending[0], l.pending[1:]
		w.rxTicks, w.rxStamped = 0, false // its entry is gone
		if n <= unknownLen {
			return true, w.discardPending(n)
		}
	} else {
		var err error
		if n, err = w.readMeta(); err != nil || n <= 0 {
			return n < 0, err
		}
	}
	return true, w.readFrame(n)
}

// readMeta reads one RX metadata entry and returns its frame length: 0
// when the FIFO was empty, -1 when the length is out of range (corrupted:
// whether an entry was taken is left to the ledger).
func (w *worker) readMeta() (int, error) {
	d, l := w.d, &w.d.rxl
	if err := d.tr.Transfer(w.ctx, w.meta, w.metaMISO); err != nil {
		w.failed("RX metadata read", err)
		l.trouble = true // it may have taken an entry, orphaning its frame
		l.mfail++
		return 0, err
	}
	switch n := int(proto.ParseRxMetadata(w.metaMISO[proto.ReadDataStart:]).FrameLength); {
	case n == 0:
		return 0, nil
	case n <= proto.FCSLen || n > proto.MaxWireLen:
		d.log.Debug("RX metadata length out of range", zap.Int("len", n))
		l.trouble = true
		l.badLen++
		l.mfail++
		return -1, nil
	default:
		l.mk++
		w.rxTicks, w.rxStamped = proto.ParseRxMetadata(w.metaMISO[proto.ReadDataStart:]).Timestamp, true
		return n, nil
	}
}

// readFrame reads the head of the chip's RX frame FIFO as n bytes (incl.
// FCS) and counts it.
func (w *worker) readFrame(n int) error {
	d, l := w.d, &w.d.rxl
	miso := make([]byte, proto.ReadDataStart+n)
	// The entry is taken: finish its frame even if the interface is
	// going down, so Stop does not leave a frame without its metadata
	// (a transport that abandons cancelled transfers, like the socket
	// client, would otherwise leave it read or not, unknown). Bounded:
	// w.finish expires LifecycleTimeout/2 after Stop.
	if err := d.tr.Transfer(w.finish, w.frameMOSI[:len(miso)], miso); err != nil {
		w.failed("RX frame read", err)
		l.u++
		l.trouble, l.dirty = true, true
		l.candidate = n
		return err
	}
	wire := miso[proto.ReadDataStart:]
	l.candidate = 0 // whatever the head was, it is gone
	switch {
	case proto.FCSValid(wire):
		l.fk++
		l.bad = 0
		d.deliver(wire[:d.upLen(n)], d.rxStamp(w.rxTicks, w.rxStamped))
		return nil
	case nearZero(wire):
		// The chip had no frame (a rejected read returns zeros, maybe
		// with a few bits flipped on MISO: no real frame, with its MAC
		// addresses and FCS, is that empty): the frame of this entry is
		// gone already.
		l.dirty = true
		d.log.Debug("RX frame FIFO empty under a metadata entry", zap.Int("len", n))
	default:
		l.fk++
		d.count(func(s *Stats) { s.RxErrors++; s.RxCRCErrors++ })
	}
	l.trouble = true
	l.bad++
	return nil
}

// discardHead takes the head frame off the chip's RX frame FIFO when it
// has no metadata entry: a one-byte read still takes the whole frame
// (RxOrphans).
func (w *worker) discardHead() error { return w.discard(false) }

// discardPending discards the frame of a pending entry of unknown length
// (unknownLen: its entry was taken by a failed read, RxOrphans; badLen:
// its entry's length was out of range, RxLengthErrors).
func (w *worker) discardPending(n int) error { return w.discard(n == badLen) }

func (w *worker) discard(badLength bool) error {
	d, l := w.d, &w.d.rxl
	miso := make([]byte, proto.ReadDataStart+1)
	if err := d.tr.Transfer(w.ctx, w.frameMOSI[:len(miso)], miso); err != nil {
		w.failed("RX orphan frame read", err)
		l.u++
		l.trouble, l.dirty = true, true
		return err
	}
	l.fk++
	d.count(func(s *Stats) {
		s.RxErrors++
		if badLength {
			s.RxLengthErrors++
		} else {
			s.RxOrphans++
		}
	})
	return nil
}

// readCandidate re-reads the head of the frame FIFO at the length of the
// frame whose read failed (l.candidate) and reports whether its FCS
// checked: then it is delivered (RxRetries), otherwise counted in
// RxOrphans.
func (w *worker) readCandidate() (bool, error) {
	d, l := w.d, &w.d.rxl
	n := l.candidate
	miso := make([]byte, proto.ReadDataStart+n)
	if err := d.tr.Transfer(w.ctx, w.frameMOSI[:len(miso)], miso); err != nil {
		w.failed("RX frame re-read", err)
		l.u++
		return false, err
	}
	l.fk++
	l.candidate = 0
	d.count(func(s *Stats) { s.RxRetries++ })
	if wire := miso[proto.ReadDataStart:]; proto.FCSValid(wire) {
		d.deliver(wire[:d.upLen(n)], HWStamp{}) // its entry was read before the failure: stamp not kept
		return true, nil
	}
	d.count(func(s *Stats) { s.RxErrors++; s.RxOrphans++ })
	return false, nil
}

// tryHead settles one failed frame read when the head of the frame FIFO
// is either that frame or, if the failed read took it, the next one. It
// reads the head at the failed frame's length: if the FCS checks, the
// failed read had not taken it (delivered, RxRetries). Otherwise the
// failed read took it and the frame just read was the next one's
// (RxOrphans): the next one's metadata entry, pending or still in the
// chip, is dropped, and the lost frame is counted in RxFIFOErrors when
// the ledger is next settled.
func (w *worker) tryHead() error {
	d, l := w.d, &w.d.rxl
	ok, err := w.readCandidate()
	if err != nil {
		return err
	}
	l.u = 0
	if ok {
		return nil
	}
	// The failed read took its frame: counted when the ledger is next
	// settled (exactly, whether or not this conclusion was right).
	l.g++
	if len(l.pending) > 0 {
		l.pending = l.pending[1:]
		return nil
	}
	n, err := w.readMeta()
	if err == nil && n <= 0 {
		d.log.Debug("RX frame without metadata after a failed read")
		l.dirty = true
	}
	return err
}

// poll is the idle check for lost interrupt edges: one read of
// TSN_RX_FIFO_STATUS_L. It reports whether frames wait with their
// metadata; frames without metadata mark the ledger for resynchronising.
func (w *worker) poll() (bool, error) {
	v, err := w.d.ReadRegister(w.ctx, regs.TSNRxFIFOStatus+4)
	if err != nil {
		w.failed("RX FIFO status poll", err)
		return false, err
	}
	switch metas, words := regs.RxMetaFIFODataCnt.Get(uint64(v)), regs.RxFrameFIFODataCnt.Get(uint64(v)); {
	case metas > 0:
		return true, nil
	case words > 0:
		w.d.rxl.trouble = true
	}
	return false, nil
}

// deliver hands a frame up with its RX stamp (invalid: none).
func (d *Driver) deliver(frame []byte, st HWStamp) {
	var ok bool
	if d.tsn != nil && d.tsn.cfg.ReceiveStamped != nil {
		ok = d.tsn.cfg.ReceiveStamped(frame, st)
	} else {
		ok = d.cfg.Receive != nil && d.cfg.Receive(frame)
	}
	if d.tsn != nil {
		d.mu.Lock()
		if st.Valid {
			d.tsn.stats.RxStamped++
		} else if d.tsn.cfg.Timestamps {
			d.tsn.stats.RxUnstamped++
		}
		d.mu.Unlock()
	}
	d.count(func(s *Stats) {
		if ok {
			s.RxPackets++
			s.RxBytes += uint64(len(frame))
		} else {
			s.RxDropped++
		}
	})
}

// maxEmptyBits is how many set bits a frame read may show and still be
// taken for the zeros of a read the chip rejected (its FIFO was empty)
// with bits flipped on MISO: a real frame has a source MAC address and an
// FCS, far more set bits than that.
const maxEmptyBits = 8

// nearZero reports whether b has at most maxEmptyBits bits set.
func nearZero(b []byte) bool {
	n := 0
	for _, c := range b {
		if n += bits.OnesCount8(c); n > maxEmptyBits {
			return false
		}
	}
	return true
}
