package driver

import (
	"context"
	"time"

	"go.uber.org/zap"

	"tsnsim/chip/proto"
)

// XmitClock says what Transmit does on the SPI bus before queuing a frame.
type XmitClock int

const (
	// XmitClockNone: Transmit never touches SPI; the worker owns the bus
	// for frames (the driver core's design).
	XmitClockNone XmitClock = iota
	// XmitClockSPI: like the vendor driver of chip.md section 6, scenario
	// 2, Transmit reads SYSCOUNT (H, L, H tear-safe, see ReadSysCount)
	// over the shared transport before queuing the frame, so the caller
	// waits for the bus behind the SPI worker. The value only costs bus
	// time: the frame keeps send-now metadata. A failed read is counted in
	// XmitClockErrors and the frame is still queued (send-now metadata
	// does not need the clock); the wait is counted whether or not the
	// read succeeded.
	XmitClockSPI
)

// String names the mode as the CLI spells it.
func (x XmitClock) String() string {
	switch x {
	case XmitClockNone:
		return "none"
	case XmitClockSPI:
		return "spi"
	}
	return "XmitClock(?)"
}

// Transmit is ndo_start_xmit: it pads frame to 60 bytes, appends its FCS,
// prepends send-now tx_metadata and queues it on the TX ring. frame is
// not retained. ErrBusy means the ring is full and the frame was not
// taken (counted in TxBusy); ErrDown and ErrFrameTooLong mean it was
// dropped (counted in TxDropped). With XmitClockSPI it first reads
// SYSCOUNT over SPI, unless the frame is refused anyway.
func (d *Driver) Transmit(frame []byte) error { return d.transmit(frame, nil) }

// transmit is Transmit, with a stamp request when req is not nil. With
// TSN on, the windows, priority and stamp request come from tsnMeta,
// which reads the SYSCOUNT model: no SPI.
func (d *Driver) transmit(frame []byte, req *StampRequest) error {
	if d.cfg.Field != 0 {
		return d.fieldTransmit(frame) // the field driver (field_tx.go): no TSN
	}
	if d.cfg.XmitClock == XmitClockSPI {
		d.mu.Lock()
		sess, refused := d.sess, !d.up || d.queued == len(d.ring)
		d.mu.Unlock()
		if !refused {
			d.readXmitClock(xmitContext(sess))
		}
	}
	return d.enqueue(frame, req)
}

// enqueue is the locked part of Transmit: it counts the frame and queues
// it on the ring, or refuses it; req is transmit's stamp request.
func (d *Driver) enqueue(frame []byte, req *StampRequest) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.stats.TxOffered++
	if !d.up {
		d.stats.TxDropped++
		return ErrDown
	}
	if d.cfg.Field.Has(FieldTxSlot) && d.queued+d.inFlight > 0 {
		// The field driver's slot is taken: NETDEV_TX_OK, frame gone.
		d.stats.TxSlotDrops++
		return nil
	}
	if d.queued == len(d.ring) {
		d.stats.TxBusy++
		d.stopped = true
		return ErrBusy
	}
	wire := max(len(frame), proto.MinFrameLen) + proto.FCSLen
	if wire > proto.MaxWireLen {
		d.stats.TxDropped++
		return ErrFrameTooLong
	}
	meta := proto.SendNow(wire, d.cfg.Priority)
	var x *txExtra
	if d.tsn != nil {
		var err error
		if meta, x, err = d.tsnMeta(frame, wire, meta, req); err != nil {
			d.stats.TxDropped++
			return err
		}
	}
	mosi, err := proto.AppendTxFrameWrite(d.txBuffer(), meta, frame)
	if err != nil {
		d.recycle(mosi)
		d.stats.TxDropped++
		return ErrFrameTooLong
	}
	slot := txSlot{mosi: mosi, n: len(frame), x: x}
	if d.marker != nil {
		slot.offered = time.Now()
	}
	d.ring[(d.head+d.queued)%len(d.ring)] = slot
	d.queued++
	if d.queued == 1 {
		d.txq.Store(1)
	}
	if d.queued == len(d.ring) && !d.cfg.Field.Has(FieldTxSlot) {
		d.stopped = true // netif_stop_queue; the field driver's slot does not
	}
	signal(d.kick)
	return nil
}

// txBuffer returns an empty TX write buffer of full capacity, reused from
// a finished frame when there is one. Called with d.mu held.
func (d *Driver) txBuffer() []byte {
	if k := len(d.free); k > 0 {
		b := d.free[k-1]
		d.free[k-1] = nil
		d.free = d.free[:k-1]
		return b[:0]
	}
	return make([]byte, 0, proto.TxWriteHeader+proto.MaxWireLen)
}

// recycle keeps the buffer of a finished TX write for txBuffer: the
// transports do not retain a transfer's buffers once it returned (the
// chip copies what it queues). Called with d.mu held.
func (d *Driver) recycle(b []byte) {
	if cap(b) == proto.TxWriteHeader+proto.MaxWireLen && len(d.free) < len(d.ring) {
		d.free = append(d.free, b)
	}
}

// readXmitClock is the vendor transmit path's SYSCOUNT read, under the
// session's context (Stop cancels it; the transport bounds each transfer).
func (d *Driver) readXmitClock(ctx context.Context) {
	start := time.Now()
	_, err := d.ReadSysCount(ctx)
	wait := time.Since(start)
	d.count(func(s *Stats) {
		s.XmitClockReads++
		s.XmitClockWait += wait
		s.XmitClockMaxWait = max(s.XmitClockMaxWait, wait)
		if err != nil {
			s.XmitClockErrors++
		}
	})
	if err != nil {
		d.log.Debug("SYSCOUNT read in transmit failed", zap.Error(err), zap.Duration("wait", wait))
	}
}
