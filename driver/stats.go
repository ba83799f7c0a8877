package driver

// Stats are the interface counters, modelled on Linux rtnl_link_stats64,
// plus the driver's own. Every frame offered to Transmit ends in exactly
// one of TxPackets, TxErrors, TxDropped, TxBusy, or is still queued
// (TxQueued); every frame read from the chip ends in exactly one of
// RxPackets, RxErrors, RxDropped.
type Stats struct {
	RxPackets, TxPackets uint64
	RxBytes, TxBytes     uint64 // frame bytes without FCS; TX as offered, before padding
	RxErrors, TxErrors   uint64 // TX: the SPI write failed; RX: read failed or bad frame
	RxDropped, TxDropped uint64 // TX: down, too long, or on the ring at Stop; RX: stack refused

	RxLengthErrors uint64 // part of RxErrors: metadata length out of range
	RxCRCErrors    uint64 // part of RxErrors: FCS wrong after the SPI read
	RxFIFOErrors   uint64 // part of RxErrors: frame read failed on the bus

	TxBusy    uint64 // Transmit refused with ErrBusy (NETDEV_TX_BUSY)
	TxOffered uint64 // calls to Transmit
	TxQueued  int    // frames on the ring or being written now

	SPIErrors uint64 // failed SPI transfers of the worker, any kind
}

// TxAccounted is the sum every offered frame must be found in.
func (s Stats) TxAccounted() uint64 {
	return s.TxPackets + s.TxErrors + s.TxDropped + s.TxBusy + uint64(s.TxQueued)
}

// Stats returns a snapshot of the counters.
func (d *Driver) Stats() Stats {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := d.stats
	s.TxQueued = d.queued + d.inFlight
	return s
}
