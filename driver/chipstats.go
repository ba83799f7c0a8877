package driver

import (
	"context"
	"time"

	"go.uber.org/zap"

	"tsnsim/chip/regs"
)

// ChipStatsInterval is how often the SPI worker reads the chip's own drop
// counters (four register halves and FD_TOTAL_RX_FRAME_CNT_L to bound
// them, read until three passes agree, and kept out when implausible): a low
// rate, as a kernel driver refreshes hardware counters for
// ndo_get_stats64 from a periodic work item. Stop reads them once more.
const ChipStatsInterval = time.Second

// chipCounter is one of the chip's drop counters as the driver tracks it:
// the low half of a chip counter, read now and then, kept monotonic
// across chip resets and counter clears (a value read below the last one
// means the counter restarted from zero: the last value is kept in base).
type chipCounter struct {
	off        uint16 // the counter's H offset; the driver reads L (off+4)
	last, base uint64
}

func (c *chipCounter) total() uint64 { return c.base + c.last }

func (c *chipCounter) update(v uint32) {
	if uint64(v) < c.last {
		c.base += c.last
	}
	c.last = uint64(v)
}

// restart keeps what was counted so far and starts from zero (a chip
// found reset: its counters restarted).
func (c *chipCounter) restart() { c.base, c.last = c.base+c.last, 0 }

// chipCounters are the chip drop counters in the driver's stats.
type chipCounters struct {
	fifoFull, fcs, jumbo, backPressure chipCounter
	read                               bool   // read at least once
	tx                                 uint64 // TxPackets at the last read
}

func newChipCounters() chipCounters {
	return chipCounters{
		fifoFull:     chipCounter{off: regs.FDFIFOFullDropFrameCnt},
		fcs:          chipCounter{off: regs.FDFCSDropFrameCnt},
		jumbo:        chipCounter{off: regs.FDJumboDropFrameCnt},
		backPressure: chipCounter{off: regs.FSTotalBackPressureEventCnt},
	}
}

func (c *chipCounters) all() []*chipCounter {
	return []*chipCounter{&c.fifoFull, &c.fcs, &c.jumbo, &c.backPressure}
}

// chipStatsPasses bounds the passes of readChipStats.
const chipStatsPasses = 7

// readChipStats reads the chip's drop counters (each value read until
// three reads agree, so a bit flipped on MISO is not taken) and copies
// them into the stats. A failed or unstable read leaves the last values.
func (d *Driver) readChipStats(ctx context.Context, bo *backoff) error {
	cs := d.chipStats.all()
	offs := make([]uint16, len(cs), len(cs)+1)
	for i, c := range cs {
		offs[i] = c.off + 4
	}
	// FD_TOTAL_RX_FRAME_CNT bounds the RX drop counters: a drop is a
	// frame received.
	offs = append(offs, regs.FDTotalRxFrameCnt+4)
	// Three agreeing passes, not two: a drop counter read wrong is
	// never read again (a lower value later counts as a restart of
	// the counter), and the two-pass vote was fooled by the same bit
	// flipped in two passes in a row (fault sweep, spi.flip 5 %, seed
	// 82: the same one of 32 bits in two reads 10 us apart). At one
	// read a second the third pass costs nothing that matters.
	v, ok, err := d.readStable(ctx, bo, chipStatsPasses, 3, offs...)
	if err != nil {
		return err
	}
	if !ok {
		d.log.Debug("chip drop counters do not read back the same; kept the last values")
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	rx, tx := v[len(cs)], d.stats.TxPackets
	for i, c := range cs {
		// Plausibility: an RX drop counter never exceeds the frames
		// received; back-pressure events never grow by more than the
		// writes the driver made since the last read. A value that
		// breaks that was corrupted on MISO: kept out.
		implausible := v[i] > rx
		if c == &d.chipStats.backPressure {
			implausible = d.chipStats.read && uint64(v[i]) > c.last && uint64(v[i])-c.last > tx-d.chipStats.tx
		}
		if implausible {
			d.log.Debug("chip drop counter implausible; kept the last value", zap.Uint16("reg", c.off), zap.Uint32("read", v[i]))
			continue
		}
		c.update(v[i])
	}
	d.chipStats.tx = tx
	d.chipStats.read = true
	d.stats.ChipRxFIFOFull = d.chipStats.fifoFull.total()
	d.stats.ChipRxFCS = d.chipStats.fcs.total()
	d.stats.ChipRxJumbo = d.chipStats.jumbo.total()
	d.stats.ChipTxBackPressure = d.chipStats.backPressure.total()
	return nil
}

// chipStatsDue reads the chip's drop counters when ChipStatsInterval has
// passed since the last read (worker only).
func (w *worker) chipStatsDue() {
	if time.Since(w.lastChipStats) < ChipStatsInterval {
		return
	}
	w.lastChipStats = time.Now()
	if err := w.d.readChipStats(w.ctx, w.bo); err != nil && w.ctx.Err() == nil {
		w.d.log.Debug("reading the chip's drop counters failed", zap.Error(err))
	}
}
