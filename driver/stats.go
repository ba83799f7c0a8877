package driver

import "time"

// Stats are the interface counters, modelled on Linux rtnl_link_stats64,
// plus the driver's own.
//
// Every frame offered to Transmit ends in exactly one of TxPackets,
// TxErrors, TxDropped, TxBusy, TxSlotDrops, or is still queued (TxQueued), at every
// instant: TxAccounted() == TxOffered. A TX write that failed on the bus
// is reconciled with the chip's FS counters before it is counted (see the
// package documentation): found taken, it is in TxPackets (and
// TxReconciled); found not taken, it is written again (TxRetries) up to
// MaxTxAttempts times, then counted in TxErrors.
//
// Every frame the chip took off its RX frame FIFO for the driver ends in
// exactly one of RxPackets, RxErrors, RxDropped. A frame lost inside a
// failed RX transfer is counted (in RxFIFOErrors) when the driver next
// settles its RX ledger against the chip's FD counters (when it knows
// exactly which frames are queued, at the latest when both RX FIFOs are
// next found empty); until then it is in no counter.
type Stats struct {
	RxPackets, TxPackets uint64
	RxBytes, TxBytes     uint64 // frame bytes without FCS; TX as offered, before padding
	RxErrors, TxErrors   uint64 // TX: write failed and not taken by the chip after MaxTxAttempts, not reconcilable, or lost to a chip reset; RX: see below
	RxDropped, TxDropped uint64 // TX: down, too long, or on the ring at Stop; RX: stack refused

	RxLengthErrors uint64 // part of RxErrors: metadata length out of range
	RxCRCErrors    uint64 // part of RxErrors: FCS wrong after the SPI read
	RxFIFOErrors   uint64 // part of RxErrors: frame lost in a failed SPI read (found by reconciliation; at Stop the exact session count corrects a frame taken for lost that was read after all)
	RxOrphans      uint64 // part of RxErrors: frame taken off the frame FIFO to resynchronise (its metadata lost, or read for another entry)

	RxRetries        uint64 // frame reads repeated after a failed read found the frame still queued
	RxPollRecoveries uint64 // idle polls that found frames no interrupt edge announced

	TxBusy       uint64 // Transmit refused with ErrBusy (NETDEV_TX_BUSY)
	TxOffered    uint64 // calls to Transmit that have returned
	TxQueued     int    // frames on the ring or being written now
	TxRetries    uint64 // TX writes repeated because the chip had not taken the failed one
	TxReconciled uint64 // part of TxPackets: writes that failed on the bus but the chip had taken

	SPIErrors uint64 // failed SPI transfers of the driver's own (worker, Open, Stop), any kind

	// Chip resets (see ResetCheckInterval): how many times the chip was
	// found reset or replaced and re-initialised; the TX write in flight
	// then (part of TxErrors) and the RX frames whose metadata entries
	// the driver had taken but not read (part of RxErrors), both of
	// unknowable fate; and RxAccounted() at the last reset, the frames
	// the driver accounted for from the chips before (for the audit: the
	// new chip's counters start from zero).
	ChipResets    uint64
	TxResetLost   uint64
	RxResetLost   uint64
	RxBeforeReset uint64

	// The chip's own drop counters, read by the worker every
	// ChipStatsInterval and at Stop (low halves, each read until two
	// reads agree), kept monotonic across resets and clears: RX frames
	// dropped because the RX FIFOs were full (FD_FIFO_FULL_DROP_FRAME_CNT),
	// with a bad FCS (FD_FCS_DROP_FRAME_CNT), too long
	// (FD_JUMBO_DROP_FRAME_CNT), and TX writes refused because the host
	// FIFO was full (FS_TOTAL_BACK_PRESSURE_EVENT_CNT; those are in
	// TxPackets, as the driver wrote them). They are in no RX/TX total
	// above (those frames never reached the driver, or left it); Link
	// adds them where ndo_get_stats64 does.
	ChipRxFIFOFull     uint64
	ChipRxFCS          uint64
	ChipRxJumbo        uint64
	ChipTxBackPressure uint64

	// Config.XmitClock == XmitClockSPI: SYSCOUNT reads made by Transmit,
	// the failed ones, and the time callers spent in them (bus queueing
	// included).
	XmitClockReads   uint64
	XmitClockErrors  uint64
	XmitClockWait    time.Duration
	XmitClockMaxWait time.Duration

	// The field driver (Config.Field, field.go).
	TxSlotDrops     uint64        // FieldTxSlot: frames reported sent and dropped, the slot taken
	AtomicSleepBugs uint64        // FieldXmitClock: blocking SPI transfers from the transmit path (BUG: scheduling while atomic)
	LostCompletions uint64        // SPI transfers timed out (-110) because their completion was lost after such a BUG
	TxMaxStall      time.Duration // longest time from a failed TX write or a BUG until a TX write succeeded (or until now)
	Deadlocks       uint64        // FieldLockOrder: lock cycles found by the lock watchdog
	ClockReads      uint64        // Config.ClockReads: SYSCOUNT reads of the clock reader
	ClockReadErrors uint64        // ... and the failed ones
}

// TxAccounted is the sum every offered frame must be found in.
func (s Stats) TxAccounted() uint64 {
	return s.TxPackets + s.TxErrors + s.TxDropped + s.TxBusy + s.TxSlotDrops + uint64(s.TxQueued)
}

// RxAccounted is the number of frames the driver took off the chip's RX
// frame FIFO (or found lost there): RxPackets + RxErrors + RxDropped.
func (s Stats) RxAccounted() uint64 {
	return s.RxPackets + s.RxErrors + s.RxDropped
}

// Stats returns a snapshot of the counters.
func (d *Driver) Stats() Stats {
	d.mu.Lock()
	s := d.stats
	s.TxQueued = d.queued + d.inFlight
	d.mu.Unlock()
	d.fieldStats(&s)
	return s
}
