package driver

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"tsnsim/chip/proto"
	"tsnsim/chip/regs"
	"tsnsim/spibridge"
)

// ReadRegister reads the 32-bit register half at off (the READ_REG ioctl).
// It uses the shared SPI bus directly from the caller's goroutine, as the
// vendor's ioctl path does, and takes no driver lock.
func (d *Driver) ReadRegister(ctx context.Context, off uint16) (uint32, error) {
	miso := make([]byte, proto.RegReadLen)
	if err := d.tr.Transfer(ctx, proto.RegRead(off), miso); err != nil {
		return 0, fmt.Errorf("driver: read register %#04x: %w", off, err)
	}
	return proto.RegReadValue(miso), nil
}

// WriteRegister writes the 32-bit register half at off (the WRITE_REG
// ioctl).
func (d *Driver) WriteRegister(ctx context.Context, off uint16, v uint32) error {
	miso := make([]byte, proto.RegWriteLen)
	if err := d.tr.Transfer(ctx, proto.RegWrite(off, v), miso); err != nil {
		return fmt.Errorf("driver: write register %#04x: %w", off, err)
	}
	return nil
}

// ReadRegister64 reads a 64-bit register as H then L: two transactions,
// so a register that changes in between can tear (see ReadSysCount).
func (d *Driver) ReadRegister64(ctx context.Context, off uint16) (uint64, error) {
	hi, err := d.ReadRegister(ctx, off)
	if err != nil {
		return 0, err
	}
	lo, err := d.ReadRegister(ctx, off+4)
	if err != nil {
		return 0, err
	}
	return uint64(hi)<<32 | uint64(lo), nil
}

// ReadSysCount reads SYSCOUNT without tearing: H, L, then H again; if the
// high half moved, L is read once more under the new H (L cannot wrap
// twice in the few microseconds of one transfer).
//
// With FieldLockOrder it takes the field driver's locks (field_clock.go).
func (d *Driver) ReadSysCount(ctx context.Context) (uint64, error) {
	if d.cfg.Field.Has(FieldLockOrder) {
		return d.fieldSysCount(ctx)
	}
	hi, err := d.ReadRegister(ctx, regs.TSNSysCount)
	if err != nil {
		return 0, err
	}
	return d.sysCountFrom(ctx, hi)
}

// sysCountFrom finishes ReadSysCount after SYSCOUNT_H read hi.
func (d *Driver) sysCountFrom(ctx context.Context, hi uint32) (uint64, error) {
	lo, err := d.ReadRegister(ctx, regs.TSNSysCount+4)
	if err != nil {
		return 0, err
	}
	hi2, err := d.ReadRegister(ctx, regs.TSNSysCount)
	if err != nil {
		return 0, err
	}
	if hi2 != hi {
		if lo, err = d.ReadRegister(ctx, regs.TSNSysCount+4); err != nil {
			return 0, err
		}
		hi = hi2
	}
	return uint64(hi)<<32 | uint64(lo), nil
}

// backoff is the wait after a failed transfer: exponential from
// minBackoff, capped at maxBackoff, reset by a success.
type backoff struct{ next, max time.Duration }

func newBackoff() *backoff { return &backoff{next: minBackoff, max: maxBackoff} }

// newLifeBackoff is the backoff of Open and Stop, which retry until
// their budget: it grows further so a long outage costs few transfers.
func newLifeBackoff() *backoff { return &backoff{next: minBackoff, max: lifeBackoffMax} }

// wait sleeps the current backoff and doubles the next one; it reports
// false, early, when ctx ends.
func (b *backoff) wait(ctx context.Context) bool {
	d := b.next
	b.next = min(2*b.next, b.max)
	return sleepCtx(ctx, d)
}

func (b *backoff) reset() { b.next = minBackoff }

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

// attempts is how many times readRetry and writeRetry try one access:
// regAttempts for the worker, unbounded during Open and Stop (their
// context carries the budget).
func (d *Driver) attempts() int {
	if d.lifecycle {
		return math.MaxInt
	}
	return regAttempts
}

// readRetry reads a register half for the driver's own use, trying up to
// d.attempts() times with backoff; failures count in SPIErrors.
func (d *Driver) readRetry(ctx context.Context, bo *backoff, off uint16) (uint32, error) {
	var err error
	n := d.attempts()
	for i := range n {
		if i > 0 && !bo.wait(ctx) {
			return 0, fmt.Errorf("driver: read register %#04x: %w (after %w)", off, ctx.Err(), err)
		}
		var v uint32
		if v, err = d.ReadRegister(ctx, off); err == nil {
			bo.reset()
			return v, nil
		}
		if ctx.Err() != nil {
			return 0, err
		}
		d.count(func(s *Stats) { s.SPIErrors++ })
		if spibridge.Permanent(err) {
			return 0, err // retrying cannot fix it (another client drives the chip)
		}
	}
	return 0, fmt.Errorf("%w (%d attempts)", err, n)
}

// writeRetry writes a register half for the driver's own use (only
// idempotent writes), trying up to d.attempts() times with backoff.
func (d *Driver) writeRetry(ctx context.Context, bo *backoff, off uint16, v uint32) error {
	var err error
	n := d.attempts()
	for i := range n {
		if i > 0 && !bo.wait(ctx) {
			return fmt.Errorf("driver: write register %#04x: %w (after %w)", off, ctx.Err(), err)
		}
		if err = d.WriteRegister(ctx, off, v); err == nil {
			bo.reset()
			return nil
		}
		if ctx.Err() != nil {
			return err
		}
		d.count(func(s *Stats) { s.SPIErrors++ })
		if spibridge.Permanent(err) {
			return err // retrying cannot fix it (another client drives the chip)
		}
	}
	return fmt.Errorf("%w (%d attempts)", err, n)
}

// txSumPasses bounds the passes of readTxSum: the FS counters change only
// when the driver writes, so passes differ only when MISO is corrupted.
const txSumPasses = 6

// readStable reads the register halves offs in order, pass after pass,
// until one set of values has been read agree times and two times more
// often than any other (at most passes passes): normally agree equal
// passes in a row. A value corrupted on MISO rarely comes back twice, and
// values that only grow (counters, FIFO levels while the driver reads
// nothing) repeat only if they did not change in between. It reports
// whether the values are stable.
func (d *Driver) readStable(ctx context.Context, bo *backoff, passes, agree int, offs ...uint16) ([]uint32, bool, error) {
	v := vote[string]{need: agree}
	for range passes {
		cur := make([]uint32, len(offs))
		for i, off := range offs {
			var err error
			if cur[i], err = d.readRetry(ctx, bo, off); err != nil {
				return nil, false, err
			}
		}
		if v.add(fmt.Sprint(cur)) {
			return cur, true, nil
		}
	}
	return nil, false, nil
}

// vote counts how often each value was read; add reports whether the
// value just added leads every other by two and was read need times
// (at least 2; the zero value needs 2).
type vote[T comparable] struct {
	n    map[T]int
	need int
}

func (v *vote[T]) add(x T) bool {
	if v.n == nil {
		v.n = map[T]int{}
	}
	v.n[x]++
	for y, c := range v.n {
		if y != x && c > v.n[x]-2 {
			return false
		}
	}
	return v.n[x] >= max(v.need, 2)
}

// errUnstable: the chip's counters never read the same twice in a row.
var errUnstable = errors.New("driver: chip counters do not read back the same twice")

// readTxSum reads FS_TOTAL_RX_FRAME_CNT_L + FS_TOTAL_BACK_PRESSURE_EVENT_CNT_L:
// every TX write the chip took or refused for space (mod 2^32).
func (d *Driver) readTxSum(ctx context.Context, bo *backoff) (uint32, error) {
	v, ok, err := d.readStable(ctx, bo, txSumPasses, 2, regs.FSTotalRxFrameCnt+4, regs.FSTotalBackPressureEventCnt+4)
	switch {
	case err != nil:
		return 0, err
	case !ok:
		return 0, fmt.Errorf("driver: TX counters: %w", errUnstable)
	}
	return v[0] + v[1], nil
}

// rxSnap is the RX side of the chip at one instant: frames accepted into
// the RX FIFOs (FD_TOTAL_RX_FRAME_CNT_L - FD_TOTAL_DROP_FRAME_CNT_L, mod
// 2^32) and the FIFO levels of TSN_RX_FIFO_STATUS_L. stable is false when
// frames kept being accepted while it was read (the values are then
// unusable).
type rxSnap struct {
	accepted uint32
	metas    int // META_FIFO_DATA_CNT: metadata entries
	words    int // FRAME_FIFO_DATA_CNT: 16-byte words of frames
	stable   bool
}

func (s rxSnap) empty() bool { return s.metas == 0 && s.words == 0 }

// rxSnapshotPasses bounds the passes of one snapshot.
const rxSnapshotPasses = 5

// rxSnapshot reads an rxSnap: FD_TOTAL_RX_FRAME_CNT_L,
// FD_TOTAL_DROP_FRAME_CNT_L and TSN_RX_FIFO_STATUS_L, pass after pass,
// until one accepted count and status leads every other by two reads (see
// readStable). A frame accepted during the passes changes both; a frame dropped
// (FIFO full) moves both counters alike and does not disturb it, unless
// it lands between the two counter reads; a value corrupted on MISO
// does not come back twice.
func (d *Driver) rxSnapshot(ctx context.Context, bo *backoff) (rxSnap, error) {
	var seen vote[rxSnap]
	for range rxSnapshotPasses {
		var v [3]uint32
		for i, off := range [...]uint16{regs.FDTotalRxFrameCnt + 4, regs.FDTotalDropFrameCnt + 4, regs.TSNRxFIFOStatus + 4} {
			var err error
			if v[i], err = d.readRetry(ctx, bo, off); err != nil {
				return rxSnap{}, err
			}
		}
		st := uint64(v[2])
		cur := rxSnap{
			accepted: v[0] - v[1],
			metas:    int(regs.RxMetaFIFODataCnt.Get(st)),
			words:    int(regs.RxFrameFIFODataCnt.Get(st)),
			stable:   true,
		}
		if seen.add(cur) {
			return cur, nil
		}
	}
	return rxSnap{}, nil
}
