package driver

// LinkStats64 is the interface's rtnl_link_stats64 as a kernel driver's
// ndo_get_stats64 fills it: the driver's own counters plus the chip's
// drop counters (read over SPI at a low rate, see ChipStatsInterval).
type LinkStats64 struct {
	RxPackets, TxPackets uint64
	RxBytes, TxBytes     uint64
	// RxErrors: the driver's RxErrors plus the frames the chip dropped
	// as bad (FCS, jumbo). TxErrors: the driver's TxErrors plus the TX
	// writes the chip refused for space (tx_fifo_errors).
	RxErrors, TxErrors   uint64
	RxDropped, TxDropped uint64
	// RxLengthErrors: driver (metadata length out of range) plus chip
	// (FD_JUMBO_DROP_FRAME_CNT).
	RxLengthErrors uint64
	// RxCRCErrors: driver (FCS wrong after the SPI read) plus chip
	// (FD_FCS_DROP_FRAME_CNT).
	RxCRCErrors uint64
	// RxFIFOErrors: frames lost inside failed SPI reads (the driver's).
	RxFIFOErrors uint64
	// RxMissedErrors: frames the chip dropped because its RX FIFOs were
	// full (FD_FIFO_FULL_DROP_FRAME_CNT).
	RxMissedErrors uint64
	// TxFIFOErrors: TX writes the chip refused because its host FIFO was
	// full (FS_TOTAL_BACK_PRESSURE_EVENT_CNT); the driver had counted
	// them in TxPackets.
	TxFIFOErrors uint64
}

// Link returns the counters as ndo_get_stats64 reports them.
func (s Stats) Link() LinkStats64 {
	return LinkStats64{
		RxPackets: s.RxPackets, TxPackets: s.TxPackets,
		RxBytes: s.RxBytes, TxBytes: s.TxBytes,
		RxErrors:       s.RxErrors + s.ChipRxFCS + s.ChipRxJumbo,
		TxErrors:       s.TxErrors + s.ChipTxBackPressure,
		RxDropped:      s.RxDropped,
		TxDropped:      s.TxDropped,
		RxLengthErrors: s.RxLengthErrors + s.ChipRxJumbo,
		RxCRCErrors:    s.RxCRCErrors + s.ChipRxFCS,
		RxFIFOErrors:   s.RxFIFOErrors,
		RxMissedErrors: s.ChipRxFIFOFull,
		TxFIFOErrors:   s.ChipTxBackPressure,
	}
}
