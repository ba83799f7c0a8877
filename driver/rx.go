package driver

import (
	"go.uber.org/zap"

	"tsnsim/chip/proto"
	"tsnsim/chip/regs"
)

// receiveOne reads one RX metadata entry and, if the chip had one, reads
// its frame and hands it up. It reports whether the chip had an entry; an
// error means a transfer failed (the ledger knows what to check).
func (w *worker) receiveOne() (bool, error) {
	d, l := w.d, &w.d.rxl
	if err := d.tr.Transfer(w.ctx, w.meta, w.metaMISO); err != nil {
		w.failed("RX metadata read", err)
		l.trouble = true // it may have taken an entry, orphaning its frame
		return false, err
	}
	m := proto.ParseRxMetadata(w.metaMISO[proto.ReadDataStart:])
	if m.FrameLength == 0 {
		return false, nil
	}
	l.mk++
	if l.skip > 0 {
		// Its frame was already taken while resynchronising.
		l.skip--
		d.log.Debug("RX metadata entry without a frame skipped", zap.Uint16("len", m.FrameLength))
		return true, nil
	}
	n := int(m.FrameLength)
	valid := n > proto.FCSLen && n <= proto.MaxWireLen
	if !valid {
		// Still read a frame so the chip's frame FIFO stays in step
		// with its metadata FIFO.
		n = min(max(n, 1), proto.MaxWireLen)
	}
	return true, w.readFrame(n, valid)
}

// readFrame reads the head of the chip's RX frame FIFO as n bytes (incl.
// FCS) and counts it; lenValid is false when the metadata length was out
// of range.
func (w *worker) readFrame(n int, lenValid bool) error {
	d, l := w.d, &w.d.rxl
	miso := make([]byte, proto.ReadDataStart+n)
	if err := d.tr.Transfer(w.ctx, w.frameMOSI[:len(miso)], miso); err != nil {
		w.failed("RX frame read", err)
		l.u++
		l.trouble, l.dirty = true, true
		if lenValid {
			l.candidate = n
		}
		return err
	}
	wire := miso[proto.ReadDataStart:]
	switch {
	case !lenValid:
		l.fk++
		l.trouble = true
		d.count(func(s *Stats) { s.RxErrors++; s.RxLengthErrors++ })
	case proto.FCSValid(wire):
		l.fk++
		d.deliver(wire[:n-proto.FCSLen])
	case allZero(wire):
		// The chip had no frame (a rejected read returns zeros): the
		// frame of this entry is gone already.
		l.trouble, l.dirty = true, true
		d.log.Debug("RX frame FIFO empty under a metadata entry", zap.Int("len", n))
	default:
		l.fk++
		l.trouble = true
		d.count(func(s *Stats) { s.RxErrors++; s.RxCRCErrors++ })
	}
	return nil
}

// discardHead takes the head frame off the chip's RX frame FIFO when it
// has no metadata entry. If a failed read may have left its frame there
// (l.candidate), it reads that length and delivers a frame whose FCS
// checks (RxRetries); otherwise it reads one byte, which still takes the
// whole frame (RxOrphans).
func (w *worker) discardHead() error {
	d, l := w.d, &w.d.rxl
	n, rescue := 1, l.candidate > 0
	if rescue {
		n = l.candidate
	}
	miso := make([]byte, proto.ReadDataStart+n)
	if err := d.tr.Transfer(w.ctx, w.frameMOSI[:len(miso)], miso); err != nil {
		w.failed("RX orphan frame read", err)
		l.u++
		l.dirty = true
		return err
	}
	l.fk++
	wire := miso[proto.ReadDataStart:]
	if rescue {
		l.candidate = 0
		d.count(func(s *Stats) { s.RxRetries++ })
		if proto.FCSValid(wire) {
			// The failed read had not taken it.
			l.u = max(l.u-1, 0)
			d.deliver(wire[:n-proto.FCSLen])
			return nil
		}
		// Not the frame whose read failed: assume the failed reads took
		// their frames (settled when the FIFOs are next empty).
		l.g += l.u
		l.u = 0
	}
	d.count(func(s *Stats) { s.RxErrors++; s.RxOrphans++ })
	return nil
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

func (d *Driver) deliver(frame []byte) {
	ok := d.cfg.Receive != nil && d.cfg.Receive(frame)
	d.count(func(s *Stats) {
		if ok {
			s.RxPackets++
			s.RxBytes += uint64(len(frame))
		} else {
			s.RxDropped++
		}
	})
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
