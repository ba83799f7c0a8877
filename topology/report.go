package topology

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"tsnsim/cable"
	"tsnsim/chip"
	"tsnsim/chip/regs"
	"tsnsim/spibridge"
)

// WriteReport prints, per node, the interface counters in the layout of
// `ip -s link`, the SPI bus accounting over elapsed, the chip's non-zero
// counters and the model's own counters.
func (t *Topology) WriteReport(w io.Writer, elapsed time.Duration) {
	for _, n := range t.Nodes {
		s := n.Driver.Stats()
		if n.Chip != nil {
			fmt.Fprintf(w, "%s: mac %s\n", n.Name, n.Chip.MAC())
		} else {
			fmt.Fprintf(w, "%s: attached over %T\n", n.Name, n.Transport)
		}
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		// As ndo_get_stats64 reports them: the chip's own drops
		// included (driver.Stats.Link).
		ls := s.Link()
		fmt.Fprintf(tw, "    RX:\tbytes\tpackets\terrors\tdropped\tmissed\tlength\tcrc\tfifo\n")
		fmt.Fprintf(tw, "    \t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\n", ls.RxBytes, ls.RxPackets, ls.RxErrors, ls.RxDropped,
			ls.RxMissedErrors, ls.RxLengthErrors, ls.RxCRCErrors, ls.RxFIFOErrors)
		fmt.Fprintf(tw, "    TX:\tbytes\tpackets\terrors\tdropped\tfifo\tbusy\tqueued\toffered\n")
		fmt.Fprintf(tw, "    \t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\n", ls.TxBytes, ls.TxPackets, ls.TxErrors, ls.TxDropped,
			ls.TxFIFOErrors, s.TxBusy, s.TxQueued, s.TxOffered)
		tw.Flush()
		fmt.Fprintf(w, "    driver: SPI worker errors %d; TX retries %d, reconciled %d; RX orphans %d, retries %d, poll recoveries %d\n",
			s.SPIErrors, s.TxRetries, s.TxReconciled, s.RxOrphans, s.RxRetries, s.RxPollRecoveries)
		if s.ChipResets > 0 {
			fmt.Fprintf(w, "    driver: chip found reset %d times and re-initialised; lost to resets: TX %d, RX %d\n",
				s.ChipResets, s.TxResetLost, s.RxResetLost)
		}
		if s.XmitClockReads > 0 {
			fmt.Fprintf(w, "    driver: SYSCOUNT reads in transmit %d, failed %d, bus wait total %v, max %v\n",
				s.XmitClockReads, s.XmitClockErrors, s.XmitClockWait.Round(time.Microsecond), s.XmitClockMaxWait.Round(time.Microsecond))
		}
		if line := s.FieldSummary(); line != "" {
			fmt.Fprintf(w, "    driver %s\n", line)
		}
		if n.Chip != nil {
			WriteChipReport(w, n.Chip, n.Bus, elapsed)
			continue
		}
		fmt.Fprintf(w, "    chip counters (read over SPI; the bus accounting is in the chip server's report):\n")
		writeCounters(w, n.registers())
	}
	if t.Cable != nil {
		WriteCableReport(w, t.Nodes[0].Name, t.Nodes[1].Name, t.Cable)
	}
}

// WriteChipReport prints a chip's side of a node: the SPI bus accounting
// over elapsed, the chip's non-zero counters and the model's own
// counters. `tsnsim chip serve` prints it for each chip it serves.
func WriteChipReport(w io.Writer, c *chip.Chip, bus *spibridge.InProcess, elapsed time.Duration) {
	b := bus.Stats()
	util := 0.0
	if elapsed > 0 {
		util = 100 * float64(b.Busy) / float64(elapsed)
	}
	fmt.Fprintf(w, "    SPI: %d transfers, %d bytes, busy %v (%.1f%%), max wait %v, timeouts %d, rejected %d\n",
		b.Transfers, b.Bytes, b.Busy.Round(time.Microsecond), util, b.MaxWait.Round(time.Microsecond),
		b.Timeouts, b.Rejected)
	fmt.Fprintf(w, "    chip counters:\n")
	writeCounters(w, c)
	cs := c.Stats()
	fmt.Fprintf(w, "    model: protocol errors %d %v, read-only writes %d, unmapped writes %d, host FIFO %d queued, RX FIFO %d queued\n",
		cs.ProtocolErrors, cs.ProtocolErrorsByKind, cs.ReadOnlyWrites, cs.UnmappedWrites, cs.HostFIFO.Len, cs.RxMetaFIFO.Len)
	ps := c.PPSStats()
	fmt.Fprintf(w, "    PPS: %d pulses (last at SYSCOUNT %d), %d cycles skipped, next at SYSCOUNT %d every %d ticks\n",
		ps.Pulses, ps.Last.Count, ps.Skipped, c.Register(regs.PPSPulseAt), c.Register(regs.PPSCycle1S))
}

// writeCounters prints the non-zero counter registers.
func writeCounters(w io.Writer, r registers) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, d := range regs.Map {
		if d.Access != regs.Counter {
			continue
		}
		if v := r.Register(d.Offset); v != 0 {
			fmt.Fprintf(tw, "      %s\t%d\n", d.Name, v)
		}
	}
	tw.Flush()
}

// WriteCableReport prints both directions of a cable between ports named
// a and b.
func WriteCableReport(w io.Writer, a, b string, c *cable.Cable) {
	ab, ba := c.Stats()
	for _, d := range []struct {
		from, to string
		s        cable.Stats
	}{{a, b, ab}, {b, a, ba}} {
		fmt.Fprintf(w, "cable %s->%s: %d frames %d bytes delivered (%d corrupted); lost: %d injected, %d unplugged, %d at close\n",
			d.from, d.to, d.s.Frames, d.s.Bytes, d.s.Corrupted, d.s.LostInjected, d.s.LostUnplugged, d.s.LostAtClose)
	}
}
