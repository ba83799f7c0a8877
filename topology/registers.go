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

// registersOf is what the audit reads for node n.
func (n *Node) registers() registers {
	if n.Chip != nil {
		return n.Chip
	}
	return n.final
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
