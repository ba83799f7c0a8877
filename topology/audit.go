package topology

import (
	"fmt"

	"tsnsim/chip/regs"
)

// Audit checks, for the direction from node i to node 1-i, that every
// frame offered to the sending driver is found in exactly one place:
// delivered to the receiving host, or in one counter of the drivers, the
// chips or the cable, or still queued somewhere. delivered is what the
// host of node 1-i reports it received. Audit is exact once traffic has
// stopped (after Close); it returns one error per violated equation.
//
// Attached (the chips in another process), the chips are seen through
// their registers only: the SPI writes a chip rejected (its protocol
// error count) and the cable's counters live in the chip server, whose
// own report has them, so those two equations become inequalities here.
//
// A chip found reset by its driver (ChipResets) restarted its counters
// from zero: the frames queued in it at the start are gone with the old
// chip, and on the RX side the frames the driver accounted for from the
// old chips (RxBeforeReset) stand for what those had accepted. The
// chip's drop counters the driver reports (read at a low rate) never run
// ahead of the chip's registers.
//
// Every error is an *Imbalance: the equation, both sides and how far off
// they are (Verdict turns them into the UNACCOUNTED line). Where the
// frames went that were not delivered is Losses' job.
func (t *Topology) Audit(i int, delivered uint64) []error {
	src, dst := t.Nodes[i], t.Nodes[1-i]
	var errs []error
	record := func(op string, left, right uint64, format string, args ...any) {
		errs = append(errs, &Imbalance{Direction: src.Name + "->" + dst.Name, Op: op, Left: left, Right: right,
			Equation: fmt.Sprintf(format, args...)})
	}
	// balance checks left == right; atMost checks left <= right.
	balance := func(left, right uint64, format string, args ...any) {
		if left != right {
			record("==", left, right, format, args...)
		}
	}
	atMost := func(left, right uint64, format string, args ...any) {
		if left > right {
			record("<=", left, right, format, args...)
		}
	}
	ts, rs := src.Driver.Stats(), dst.Driver.Stats()
	if err := t.chipsUnreadable(src, dst); err != nil {
		// The chips' side is unknown: only the drivers' and the host's
		// equations can be checked, and the audit says it is incomplete.
		balance(ts.TxAccounted(), ts.TxOffered, "driver %s: %d accounted (sent + errors + dropped + busy + queued) != %d offered", src.Name, ts.TxAccounted(), ts.TxOffered)
		balance(delivered, rs.RxPackets, "host %s: received %d, driver delivered %d", dst.Name, delivered, rs.RxPackets)
		return append(errs, err)
	}
	balance(ts.TxAccounted(), ts.TxOffered, "driver %s: %d accounted (sent + errors + dropped + busy + queued) != %d offered", src.Name, ts.TxAccounted(), ts.TxOffered)

	sr, dr := src.registers(), dst.registers()
	accepted := sr.Register(regs.FSTotalRxFrameCnt)
	backPressure := sr.Register(regs.FSTotalBackPressureEventCnt)
	if src.Chip != nil {
		var rejected uint64
		for kind, n := range src.Chip.Stats().ProtocolErrorsByKind {
			if kind.RejectsTxWrite() {
				rejected += n
			}
		}
		balance(accepted+backPressure+rejected, ts.TxPackets,
			"chip %s: %d accepted + %d back-pressure + %d TX writes rejected != %d written by the driver",
			src.Name, accepted, backPressure, rejected, ts.TxPackets)
	} else {
		atMost(accepted+backPressure, ts.TxPackets,
			"chip %s: %d accepted + %d back-pressure > %d written by the driver",
			src.Name, accepted, backPressure, ts.TxPackets)
	}
	valid, dropped := sr.Register(regs.FSCHTotalValidEntryCnt), sr.Register(regs.FSCHTotalDropEntryCnt)
	queuedTx := hostQueued(sr)
	startTx, _ := src.queuedAtStart()
	if ts.ChipResets > 0 {
		startTx = 0
	}
	balance(valid+dropped+queuedTx, accepted+startTx,
		"chip %s: %d sent + %d window drops + %d queued != %d accepted + %d queued before", src.Name, valid, dropped, queuedTx, accepted, startTx)
	ft := sr.Register(regs.FTTotalTxFrameCnt)
	balance(ft, valid, "chip %s: FT_TOTAL_TX_FRAME_CNT %d != %d released by the scheduler", src.Name, ft, valid)

	rx := dr.Register(regs.FDTotalRxFrameCnt)
	if t.Cable != nil {
		ab, ba := t.Cable.Stats()
		cs := ab
		if i == 1 {
			cs = ba
		}
		balance(cs.Frames+cs.LostInjected+cs.LostUnplugged+cs.LostAtClose, ft,
			"cable: %d delivered + %d lost (injected) + %d lost (unplugged) + %d lost at close != %d transmitted",
			cs.Frames, cs.LostInjected, cs.LostUnplugged, cs.LostAtClose, ft)
		balance(rx, cs.Frames, "chip %s: FD_TOTAL_RX_FRAME_CNT %d != %d frames off the cable", dst.Name, rx, cs.Frames)
	} else {
		atMost(rx, ft, "chip %s: FD_TOTAL_RX_FRAME_CNT %d > %d transmitted by %s", dst.Name, rx, ft, src.Name)
	}
	drop := dr.Register(regs.FDTotalDropFrameCnt)
	reasons := dr.Register(regs.FDFCSDropFrameCnt) + dr.Register(regs.FDJumboDropFrameCnt) + dr.Register(regs.FDFIFOFullDropFrameCnt)
	balance(drop, reasons, "chip %s: FD_TOTAL_DROP_FRAME_CNT %d != %d by reason", dst.Name, drop, reasons)
	queued := rxQueued(dr)
	_, startRx := dst.queuedAtStart()
	if rs.ChipResets > 0 {
		startRx = rs.RxBeforeReset
	}
	read := rs.RxPackets + rs.RxErrors + rs.RxDropped
	balance(rx-drop+startRx, read+queued, "chip %s: %d frames accepted + %d queued before (or read before a reset) != %d read by the driver + %d queued",
		dst.Name, rx-drop, startRx, read, queued)
	if rs.ChipResets == 0 {
		for _, c := range []struct {
			name         string
			driver, chip uint64
		}{
			{"FD_FIFO_FULL_DROP_FRAME_CNT", rs.ChipRxFIFOFull, dr.Register(regs.FDFIFOFullDropFrameCnt)},
			{"FD_FCS_DROP_FRAME_CNT", rs.ChipRxFCS, dr.Register(regs.FDFCSDropFrameCnt)},
			{"FD_JUMBO_DROP_FRAME_CNT", rs.ChipRxJumbo, dr.Register(regs.FDJumboDropFrameCnt)},
		} {
			atMost(c.driver, c.chip, "driver %s reports %s %d, the chip has %d", dst.Name, c.name, c.driver, c.chip)
		}
	}
	if ts.ChipResets == 0 {
		atMost(ts.ChipTxBackPressure, backPressure, "driver %s reports FS_TOTAL_BACK_PRESSURE_EVENT_CNT %d, the chip has %d",
			src.Name, ts.ChipTxBackPressure, backPressure)
	}
	balance(delivered, rs.RxPackets, "host %s: received %d, driver delivered %d", dst.Name, delivered, rs.RxPackets)
	return errs
}
