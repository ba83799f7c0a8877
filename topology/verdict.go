package topology

import (
	"fmt"
	"strings"

	"tsnsim/chip/regs"
	"tsnsim/driver"
)

// Imbalance is an audit equation that does not hold: a ledger bug, not a
// loss (a lost frame is counted somewhere and keeps every equation).
type Imbalance struct {
	Direction string // "a->b"
	// Equation describes the equation with its numbers, e.g. "chip a: 643
	// frames accepted + 0 queued before != 633 read by the driver + 9
	// queued".
	Equation string
	// Op is "==" (Left must equal Right) or "<=" (Left must not exceed
	// Right).
	Op          string
	Left, Right uint64
}

// Off is how far the equation is off.
func (e *Imbalance) Off() uint64 {
	if e.Left > e.Right {
		return e.Left - e.Right
	}
	return e.Right - e.Left
}

// Error implements error.
func (e *Imbalance) Error() string {
	return fmt.Sprintf("%s: %s (off by %d)", e.Direction, e.Equation, e.Off())
}

// Loss is frames that were not delivered, all counted in one place.
type Loss struct {
	Count uint64
	Where string // e.g. "dropped at chip b RX FIFO (full)"
}

// String formats the loss as "N WHERE".
func (l Loss) String() string { return fmt.Sprintf("%d %s", l.Count, l.Where) }

// Losses lists, for the direction from node i to node 1-i, every counter
// of the drivers, the chips and the cable that holds frames offered to
// node i's driver and not delivered to node 1-i's host, with its count
// (zero counters are left out). Frames still queued at the end (after
// Close) are listed as left in their queue. TxBusy is not a loss: the
// host queues of tsnsim re-offer a refused frame when the queue wakes (a
// host that gives such frames up counts them itself).
func (t *Topology) Losses(i int) []Loss {
	src, dst := t.Nodes[i], t.Nodes[1-i]
	var out []Loss
	add := func(n uint64, format string, args ...any) {
		if n > 0 {
			out = append(out, Loss{Count: n, Where: fmt.Sprintf(format, args...)})
		}
	}
	ts, rs := src.Driver.Stats(), dst.Driver.Stats()
	out = append(out, driverTxLosses(src.Name, ts)...)

	sr, dr := src.registers(), dst.registers()
	add(sr.Register(regs.FSTotalBackPressureEventCnt), "dropped at chip %s host FIFO (back-pressure)", src.Name)
	if src.Chip != nil {
		var rejected uint64
		for kind, n := range src.Chip.Stats().ProtocolErrorsByKind {
			if kind.RejectsTxWrite() {
				rejected += n
			}
		}
		add(rejected, "TX writes rejected by chip %s", src.Name)
	}
	add(sr.Register(regs.FSCHTotalDropEntryCnt), "dropped at chip %s scheduler (window passed)", src.Name)
	add(hostQueued(sr), "left in chip %s host FIFO", src.Name)
	if t.Cable != nil {
		ab, ba := t.Cable.Stats()
		cs := ab
		if i == 1 {
			cs = ba
		}
		add(cs.LostInjected, "lost on the cable %s->%s (injected)", src.Name, dst.Name)
		add(cs.LostUnplugged, "lost on the cable %s->%s (unplugged)", src.Name, dst.Name)
		add(cs.LostAtClose, "lost on the cable %s->%s (in flight at close)", src.Name, dst.Name)
	}
	add(dr.Register(regs.FDFCSDropFrameCnt), "dropped at chip %s RX (FCS)", dst.Name)
	add(dr.Register(regs.FDJumboDropFrameCnt), "dropped at chip %s RX (too long)", dst.Name)
	add(dr.Register(regs.FDFIFOFullDropFrameCnt), "dropped at chip %s RX FIFO (full)", dst.Name)
	add(rxQueued(dr), "left in chip %s RX FIFO", dst.Name)
	return append(out, driverRxLosses(dst.Name, rs)...)
}

// DriverLosses lists the frames a driver named name lost or left, in
// both directions, by counter: what Losses names at the drivers, for a
// node whose peer is not in this process.
func DriverLosses(name string, s driver.Stats) []Loss {
	return append(driverTxLosses(name, s), driverRxLosses(name, s)...)
}

// driverTxLosses are the TX counters of a driver that hold lost frames.
func driverTxLosses(name string, s driver.Stats) []Loss {
	var out []Loss
	add := func(n uint64, where string) {
		if n > 0 {
			out = append(out, Loss{Count: n, Where: where})
		}
	}
	add(s.TxErrors, "TX errors at driver "+name)
	add(s.TxDropped, "TX dropped at driver "+name)
	add(s.TxSlotDrops, "reported sent and dropped by driver "+name+"'s one TX slot (--field-driver tx-slot)")
	add(uint64(s.TxQueued), "left on driver "+name+"'s TX ring")
	return out
}

// driverRxLosses are the RX counters of a driver that hold lost frames,
// by reason (the parts of RxErrors, and RxDropped).
func driverRxLosses(name string, s driver.Stats) []Loss {
	var out []Loss
	add := func(n uint64, where string) {
		if n > 0 {
			out = append(out, Loss{Count: n, Where: where})
		}
	}
	other := s.RxErrors - min(s.RxErrors, s.RxCRCErrors+s.RxLengthErrors+s.RxFIFOErrors+s.RxOrphans)
	add(s.RxCRCErrors, "RX CRC errors at driver "+name)
	add(s.RxLengthErrors, "RX length errors at driver "+name)
	add(s.RxFIFOErrors, "RX FIFO errors at driver "+name+" (lost in a failed SPI read)")
	add(s.RxOrphans, "RX orphans at driver "+name+" (discarded to resynchronise)")
	add(other, "other RX errors at driver "+name)
	add(s.RxDropped, "RX dropped at driver "+name+" (refused by the host)")
	return out
}

// Verdict is the last word of a run: every imbalance of the audit, every
// loss (each counted in one place) and every failure of the run itself
// (an error, an incomplete workload).
type Verdict struct {
	Imbalances []*Imbalance
	Losses     []Loss
	Failures   []string
}

// Verdict classes and the exit status of each.
const (
	ExitClean       = 0 // CLEAN: everything offered was delivered
	ExitLoss        = 1 // LOSS: frames lost (each counted) or the run failed
	ExitUnaccounted = 3 // UNACCOUNTED: an audit equation does not hold
)

// Add files err: an *Imbalance (or an error wrapping one) as an
// imbalance, anything else as a failure.
func (v *Verdict) Add(err error) {
	if err == nil {
		return
	}
	if im, ok := err.(*Imbalance); ok {
		v.Imbalances = append(v.Imbalances, im)
		return
	}
	v.Failures = append(v.Failures, err.Error())
}

// AddLosses adds losses, merging those counted at the same place.
func (v *Verdict) AddLosses(ls ...Loss) {
	for _, l := range ls {
		if l.Count == 0 {
			continue
		}
		merged := false
		for i := range v.Losses {
			if v.Losses[i].Where == l.Where {
				v.Losses[i].Count += l.Count
				merged = true
				break
			}
		}
		if !merged {
			v.Losses = append(v.Losses, l)
		}
	}
}

// Lost is the sum of the losses.
func (v *Verdict) Lost() uint64 {
	var n uint64
	for _, l := range v.Losses {
		n += l.Count
	}
	return n
}

// ExitStatus is the exit status of the verdict: ExitUnaccounted if any
// equation is off, else ExitLoss if anything was lost or failed, else
// ExitClean.
func (v *Verdict) ExitStatus() int {
	switch {
	case len(v.Imbalances) > 0:
		return ExitUnaccounted
	case len(v.Losses) > 0 || len(v.Failures) > 0:
		return ExitLoss
	}
	return ExitClean
}

// Line is the verdict line, exactly one of
//
//	CLEAN
//	LOSS: N WHERE, N WHERE, ...[; run failed: FIRST FAILURE (+K more)]
//	UNACCOUNTED: EQUATION off by N[; K more equations off]
func (v *Verdict) Line() string {
	switch v.ExitStatus() {
	case ExitUnaccounted:
		first := v.Imbalances[0]
		line := fmt.Sprintf("UNACCOUNTED: %s: %s off by %d", first.Direction, strings.ReplaceAll(first.Equation, "\n", "; "), first.Off())
		if k := len(v.Imbalances) - 1; k > 0 {
			line += fmt.Sprintf("; %d more equations off (listed above)", k)
		}
		return line
	case ExitLoss:
		var parts []string
		for _, l := range v.Losses {
			parts = append(parts, l.String())
		}
		line := "LOSS: "
		if len(parts) > 0 {
			line += strings.Join(parts, ", ")
		} else {
			line += "no frame counted lost"
		}
		if len(v.Failures) > 0 {
			line += "; run failed: " + strings.ReplaceAll(v.Failures[0], "\n", "; ")
			if k := len(v.Failures) - 1; k > 0 {
				line += fmt.Sprintf(" (+%d more, listed above)", k)
			}
		}
		return line
	}
	return "CLEAN"
}
