package driver

import (
	"context"
	"errors"
	"time"

	"go.uber.org/zap"

	"tsnsim/chip/proto"
)

// worker is the one SPI thread of the vendor driver. Each round it writes
// one queued TX frame, then reads one RX metadata entry and its frame, so
// TX and RX interleave fairly; it sleeps when the ring is empty and the
// chip reported an empty RX FIFO, until an interrupt or a transmit wakes
// it.
func (d *Driver) worker(ctx context.Context) {
	defer close(d.done)
	d.log.Debug("SPI worker started")
	defer d.log.Debug("SPI worker stopped")
	w := rxBuffers{meta: proto.RxMetaRead(), metaMISO: make([]byte, proto.RxMetaReadLen),
		frameMOSI: proto.RxFrameRead(proto.MaxWireLen)}
	var scratch []byte
	rxPending := true // drain whatever is already queued at open
	irq := d.tr.Interrupt()
	for ctx.Err() == nil {
		select {
		case <-irq:
			rxPending = true
		default:
		}
		progress := false
		if slot, ok := d.takeTx(); ok {
			scratch = d.writeTx(ctx, slot, scratch)
			progress = true
		}
		if rxPending {
			switch got, err := d.receiveOne(ctx, &w); {
			case err != nil:
				if !sleepCtx(ctx, rxErrorBackoff) {
					return
				}
			case got:
				progress = true
			default:
				rxPending = false
			}
		}
		if progress {
			continue
		}
		select {
		case <-irq:
			rxPending = true
		case <-d.kick:
		case <-ctx.Done():
		}
	}
}

type rxBuffers struct {
	meta, metaMISO, frameMOSI []byte
}

// takeTx removes the oldest frame from the ring and wakes a stopped queue.
func (d *Driver) takeTx() (txSlot, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.queued == 0 {
		return txSlot{}, false
	}
	s := d.ring[d.head]
	d.ring[d.head] = txSlot{}
	d.head = (d.head + 1) % len(d.ring)
	d.queued--
	d.inFlight++
	if d.stopped {
		d.stopped = false // netif_wake_queue
		signal(d.wake)
	}
	return s, true
}

// writeTx writes one frame to the chip's TX FIFO; scratch is a reusable
// MISO buffer, returned grown if needed.
func (d *Driver) writeTx(ctx context.Context, s txSlot, scratch []byte) []byte {
	if cap(scratch) < len(s.mosi) {
		scratch = make([]byte, len(s.mosi), proto.TxWriteHeader+proto.MaxWireLen)
	}
	err := d.tr.Transfer(ctx, s.mosi, scratch[:len(s.mosi)])
	d.mu.Lock()
	d.inFlight--
	switch {
	case err != nil && errors.Is(err, context.Canceled):
		d.stats.TxDropped++ // the interface went down before the write
	case err != nil:
		d.stats.TxErrors++
		d.stats.SPIErrors++
	default:
		d.stats.TxPackets++
		d.stats.TxBytes += uint64(s.n)
	}
	d.mu.Unlock()
	if err != nil {
		d.log.Debug("TX write failed", zap.Error(err))
	}
	return scratch
}

// receiveOne reads one RX metadata entry and, if the chip has a frame,
// reads it and hands it up. It reports whether a frame was taken from the
// chip; an error means the metadata read failed (nothing taken).
func (d *Driver) receiveOne(ctx context.Context, w *rxBuffers) (bool, error) {
	if err := d.tr.Transfer(ctx, w.meta, w.metaMISO); err != nil {
		if ctx.Err() == nil {
			d.count(func(s *Stats) { s.SPIErrors++ })
			d.log.Debug("RX metadata read failed", zap.Error(err))
		}
		return false, err
	}
	m := proto.ParseRxMetadata(w.metaMISO[proto.ReadDataStart:])
	if m.FrameLength == 0 {
		return false, nil
	}
	n := int(m.FrameLength)
	valid := n > proto.FCSLen && n <= proto.MaxWireLen
	if !valid {
		// Still read a frame so the chip's frame FIFO stays in step
		// with its metadata FIFO.
		n = min(max(n, 1), proto.MaxWireLen)
	}
	miso := make([]byte, proto.ReadDataStart+n)
	err := d.tr.Transfer(ctx, w.frameMOSI[:proto.ReadDataStart+n], miso)
	wire := miso[proto.ReadDataStart:]
	switch {
	case err != nil:
		d.count(func(s *Stats) { s.SPIErrors++; s.RxErrors++; s.RxFIFOErrors++ })
		d.log.Debug("RX frame read failed", zap.Error(err))
	case !valid:
		d.count(func(s *Stats) { s.RxErrors++; s.RxLengthErrors++ })
	case !proto.FCSValid(wire):
		d.count(func(s *Stats) { s.RxErrors++; s.RxCRCErrors++ })
	default:
		d.deliver(wire[:n-proto.FCSLen])
	}
	return true, nil
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

func (d *Driver) count(f func(*Stats)) {
	d.mu.Lock()
	f(&d.stats)
	d.mu.Unlock()
}

func sleepCtx(ctx context.Context, dur time.Duration) bool {
	t := time.NewTimer(dur)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
