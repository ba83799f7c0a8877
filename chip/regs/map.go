// Package regs declares the LAN1QTSN register map (chip.md section 4) as
// one table and implements the register file that the chip model exposes
// over SPI: reset values, read-only and read-write registers, counters,
// self-clearing control bits and live (computed on read) registers.
package regs

// Access says how a register behaves under SPI reads and writes.
type Access int

const (
	// ReadOnly registers hold status the chip sets; SPI writes are ignored
	// and counted.
	ReadOnly Access = iota
	// ReadWrite registers are control registers; writes store the bits of
	// the declared fields (all 32 bits of a half when none are declared).
	ReadWrite
	// Counter registers are read-only 64-bit counters the chip increments;
	// some are cleared by the clear bits of TSN_RX_CONTROL.
	Counter
	// Live registers are read-only and computed by the chip at the moment
	// of the read (SYSCOUNT, FIFO occupancies).
	Live
)

// String returns the access mode as the register dump prints it.
func (a Access) String() string {
	switch a {
	case ReadOnly:
		return "RO"
	case ReadWrite:
		return "RW"
	case Counter:
		return "CNT"
	case Live:
		return "LIVE"
	}
	return "?"
}

// Action is a self-clearing write-1 control bit: writing 1 to Field clears
// the Clears counters; the bit always reads back 0.
type Action struct {
	Field  Field
	Clears []uint16
}

// Def declares one 64-bit register.
type Def struct {
	Offset  uint16
	Name    string
	Access  Access
	Reset   uint64
	Fields  []Field
	Actions []Action
	Doc     string
}

// Defaults the chip model uses where chip.md gives no reset value
// ([model] choices, documented in the README).
const (
	DefaultMaxFrameLength   = 1560 // LAN1QTSN_BUFFER_SIZE
	DefaultInterFrameGap    = 12   // bytes, ETHERNET_GAP_SIZE
	DefaultPPSCycle         = 125_000_000
	DefaultRxControlLowBits = 1 << 2 // JUMBO_DROP on, offloads off
)

var tickFields = []Field{FPTick, FPPriority}

// Map is the whole register map, in offset order. Reset values that depend
// on the chip's configuration (MAC, build info, FIFO capacities) are set
// when the register file is created.
var Map = []Def{
	// RX frame decoder.
	{Offset: FDRxTstamp, Name: "FD_RX_TSTAMP", Access: ReadOnly, Doc: "SYSCOUNT at the start of the last frame received"},
	{Offset: FDRxFrameStatus1, Name: "FD_RX_FRAME_STATUS1", Access: ReadOnly,
		Fields: []Field{RxStatusChecksum, RxStatusVLANTag, RxStatusFrameLength},
		Doc:    "last frame received: FCS as received, VLAN tag (0 if untagged), length incl. FCS"},
	{Offset: FDRxFrameStatus2, Name: "FD_RX_FRAME_STATUS2", Access: ReadOnly,
		Fields: []Field{RxFlagVLANOffload, RxFlagFCSOffload, RxFlagFCSError, RxFlagJumboError, RxFlagFIFOFull},
		Doc:    "last frame received: offload settings applied and drop reason"},
	{Offset: FDTotalRxFrameCnt, Name: "FD_TOTAL_RX_FRAME_CNT", Access: Counter, Doc: "frames seen by the decoder, dropped ones included"},
	{Offset: FDTotalRxByteCnt, Name: "FD_TOTAL_RX_BYTE_CNT", Access: Counter, Doc: "bytes (incl. FCS) seen by the decoder"},
	{Offset: FDTotalDropFrameCnt, Name: "FD_TOTAL_DROP_FRAME_CNT", Access: Counter, Doc: "frames dropped for any reason"},
	{Offset: FDTotalDropByteCnt, Name: "FD_TOTAL_DROP_BYTE_CNT", Access: Counter},
	{Offset: FDFCSDropFrameCnt, Name: "FD_FCS_DROP_FRAME_CNT", Access: Counter},
	{Offset: FDFCSDropByteCnt, Name: "FD_FCS_DROP_BYTE_CNT", Access: Counter},
	{Offset: FDJumboDropFrameCnt, Name: "FD_JUMBO_DROP_FRAME_CNT", Access: Counter},
	{Offset: FDJumboDropByteCnt, Name: "FD_JUMBO_DROP_BYTE_CNT", Access: Counter},
	{Offset: FDFIFOFullDropFrameCnt, Name: "FD_FIFO_FULL_DROP_FRAME_CNT", Access: Counter},
	{Offset: FDFIFOFullDropByteCnt, Name: "FD_FIFO_FULL_DROP_BYTE_CNT", Access: Counter},
	{Offset: TSNRxFIFOStatus, Name: "TSN_RX_FIFO_STATUS", Access: Live,
		Fields: []Field{RxFrameFIFODataCnt, RxMetaFIFODataCnt},
		Doc:    "frame FIFO occupancy in 16-byte words, metadata FIFO occupancy in entries"},

	// TX frame stacker (host FIFO).
	{Offset: FSGeneralStatus, Name: "FS_GENERAL_STATUS", Access: Live,
		Fields: []Field{FSHostFIFORdCnt, FSHostFIFOWrCnt, FSAXISTready, FSHostFIFOUserFull, FSHostFIFOEmpty, FSHostFIFOFull},
		Doc:    "host FIFO: frames read/written (mod 1024), tready, user-full (>= HOST_FIFO_FULL_LIMIT), empty, full"},
	{Offset: FSTotalRxFrameCnt, Name: "FS_TOTAL_RX_FRAME_CNT", Access: Counter, Doc: "frames accepted from the host"},
	{Offset: FSTotalRx16ByteCnt, Name: "FS_TOTAL_RX_16BYTE_CNT", Access: Counter, Doc: "16-byte words (metadata + frame) accepted from the host"},
	{Offset: FSTotalBackPressureEventCnt, Name: "FS_TOTAL_BACK_PRESSURE_EVENT_CNT", Access: Counter, Doc: "TX writes refused because the host FIFO was full (frame lost)"},

	// TX frame parser.
	{Offset: FPFrameTickFrom, Name: "FP_FRAME_TICK_FROM", Access: ReadOnly, Fields: tickFields},
	{Offset: FPFrameTickTo, Name: "FP_FRAME_TICK_TO", Access: ReadOnly, Fields: tickFields},
	{Offset: FPFrameTickDelayFrom, Name: "FP_FRAME_TICK_DELAY_FROM", Access: ReadOnly, Fields: tickFields},
	{Offset: FPFrameTickDelayTo, Name: "FP_FRAME_TICK_DELAY_TO", Access: ReadOnly, Fields: tickFields},
	{Offset: FPFrameStatus1, Name: "FP_FRAME_STATUS1", Access: ReadOnly,
		Fields: []Field{FPAllocAddr, FPFailPolicy, FPFrameLength, FPTimestampID},
		Doc:    "last parsed frame; ALLOC_ADDR is its host FIFO slot"},
	{Offset: FPFrameStatus2, Name: "FP_FRAME_STATUS2", Access: ReadOnly, Doc: "layout undocumented; reads 0"},

	// TX scheduler.
	{Offset: FSCHTxFrameStatus, Name: "FSCH_TX_FRAME_STATUS", Access: ReadOnly, Doc: "layout undocumented; reads 0"},
	{Offset: FSCHTotalNewEntryCnt, Name: "FSCH_TOTAL_NEW_ENTRY_CNT", Access: Counter, Doc: "frames entering the scheduler"},
	{Offset: FSCHTotalValidEntryCnt, Name: "FSCH_TOTAL_VALID_ENTRY_CNT", Access: Counter, Doc: "frames released inside a window"},
	{Offset: FSCHTotalDelayEntryCnt, Name: "FSCH_TOTAL_DELAY_ENTRY_CNT", Access: Counter, Doc: "frames moved to their delay window"},
	{Offset: FSCHTotalDropEntryCnt, Name: "FSCH_TOTAL_DROP_ENTRY_CNT", Access: Counter, Doc: "frames dropped because their window passed"},

	// TX buffer and transfer FSM.
	{Offset: FBWStatus0, Name: "FBW_STATUS0", Access: ReadOnly, Doc: "layout undocumented; reads 0"},
	{Offset: FBWStatus1, Name: "FBW_STATUS1", Access: ReadOnly, Doc: "layout undocumented; reads 0"},
	{Offset: FBWStatus2, Name: "FBW_STATUS2", Access: ReadOnly, Doc: "layout undocumented; reads 0"},
	{Offset: FBWStatus3, Name: "FBW_STATUS3", Access: ReadOnly, Doc: "layout undocumented; reads 0"},
	{Offset: FBRStatus0, Name: "FBR_STATUS0", Access: ReadOnly, Doc: "layout undocumented; reads 0"},
	{Offset: FBRStatus1, Name: "FBR_STATUS1", Access: ReadOnly, Doc: "layout undocumented; reads 0"},
	{Offset: FBRStatus2, Name: "FBR_STATUS2", Access: ReadOnly, Doc: "layout undocumented; reads 0"},
	{Offset: FTRSFTxFrameStatus, Name: "FTRSF_TX_FRAME_STATUS", Access: ReadOnly, Doc: "layout undocumented; reads 0"},
	{Offset: FTRSFGeneralStatus, Name: "FTRSF_GENERAL_STATUS", Access: ReadOnly, Doc: "layout undocumented; reads 0"},
	{Offset: FTRSFTotalTxFrameCnt, Name: "FTRSF_TOTAL_TX_FRAME_CNT", Access: Counter, Doc: "frames handed to the transmitter"},
	{Offset: FTRSFTotalMetaFIFOFullCnt, Name: "FTRSF_TOTAL_META_FIFO_FULL_CNT", Access: Counter, Doc: "never increments in the model (no internal FIFO between scheduler and transmitter)"},
	{Offset: FTRSFTotalFrameFIFOFullCnt, Name: "FTRSF_TOTAL_FRAME_FIFO_FULL_CNT", Access: Counter, Doc: "never increments in the model"},

	// TX transmitter.
	{Offset: FTTxFrameStatus1, Name: "FT_TX_FRAME_STATUS1", Access: ReadOnly,
		Fields: []Field{FPFrameLength, FPTimestampID}, Doc: "last transmitted frame: length incl. FCS, timestamp_id"},
	{Offset: FTTxFrameStatus2, Name: "FT_TX_FRAME_STATUS2", Access: ReadOnly, Doc: "layout undocumented; reads 0"},
	{Offset: FTTotalTxFrameCnt, Name: "FT_TOTAL_TX_FRAME_CNT", Access: Counter},
	{Offset: FTTotalTxByteCnt, Name: "FT_TOTAL_TX_BYTE_CNT", Access: Counter, Doc: "bytes incl. FCS, without preamble and gap"},
	{Offset: FTTxTstamp1, Name: "FT_TX_TSTAMP1", Access: ReadOnly, Doc: "SYSCOUNT at the start of the last frame sent with timestamp_id 1"},
	{Offset: FTTxTstamp2, Name: "FT_TX_TSTAMP2", Access: ReadOnly, Doc: "as FT_TX_TSTAMP1, timestamp_id 2"},
	{Offset: FTTxTstamp3, Name: "FT_TX_TSTAMP3", Access: ReadOnly, Doc: "as FT_TX_TSTAMP1, timestamp_id 3"},
	{Offset: FTTxTstamp4, Name: "FT_TX_TSTAMP4", Access: ReadOnly, Doc: "as FT_TX_TSTAMP1, timestamp_id 4"},

	// General.
	{Offset: TSNSystemInfo, Name: "TSN_SYSTEM_INFO", Access: ReadOnly,
		Fields: []Field{InfoYear, InfoMonth, InfoDay, InfoCommit}, Doc: "build date (year since 2000, month, day) and commit"},
	{Offset: TSNMACAddr, Name: "TSN_MAC_ADDR", Access: ReadWrite, Fields: []Field{MACAddress}},
	{Offset: TSNSysCount, Name: "TSN_SYSCOUNT", Access: Live, Doc: "free-running; H and L are not latched and can tear"},
	{Offset: TSNSystemControl, Name: "TSN_SYSTEM_CONTROL", Access: ReadWrite, Fields: []Field{TSNEnable},
		Doc: "TSN_ENABLE gates the transmitter; frames wait in the host FIFO while it is 0"},
	{Offset: TSNRxControl, Name: "TSN_RX_CONTROL", Access: ReadWrite,
		Reset: RxMaxFrameLength.Put(0, DefaultMaxFrameLength) | DefaultRxControlLowBits,
		Fields: []Field{RxMaxFrameLength, RxMaxFrameFIFODataCount, RxMaxMetaFIFODataCount,
			RxChecksumEnable, RxJumboDrop, RxFCSOffload, RxVLANOffload},
		Actions: []Action{
			{RxClearDropByteCnt, []uint16{FDTotalDropByteCnt, FDFCSDropByteCnt, FDJumboDropByteCnt, FDFIFOFullDropByteCnt}},
			{RxClearDropFrameCnt, []uint16{FDTotalDropFrameCnt, FDFCSDropFrameCnt, FDJumboDropFrameCnt, FDFIFOFullDropFrameCnt}},
			{RxClearRxByteCnt, []uint16{FDTotalRxByteCnt}},
			{RxClearRxFrameCnt, []uint16{FDTotalRxFrameCnt}},
		},
		Doc: "checksum enable, FCS offload and VLAN offload are stored and reported in FD_RX_FRAME_STATUS2 but not applied"},
	{Offset: TSNTxControl, Name: "TSN_TX_CONTROL", Access: ReadWrite,
		Reset:  TxInterFrameGap.Put(0, DefaultInterFrameGap),
		Fields: []Field{TxInterFrameGap, TxHostFIFOFullLimit}},
	{Offset: PPSPulseAt, Name: "PPS_PULSE_AT", Access: ReadWrite, Doc: "SYSCOUNT of the next PPS pulse; advances by PPS_CYCLE_1S at each pulse"},
	{Offset: PPSCycle1S, Name: "PPS_CYCLE_1S", Access: ReadWrite, Reset: DefaultPPSCycle, Doc: "ticks between PPS pulses; 0 stops the output"},
}

var index = func() map[uint16]*Def {
	m := make(map[uint16]*Def, len(Map))
	for i := range Map {
		m[Map[i].Offset] = &Map[i]
	}
	return m
}()

// Lookup returns the register declared at the 64-bit offset off.
func Lookup(off uint16) (*Def, bool) {
	d, ok := index[off]
	return d, ok
}

// Half names which 32-bit half of a 64-bit register an address selects.
type Half int

const (
	// High is X_H, bits 63:32, at the register's offset.
	High Half = iota
	// Low is X_L, bits 31:0, at offset+4.
	Low
)

// Resolve maps a 12-bit SPI register address to its register and half.
// Addresses that are not the H or L half of a declared register report
// false: they read as 0 and ignore writes.
func Resolve(addr uint16) (d *Def, h Half, ok bool) {
	addr &= 0xFFF
	switch addr & 7 {
	case 0:
		d, ok = index[addr]
		return d, High, ok
	case 4:
		d, ok = index[addr-4]
		return d, Low, ok
	}
	return nil, 0, false
}

// writeMask returns the bits of a ReadWrite register that writes store.
func (d *Def) writeMask() uint64 {
	if len(d.Fields) == 0 {
		return ^uint64(0)
	}
	var m uint64
	for _, f := range d.Fields {
		m |= f.Mask()
	}
	return m
}
