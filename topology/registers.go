package topology

import (
	"context"
	"fmt"
	"time"

	"tsnsim/chip/regs"
	"tsnsim/driver"
)

// registers is how the audit and the report see a chip: its register
// file, read directly in-process, or the snapshot an attached topology
// read over SPI before it closed its transports.
type registers interface {
	Register(off uint16) uint64
}

// snapshot is a chip's registers as read over SPI.
type snapshot map[uint16]uint64

// Register implements registers; a register not read is 0.
func (s snapshot) Register(off uint16) uint64 { return s[off] }

// snapshotTimeout bounds the reads of one snapshot.
const snapshotTimeout = 10 * time.Second

// readSnapshot reads every counter and status register of regs.Map over
// d's transport, the way the register tool does.
func readSnapshot(ctx context.Context, d *driver.Driver) (snapshot, error) {
	ctx, cancel := context.WithTimeout(ctx, snapshotTimeout)
	defer cancel()
	s := snapshot{}
	for _, r := range regs.Map {
		if r.Access != regs.Counter && r.Access != regs.Live {
			continue
		}
		v, err := d.ReadRegister64(ctx, r.Offset)
		if err != nil {
			return s, fmt.Errorf("topology: reading %s: %w", r.Name, err)
		}
		s[r.Offset] = v
	}
	return s, nil
}

// registers is what the audit reads for node n: attached, the counters
// moved since Start (a chip server's chips outlive their clients) and the
// status registers at Close.
func (n *Node) registers() registers {
	if n.Chip != nil {
		return n.Chip
	}
	return since{n.initial, n.final}
}

// since is the change of a chip's counters between two snapshots, and
// its other registers as at the second.
type since struct{ from, to snapshot }

// Register implements registers.
func (s since) Register(off uint16) uint64 {
	if d, ok := regs.Lookup(off); ok && d.Access == regs.Counter {
		return s.to[off] - s.from[off]
	}
	return s.to[off]
}

// queuedAtStart is what was in node n's host TX FIFO and RX metadata
// FIFO when the topology started: 0 in-process (fresh chips), what a
// previous client left in a served chip.
func (n *Node) queuedAtStart() (tx, rx uint64) {
	if n.Chip != nil {
		return 0, 0
	}
	return hostQueued(n.initial), rxQueued(n.initial)
}

// hostQueued is the frames in the host TX FIFO: written minus read,
// modulo 1024 (FS_GENERAL_STATUS).
func hostQueued(r registers) uint64 {
	gs := r.Register(regs.FSGeneralStatus)
	return (regs.FSHostFIFOWrCnt.Get(gs) - regs.FSHostFIFORdCnt.Get(gs)) & 1023
}

// rxQueued is the entries in the RX metadata FIFO (TSN_RX_FIFO_STATUS).
func rxQueued(r registers) uint64 {
	return regs.RxMetaFIFODataCnt.Get(r.Register(regs.TSNRxFIFOStatus))
}

// chipsUnreadable reports, for an attached topology, that a chip's
// registers could not be read at Close (its server stopped answering):
// then the equations through the chips cannot be checked.
func (t *Topology) chipsUnreadable(nodes ...*Node) error {
	for _, n := range nodes {
		switch {
		case n.Chip != nil:
		case n.initial == nil && n.startErr == nil:
			return fmt.Errorf("%s: chip counters not read at start (the topology did not start), the equations through the chips are not checked", n.Name)
		case n.startErr != nil:
			return fmt.Errorf("%s: chip counters unreadable at start, the equations through the chips are not checked: %w", n.Name, n.startErr)
		case n.finalErr != nil:
			return fmt.Errorf("%s: chip counters unreadable at close, the equations through the chips are not checked: %w", n.Name, n.finalErr)
		}
	}
	return nil
}
