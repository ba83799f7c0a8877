// Package driver is the LAN1QTSN driver core: one implementation, written
// against the spibridge.Transport seam only, used over every transport.
//
// It follows the vendor's Linux driver (chip.md section 1): a netdev-like
// lifecycle (Open writes TSN enable, Stop clears it), a transmit path that
// pads, appends the FCS, prepends tx_metadata and queues on a TX ring, and
// one SPI worker goroutine that owns the bus for frames: woken by the
// interrupt line or by transmit, it writes queued TX frames and drains RX
// until the chip reports an empty metadata FIFO.
package driver

import (
	"context"
	"errors"
	"sync"
	"time"

	"go.uber.org/zap"

	"tsnsim/chip/proto"
	"tsnsim/chip/regs"
	"tsnsim/spibridge"
)

// DefaultTxRingSize is the TX ring of the fixed vendor driver (chip.md
// section 6, scenario 1).
const DefaultTxRingSize = 64

// rxErrorBackoff is how long the worker waits before retrying RX after a
// failed SPI transfer, so a failing bus is not hammered.
const rxErrorBackoff = time.Millisecond

// Errors of Transmit.
var (
	// ErrBusy is NETDEV_TX_BUSY: the TX ring is full; the frame was not
	// taken. Wait for Wake and offer it again, or drop it.
	ErrBusy = errors.New("driver: TX ring full (NETDEV_TX_BUSY)")
	// ErrDown: the interface is not open; the frame was dropped.
	ErrDown = errors.New("driver: interface is down")
	// ErrFrameTooLong: frame plus FCS exceeds 1560 bytes; dropped.
	ErrFrameTooLong = errors.New("driver: frame plus FCS exceeds 1560 bytes")
)

// Config sets up a driver.
type Config struct {
	Name       string // interface name, for logs
	TxRingSize int    // default DefaultTxRingSize
	// Priority is put in the tick_count words of tx_metadata
	// (proto.PriorityBestEffort when zero).
	Priority uint8
	// Receive hands a received frame (FCS stripped) to the host stack;
	// the stack owns the slice. It is called from the SPI worker and
	// must not block for long; it returns false when the stack could not
	// take the frame (counted in RxDropped).
	Receive func(frame []byte) bool
	Logger  *zap.Logger
}

// Driver is one network interface driven over one SPI transport.
type Driver struct {
	tr  spibridge.Transport
	cfg Config
	log *zap.Logger

	life sync.Mutex // serialises Open and Stop

	mu       sync.Mutex
	ring     []txSlot // circular, len == TxRingSize
	head     int
	queued   int
	inFlight int  // taken from the ring, not yet accounted
	stopped  bool // netif queue stopped
	up       bool
	stats    Stats

	kick   chan struct{} // wakes the worker
	wake   chan struct{} // queue woken after being stopped
	cancel context.CancelFunc
	done   chan struct{}
}

type txSlot struct {
	mosi []byte // complete TX write transaction
	n    int    // frame length as offered (before padding and FCS)
}

// New returns a driver for the chip behind tr. It is down until Open.
func New(tr spibridge.Transport, cfg Config) *Driver {
	if cfg.TxRingSize <= 0 {
		cfg.TxRingSize = DefaultTxRingSize
	}
	if cfg.Priority == 0 {
		cfg.Priority = proto.PriorityBestEffort
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	return &Driver{
		tr: tr, cfg: cfg,
		log:  cfg.Logger.Named("driver").With(zap.String("if", cfg.Name)),
		ring: make([]txSlot, cfg.TxRingSize),
		kick: make(chan struct{}, 1),
		wake: make(chan struct{}, 1),
	}
}

// Open brings the interface up: it enables TSN on the chip and starts the
// SPI worker.
func (d *Driver) Open(ctx context.Context) error {
	d.life.Lock()
	defer d.life.Unlock()
	d.mu.Lock()
	if d.up {
		d.mu.Unlock()
		return errors.New("driver: already open")
	}
	d.mu.Unlock()
	if err := d.WriteRegister(ctx, regs.TSNSystemControl+4, uint32(regs.TSNEnable.Put(0, 1))); err != nil {
		return err
	}
	wctx, cancel := context.WithCancel(context.Background())
	d.mu.Lock()
	d.up, d.stopped, d.cancel, d.done = true, false, cancel, make(chan struct{})
	d.mu.Unlock()
	go d.worker(wctx)
	return nil
}

// Stop brings the interface down: it stops the SPI worker, drops the
// frames still on the TX ring (counted in TxDropped) and disables TSN.
func (d *Driver) Stop(ctx context.Context) error {
	d.life.Lock()
	defer d.life.Unlock()
	d.mu.Lock()
	if !d.up {
		d.mu.Unlock()
		return nil
	}
	d.up = false
	cancel, done := d.cancel, d.done
	d.mu.Unlock()
	cancel()
	<-done
	d.mu.Lock()
	d.stats.TxDropped += uint64(d.queued)
	for d.queued > 0 {
		d.ring[d.head] = txSlot{}
		d.head = (d.head + 1) % len(d.ring)
		d.queued--
	}
	d.mu.Unlock()
	return d.WriteRegister(ctx, regs.TSNSystemControl+4, 0)
}

// Transmit is ndo_start_xmit: it pads frame to 60 bytes, appends its FCS,
// prepends send-now tx_metadata and queues it on the TX ring. frame is
// not retained. ErrBusy means the ring is full and the frame was not
// taken (counted in TxBusy); ErrDown and ErrFrameTooLong mean it was
// dropped (counted in TxDropped).
func (d *Driver) Transmit(frame []byte) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.stats.TxOffered++
	if !d.up {
		d.stats.TxDropped++
		return ErrDown
	}
	if d.queued == len(d.ring) {
		d.stats.TxBusy++
		d.stopped = true
		return ErrBusy
	}
	wire := max(len(frame), proto.MinFrameLen) + proto.FCSLen
	mosi, err := proto.TxFrameWrite(proto.SendNow(wire, d.cfg.Priority), frame)
	if err != nil {
		d.stats.TxDropped++
		return ErrFrameTooLong
	}
	d.ring[(d.head+d.queued)%len(d.ring)] = txSlot{mosi: mosi, n: len(frame)}
	d.queued++
	if d.queued == len(d.ring) {
		d.stopped = true // netif_stop_queue
	}
	signal(d.kick)
	return nil
}

// QueueStopped reports whether the TX queue is stopped (ring full).
func (d *Driver) QueueStopped() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.stopped
}

// Wake delivers a value each time a stopped TX queue is woken because
// the ring has room again (netif_wake_queue), coalesced.
func (d *Driver) Wake() <-chan struct{} { return d.wake }

// Up reports whether the interface is open.
func (d *Driver) Up() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.up
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}
