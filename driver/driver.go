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
//     time. A link that stays quiet is polled less often: each poll that
//     finds nothing, with no edge, TX or RX since the one before, doubles
//     the interval up to Config.IdlePollInterval; any traffic brings it
//     back. A spurious edge costs one empty metadata read.
//   - A reset chip (reset.go): the worker reads TSN_SYSTEM_CONTROL every
//     ResetCheckInterval and when counters are found behind its
//     baseline; TSN_ENABLE found off (two
//     stable reads) means the chip was reset or replaced. The driver
//     counts ChipResets, counts the TX write in flight (TxResetLost) and
//     the RX entries taken but not read (RxResetLost) as lost, re-inits
//     the chip as Open does and takes new baselines.
//   - The chip's own drop counters (chipstats.go) are read every
//     ChipStatsInterval and at Stop into Stats; Stats.Link reports them
//     as ndo_get_stats64 does.
//   - Every wait has a bound: transfers run under a context that Stop
//     cancels, backoffs stop on cancellation, and Open and Stop retry
//     their register accesses with backoff (up to lifeBackoffMax) until
//     Config.OpenBudget runs out, then give up with an error saying how
//     many attempts failed; Stop waits at most LifecycleTimeout for the
//     worker to leave a transfer.
package driver

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
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

// DefaultIdlePollInterval is the longest the poll interval grows to on a
// quiet link (it doubles from PollInterval with each empty poll): an idle
// node then makes about 33 register reads a second (polls, reset checks
// and drop counters) instead of about 118 at a fixed 10 ms, and a frame
// whose edge is lost after a quiet spell waits at most this long. The
// Linux driver does not poll at all; the poll is the emulated driver's
// guard against lost edges.
const DefaultIdlePollInterval = 100 * time.Millisecond

// MaxTxAttempts is how many times the worker writes one TX frame that the
// chip was found not to have taken after a failed write.
const MaxTxAttempts = 3

// LifecycleTimeout is how long Stop waits at most for the SPI worker to
// leave a transfer that does not honour cancellation.
const LifecycleTimeout = time.Second

// DefaultOpenBudget bounds Open, and separately Stop, on a failing bus
// when Config.OpenBudget is zero: at 50 % SPI timeouts of 500 ms each,
// the dozen register accesses of Open take about 6 s on average, and
// 20 s is more than four standard deviations above that.
const DefaultOpenBudget = 20 * time.Second

// lifeBackoffMax caps the backoff between the retries of Open and Stop.
const lifeBackoffMax = 256 * time.Millisecond

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
	// IdlePollInterval is the longest the poll interval grows to while
	// the link is quiet (zero: DefaultIdlePollInterval; at or below
	// PollInterval: the interval stays PollInterval).
	IdlePollInterval time.Duration
	// ModelWakeups makes the worker's late wake-ups model time, on a bus
	// with a timeline (the in-process bus in real time): the first
	// transfer after the worker woke, idle, for an interrupt edge or a
	// frame to send starts in the model when the worker would have woken
	// in virtual time, at the event (spibridge.EventMarker.Woke; the
	// chip's LastEdge for an edge). Frames then keep the model's timing,
	// but that transfer returns sooner than its time on the bus. Off (the
	// default), the worker's wake-ups take the time they take, as a real
	// host's scheduling latency does, and each transfer takes its time on
	// the bus as the host sees it (less only what the bus repays of its
	// own timers' oversleep). Nothing changes in virtual time.
	ModelWakeups bool
	// XmitClock says whether Transmit reads SYSCOUNT over SPI (chip.md
	// section 6, scenario 2); default XmitClockNone.
	XmitClock XmitClock
	// OpenBudget bounds Open, and separately Stop: their register
	// accesses are retried with backoff until it runs out (zero or
	// negative: DefaultOpenBudget).
	OpenBudget time.Duration
	// Field selects behaviours of the vendor's field driver (chip.md
	// section 6); zero is the driver core's design.
	Field Field
	// FieldTiming is the SPI timing whose Linux timeout a lost
	// completion waits for (FieldXmitClock); zero: 15 MHz, Linux 6.x.
	FieldTiming spibridge.Timing
	// ClockReads, if positive, makes the open driver read SYSCOUNT
	// through the register path this often, as a PTP daemon reading the
	// PHC would (failures in ClockReadErrors).
	ClockReads time.Duration
	// TSN turns on the clock model, PHC, hardware timestamps and taprio
	// (tsn.go); all off by default.
	TSN    TSNConfig
	Logger *zap.Logger
}

// Driver is one network interface driven over one SPI transport.
type Driver struct {
	tr spibridge.Transport
	// marker is the bus's EventMarker when it models time (the in-process
	// bus with the SPI model on), nil otherwise: the worker marks the
	// events it answers (an interrupt edge, a frame to send) so that a
	// late wake-up's repayment cannot start their transfers before them.
	marker spibridge.EventMarker
	ctr    *countingTransport // tr: counts the transfers issued from Transmit
	cfg    Config
	log    *zap.Logger

	life sync.Mutex // serialises Open and Stop

	mu       sync.Mutex
	ring     []txSlot // circular, len == TxRingSize
	head     int
	queued   int
	txq      atomic.Int32 // 1 while queued > 0, else 0: the worker's look without d.mu (stored only when that changes)
	inFlight int          // taken from the ring, not yet accounted
	stopped  bool         // netif queue stopped
	up       bool
	stats    Stats
	sess     context.Context // the open session, cancelled by Stop
	free     [][]byte        // TX write buffers to reuse, at most len(ring)

	// Owned by the worker while it runs, by Open and Stop otherwise.
	lifecycle bool // Open or Stop runs: register accesses retry until the budget
	txl       txLedger
	rxl       rxLedger
	limbo     *txSlot      // a write cut short by cancellation, not yet reconciled
	chipStats chipCounters // the chip's drop counters (worker, Stop; mu for the copy in stats)
	rxSess    rxSession    // the session's RX base, for Stop

	fld fieldState // Config.Field (field.go)

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
	mosi    []byte    // complete TX write transaction
	n       int       // frame length as offered (before padding and FCS)
	x       *txExtra  // TSN: stamp request, window (nil: none)
	offered time.Time // when Transmit took it; set only for a bus with a timeline (marker)
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
	if cfg.IdlePollInterval == 0 {
		cfg.IdlePollInterval = DefaultIdlePollInterval
	}
	cfg.IdlePollInterval = max(cfg.IdlePollInterval, cfg.PollInterval)
	if cfg.OpenBudget <= 0 {
		cfg.OpenBudget = DefaultOpenBudget
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	done := make(chan struct{})
	close(done) // no worker yet
	ctr := &countingTransport{Transport: tr}
	d := &Driver{
		tr: ctr, ctr: ctr, cfg: cfg, chipStats: newChipCounters(),
		log:  cfg.Logger.Named("driver").With(zap.String("if", cfg.Name)),
		kick: make(chan struct{}, 1),
		wake: make(chan struct{}, 1),
		done: done,
	}
	d.initField()
	ctr.marked = d.cfg.XmitClock == XmitClockSPI
	if !ctr.marked && d.tr == ctr {
		d.tr = tr // no transfer is Transmit's: nothing to count, no wrapper to go through
	}
	d.marker = spibridge.MarkerOf(tr)
	d.ring = make([]txSlot, d.cfg.TxRingSize)
	d.setupTSN()
	return d
}

// Open brings the interface up: it enables TSN on the chip, takes the
// baselines of the chip's TX and RX counters (reconciling a write left
// over from the last session) and starts the SPI worker. On a failing
// bus it retries with backoff until Config.OpenBudget runs out, then
// returns the error; the interface stays down.
func (d *Driver) Open(ctx context.Context) error {
	d.life.Lock()
	defer d.life.Unlock()
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
	ctx, cancelOpen := context.WithTimeout(ctx, d.cfg.OpenBudget)
	defer cancelOpen()
	d.lifecycle = true
	err := d.initChip(ctx, newLifeBackoff())
	d.lifecycle = false // before the worker starts: it owns the field then
	if err != nil {
		// One try within what is left of the budget (nothing, when it
		// ran out: the next Open enables TSN again anyway).
		if derr := d.WriteRegister(ctx, regs.TSNSystemControl+4, 0); derr != nil {
			err = errors.Join(err, derr)
		}
		return fmt.Errorf("driver: open (budget %v): %w", d.cfg.OpenBudget, err)
	}
	wctx, cancel := context.WithCancel(context.Background())
	done = make(chan struct{})
	d.mu.Lock()
	d.up, d.stopped, d.sess, d.cancel, d.done = true, false, wctx, cancel, done
	d.mu.Unlock()
	go d.worker(withTask(wctx, &task{name: "SPI worker"}), done)
	d.startClockReads(wctx)
	return nil
}

// initChip enables TSN, takes the baselines and starts the SYSCOUNT model
// (what Open does on the chip, and what the reset path does again on a
// chip found reset). Counters
// that do not read back the same (bits flipped on MISO) are read again,
// until ctx ends.
func (d *Driver) initChip(ctx context.Context, bo *backoff) error {
	for {
		err := d.initChipOnce(ctx, bo)
		if !errors.Is(err, errUnstable) || ctx.Err() != nil {
			return err
		}
		if !bo.wait(ctx) {
			return err
		}
	}
}

func (d *Driver) initChipOnce(ctx context.Context, bo *backoff) error {
	if err := d.writeRetry(ctx, bo, regs.TSNSystemControl+4, uint32(regs.TSNEnable.Put(0, 1))); err != nil {
		return err
	}
	if err := d.baselines(ctx, bo); err != nil {
		return err
	}
	return d.openClock(ctx, bo) // a reset chip's SYSCOUNT restarted: sample it anew
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
		d.sessionBase(s)
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
// reached within Config.OpenBudget; the interface is down in any case.
func (d *Driver) Stop(ctx context.Context) error {
	d.life.Lock()
	defer d.life.Unlock()
	// After a BUG in transmit (FieldXmitClock) the bus answers again
	// only once the aftermath is over.
	ctx, cancelStop := context.WithTimeout(ctx, d.cfg.OpenBudget+d.fld.aftermathLeft())
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
	wait := time.NewTimer(LifecycleTimeout)
	defer wait.Stop()
	select {
	case <-done:
	case <-wait.C:
		stopped = false
		errs = append(errs, fmt.Errorf("driver: SPI worker still in a transfer %v after Stop: %w", LifecycleTimeout, context.DeadlineExceeded))
	case <-ctx.Done():
		stopped = false
		errs = append(errs, fmt.Errorf("driver: SPI worker still in a transfer at Stop: %w", ctx.Err()))
	}
	if err := d.fieldStopWait(ctx); err != nil {
		errs = append(errs, err)
	}
	d.mu.Lock()
	d.stats.TxDropped += uint64(d.queued)
	for d.queued > 0 {
		d.ring[d.head] = txSlot{}
		d.head = (d.head + 1) % len(d.ring)
		d.queued--
	}
	d.txq.Store(0)
	d.mu.Unlock()
	if !stopped {
		return errors.Join(errs...) // the worker still owns the bus state
	}
	d.lifecycle = true
	defer func() { d.lifecycle = false }()
	// The exact RX settlement (within the budget: without it, the count
	// is what the driver knows it took), then, best effort within
	// LifecycleTimeout, a last read of the chip's drop counters (stale
	// if it fails).
	d.settleRx(ctx)
	sctx, cancelSettle := context.WithTimeout(ctx, LifecycleTimeout)
	if err := d.readChipStats(sctx, newLifeBackoff()); err != nil {
		d.log.Debug("last read of the chip's drop counters failed", zap.Error(err))
	}
	cancelSettle()
	if d.limbo != nil {
		sum, err := d.readTxSum(ctx, newLifeBackoff())
		if err != nil {
			errs = append(errs, err)
		}
		d.settleLimbo(sum, err == nil)
	}
	d.stopStamps()
	if err := d.writeRetry(ctx, newLifeBackoff(), regs.TSNSystemControl+4, 0); err != nil {
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
