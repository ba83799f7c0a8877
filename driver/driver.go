// Package driver is the LAN1QTSN driver core: one implementation, written
// against the spibridge.Transport seam only, used over every transport.
//
// It follows the vendor's Linux driver (chip.md section 1): a netdev-like
// lifecycle (Open writes TSN enable, Stop clears it), a transmit path that
// pads, appends the FCS, prepends tx_metadata and queues on a TX ring, and
// one SPI worker goroutine that owns the bus for frames: woken by the
// interrupt line or by transmit, it writes queued TX frames and drains RX
// until the chip reports an empty metadata FIFO.
//
// # Faults
//
// A failed SPI transfer may or may not have reached the chip (a timeout
// before the chip saw it, or after it acted). The driver never treats a
// failed transfer as done and never guesses where the chip can tell:
//
//   - TX: at Open the driver reads the low halves of FS_TOTAL_RX_FRAME_CNT
//     and FS_TOTAL_BACK_PRESSURE_EVENT_CNT; their sum counts every TX
//     write the chip took or refused for space, and the driver keeps the
//     sum it expects (mod 2^32) as it writes. After a failed write it reads
//     them again (each value read until one value leads by two reads,
//     retried with backoff for as long as the bus fails: a chip server
//     restarting or a stuck bus delays the answer, it does not turn it
//     into a guess): expected+1 means the chip took the frame (TxPackets,
//     TxReconciled); expected means it did not, and the write is repeated
//     after a backoff (TxRetries), MaxTxAttempts writes in all, then
//     TxErrors; anything else (counters cleared, or never stable) counts
//     TxErrors, takes the read sum as the new baseline and is logged. A
//     write cut short by Stop is reconciled by Stop (taken: TxPackets; not
//     taken: TxDropped). A write the chip refused for space is lost on the
//     chip and counted there (FS_TOTAL_BACK_PRESSURE_EVENT_CNT), as sent
//     by the driver.
//   - RX: a failed metadata read may have taken an entry, orphaning its
//     frame; a failed frame read may or may not have taken its frame. After
//     any RX transfer error, bad FCS or bad length, or an idle poll that
//     finds frames without metadata, the driver reads a snapshot of
//     FD_TOTAL_RX_FRAME_CNT_L, FD_TOTAL_DROP_FRAME_CNT_L and
//     TSN_RX_FIFO_STATUS_L (passes repeated until two agree: consistent, and
//     not corrupted on MISO). The FD counters minus the metadata FIFO level
//     say exactly how many entries left the chip, so orphans are known by
//     number and discarded in order (RxOrphans, in RxErrors). One failed
//     frame read is settled by reading the head at that frame's length: a
//     good FCS means it was still there (delivered, RxRetries); otherwise
//     the failed read took it (RxFIFOErrors) and the frame just read was the
//     next one's (RxOrphans; its entry is dropped). Anything less clear
//     (several failed reads, bad frames in a row) is realigned: the driver
//     takes every queued entry and matches the frame FIFO level (16-byte
//     words) against their lengths, which tells which frames are still
//     there; if nothing matches, both FIFOs are flushed (RxOrphans).
//     Whenever the queued frames are known exactly the ledger is settled:
//     frames the chip accepted that the driver never counted were lost
//     inside failed reads (RxFIFOErrors). No frame is counted twice. A
//     discard is a one-byte frame read, which takes the whole head frame
//     (the chip counts a length-mismatch protocol error).
//   - Backoff: after a failed transfer the worker waits, exponentially
//     from 1 ms to 64 ms, reset by the next successful round; draining
//     resumes after errors.
//   - Lost or spurious interrupt edges: unless it is draining RX anyway,
//     the worker polls TSN_RX_FIFO_STATUS every Config.PollInterval with
//     one register read and drains what it finds (RxPollRecoveries), so
//     frames behind a lost edge wait at most PollInterval plus the drain
//     time. A spurious edge costs one empty metadata read.
//   - Every wait has a bound: transfers run under a context that Stop
//     cancels, backoffs stop on cancellation, and Open and Stop give up
//     with an error after a bounded number of retries on a failing bus or
//     after LifecycleTimeout on one that never answers.
package driver

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"

	"tsnsim/chip/proto"
	"tsnsim/chip/regs"
	"tsnsim/spibridge"
)

// DefaultTxRingSize is the TX ring of the fixed vendor driver (chip.md
// section 6, scenario 1).
const DefaultTxRingSize = 64

// DefaultPollInterval is how often an idle worker looks at
// TSN_RX_FIFO_STATUS for frames whose interrupt edge was lost: one 8-byte
// register read (about 24 us of bus time at 15 MHz) per 10 ms.
const DefaultPollInterval = 10 * time.Millisecond

// MaxTxAttempts is how many times the worker writes one TX frame that the
// chip was found not to have taken after a failed write.
const MaxTxAttempts = 3

// LifecycleTimeout bounds Open and Stop on a bus that never answers: each
// runs under the caller's context cut to this long, and Stop waits this
// long at most for the SPI worker to leave a transfer that does not
// honour cancellation.
const LifecycleTimeout = time.Second

// Backoff after failed transfers: exponential between these bounds.
const (
	minBackoff = time.Millisecond
	maxBackoff = 64 * time.Millisecond
)

// regAttempts bounds the tries of one register access of the driver's own
// (Open, Stop, reconciliation); with the backoff that is at most about
// 15 ms of waiting.
const regAttempts = 5

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
	// PollInterval is how often the idle worker reads TSN_RX_FIFO_STATUS
	// to recover frames whose interrupt edge was lost (zero or negative:
	// DefaultPollInterval; polling cannot be turned off).
	PollInterval time.Duration
	// XmitClock says whether Transmit reads SYSCOUNT over SPI (chip.md
	// section 6, scenario 2); default XmitClockNone.
	XmitClock XmitClock
	// TSN turns on the clock model, PHC, hardware timestamps and taprio
	// (tsn.go); all off by default.
	TSN    TSNConfig
	Logger *zap.Logger
}

// Driver is one network interface driven over one SPI transport.
type Driver struct {
	tr  spibridge.Transport
	ctr *countingTransport // tr: counts the transfers issued from Transmit
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
	sess     context.Context // the open session, cancelled by Stop

	// Owned by the worker while it runs, by Open and Stop otherwise.
	txl   txLedger
	rxl   rxLedger
	limbo *txSlot // a write cut short by cancellation, not yet reconciled

	kick   chan struct{} // wakes the worker
	wake   chan struct{} // queue woken after being stopped
	cancel context.CancelFunc
	done   chan struct{} // closed when the worker has stopped

	// TSN (nil when off): the SYSCOUNT model, the PHC, stamps and taprio.
	clk *sysClock
	phc *phc
	tsn *tsnState
}

type txSlot struct {
	mosi []byte   // complete TX write transaction
	n    int      // frame length as offered (before padding and FCS)
	x    *txExtra // TSN: stamp request, window (nil: none)
}

// New returns a driver for the chip behind tr. It is down until Open.
func New(tr spibridge.Transport, cfg Config) *Driver {
	if cfg.TxRingSize <= 0 {
		cfg.TxRingSize = DefaultTxRingSize
	}
	if cfg.Priority == 0 {
		cfg.Priority = proto.PriorityBestEffort
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = DefaultPollInterval
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	done := make(chan struct{})
	close(done) // no worker yet
	ctr := &countingTransport{Transport: tr}
	d := &Driver{
		tr: ctr, ctr: ctr, cfg: cfg,
		log:  cfg.Logger.Named("driver").With(zap.String("if", cfg.Name)),
		ring: make([]txSlot, cfg.TxRingSize),
		kick: make(chan struct{}, 1),
		wake: make(chan struct{}, 1),
		done: done,
	}
	d.setupTSN()
	return d
}

// Open brings the interface up: it enables TSN on the chip, takes the
// baselines of the chip's TX and RX counters (reconciling a write left
// over from the last session) and starts the SPI worker. On a failing
// bus it gives up after bounded retries and returns the error; the
// interface stays down.
func (d *Driver) Open(ctx context.Context) error {
	d.life.Lock()
	defer d.life.Unlock()
	ctx, cancelOpen := context.WithTimeout(ctx, LifecycleTimeout)
	defer cancelOpen()
	d.mu.Lock()
	up, done := d.up, d.done
	d.mu.Unlock()
	if up {
		return errors.New("driver: already open")
	}
	select {
	case <-done:
	default:
		return fmt.Errorf("driver: the last session's SPI worker is still in a transfer: %w", syscall.EBUSY)
	}
	bo := newBackoff()
	if err := d.writeRetry(ctx, bo, regs.TSNSystemControl+4, uint32(regs.TSNEnable.Put(0, 1))); err != nil {
		return err
	}
	err := d.baselines(ctx, bo)
	if err == nil {
		err = d.openClock(ctx, bo)
	}
	if err != nil {
		if derr := d.WriteRegister(ctx, regs.TSNSystemControl+4, 0); derr != nil {
			err = errors.Join(err, derr)
		}
		return err
	}
	wctx, cancel := context.WithCancel(context.Background())
	done = make(chan struct{})
	d.mu.Lock()
	d.up, d.stopped, d.sess, d.cancel, d.done = true, false, wctx, cancel, done
	d.mu.Unlock()
	go d.worker(wctx, done)
	return nil
}

// baselines resolves a write left in limbo by the last session and reads
// the TX and RX counter baselines.
func (d *Driver) baselines(ctx context.Context, bo *backoff) error {
	sum, err := d.readTxSum(ctx, bo)
	if err != nil {
		return err
	}
	d.settleLimbo(sum, true)
	d.txl = txLedger{expected: sum, valid: true}
	s, err := d.rxSnapshot(ctx, bo)
	if err != nil {
		return err
	}
	d.rxl = rxLedger{}
	if s.stable {
		d.rxl.rebase(s, nil)
	} else {
		// Frames kept arriving: the worker takes the baseline when idle.
		d.rxl.dirty = true
	}
	return nil
}

// Stop brings the interface down: it stops the SPI worker, drops the
// frames still on the TX ring (counted in TxDropped), reconciles a write
// the stop cut short and disables TSN. It returns an error if the worker
// did not leave its transfer in time, or if the chip could not be
// reached; the interface is down in any case. It takes at most
// LifecycleTimeout.
func (d *Driver) Stop(ctx context.Context) error {
	d.life.Lock()
	defer d.life.Unlock()
	ctx, cancelStop := context.WithTimeout(ctx, LifecycleTimeout)
	defer cancelStop()
	d.mu.Lock()
	if !d.up {
		d.mu.Unlock()
		return nil
	}
	d.up = false
	cancel, done := d.cancel, d.done
	d.mu.Unlock()
	cancel()
	var errs []error
	stopped := true
	select {
	case <-done:
	case <-ctx.Done():
		stopped = false
		errs = append(errs, fmt.Errorf("driver: SPI worker still in a transfer at Stop: %w", ctx.Err()))
	}
	d.mu.Lock()
	d.stats.TxDropped += uint64(d.queued)
	for d.queued > 0 {
		d.ring[d.head] = txSlot{}
		d.head = (d.head + 1) % len(d.ring)
		d.queued--
	}
	d.mu.Unlock()
	if !stopped {
		return errors.Join(errs...) // the worker still owns the bus state
	}
	d.settleRx()
	if d.limbo != nil {
		sum, err := d.readTxSum(ctx, newBackoff())
		if err != nil {
			errs = append(errs, err)
		}
		d.settleLimbo(sum, err == nil)
	}
	d.stopStamps()
	if err := d.writeRetry(ctx, newBackoff(), regs.TSNSystemControl+4, 0); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
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

func (d *Driver) count(f func(*Stats)) {
	d.mu.Lock()
	f(&d.stats)
	d.mu.Unlock()
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}
