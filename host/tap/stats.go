package tap

import "time"

// KernelStats are the kernel's own counters of a TAP interface, as `ip -s
// link` shows them, read with netlink. Seen from the kernel, TX is what
// the Linux stack sent out of the TAP (to tsnsim's reader: TxPackets
// counts the frames the reader took, TxDropped those the kernel dropped
// because its queue of txqueuelen frames was full) and RX is what tsnsim
// wrote into it (RxPackets taken by the stack, RxDropped dropped by the
// kernel).
type KernelStats struct {
	RxPackets, RxBytes, RxErrors, RxDropped uint64
	TxPackets, TxBytes, TxErrors, TxDropped uint64
}

// quiesceIdle is how long the reader must have read nothing, after the
// link went down, for Quiesce to consider the TAP's queue drained.
const quiesceIdle = 50 * time.Millisecond
