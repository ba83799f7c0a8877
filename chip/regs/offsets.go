package regs

// Offsets of the 64-bit registers within the 12-bit register space
// (chip.md section 4). Each register X is exposed as two 32-bit halves:
// X_H at the offset (bits 63:32) and X_L at offset+4 (bits 31:0).

// General block.
const (
	TSNSystemInfo    uint16 = 0x0278 // TSN_SYSTEM_INFO: build date and commit
	TSNMACAddr       uint16 = 0x0280 // TSN_MAC_ADDR: station MAC address
	TSNSysCount      uint16 = 0x0288 // TSN_SYSCOUNT: free-running 64-bit counter
	TSNSystemControl uint16 = 0x0290 // TSN_SYSTEM_CONTROL: TSN enable
	TSNRxControl     uint16 = 0x0298 // TSN_RX_CONTROL: RX limits, clear bits, offloads
	TSNTxControl     uint16 = 0x02A0 // TSN_TX_CONTROL: inter-frame gap, host FIFO limit
	PPSPulseAt       uint16 = 0x02A8 // PPS_PULSE_AT: SYSCOUNT of the next pulse
	PPSCycle1S       uint16 = 0x02B0 // PPS_CYCLE_1S: ticks per second
)

// RX frame decoder block (FD_).
const (
	FDRxTstamp             uint16 = 0x0000 // FD_RX_TSTAMP: last RX timestamp
	FDRxFrameStatus1       uint16 = 0x0008 // FD_RX_FRAME_STATUS1: last frame checksum, VLAN, length
	FDRxFrameStatus2       uint16 = 0x0010 // FD_RX_FRAME_STATUS2: last frame flags
	FDTotalRxFrameCnt      uint16 = 0x0018 // FD_TOTAL_RX_FRAME_CNT
	FDTotalRxByteCnt       uint16 = 0x0020 // FD_TOTAL_RX_BYTE_CNT
	FDTotalDropFrameCnt    uint16 = 0x0028 // FD_TOTAL_DROP_FRAME_CNT
	FDTotalDropByteCnt     uint16 = 0x0030 // FD_TOTAL_DROP_BYTE_CNT
	FDFCSDropFrameCnt      uint16 = 0x0038 // FD_FCS_DROP_FRAME_CNT
	FDFCSDropByteCnt       uint16 = 0x0040 // FD_FCS_DROP_BYTE_CNT
	FDJumboDropFrameCnt    uint16 = 0x0048 // FD_JUMBO_DROP_FRAME_CNT
	FDJumboDropByteCnt     uint16 = 0x0050 // FD_JUMBO_DROP_BYTE_CNT
	FDFIFOFullDropFrameCnt uint16 = 0x0058 // FD_FIFO_FULL_DROP_FRAME_CNT
	FDFIFOFullDropByteCnt  uint16 = 0x0060 // FD_FIFO_FULL_DROP_BYTE_CNT
	TSNRxFIFOStatus        uint16 = 0x00A8 // TSN_RX_FIFO_STATUS: RX FIFO occupancies
)

// TX frame stacker block (FS_): the host FIFO that SPI TX writes land in.
const (
	FSGeneralStatus             uint16 = 0x00B0 // FS_GENERAL_STATUS
	FSTotalRxFrameCnt           uint16 = 0x00B8 // FS_TOTAL_RX_FRAME_CNT: frames taken from the host
	FSTotalRx16ByteCnt          uint16 = 0x00C0 // FS_TOTAL_RX_16BYTE_CNT
	FSTotalBackPressureEventCnt uint16 = 0x00C8 // FS_TOTAL_BACK_PRESSURE_EVENT_CNT
)

// TX frame parser block (FP_): the metadata of the last parsed frame.
const (
	FPFrameTickFrom      uint16 = 0x00E0 // FP_FRAME_TICK_FROM
	FPFrameTickTo        uint16 = 0x00E8 // FP_FRAME_TICK_TO
	FPFrameTickDelayFrom uint16 = 0x00F0 // FP_FRAME_TICK_DELAY_FROM
	FPFrameTickDelayTo   uint16 = 0x00F8 // FP_FRAME_TICK_DELAY_TO
	FPFrameStatus1       uint16 = 0x0100 // FP_FRAME_STATUS1
	FPFrameStatus2       uint16 = 0x0108 // FP_FRAME_STATUS2
)

// TX scheduler block (FSCH_).
const (
	FSCHTxFrameStatus      uint16 = 0x0118 // FSCH_TX_FRAME_STATUS
	FSCHTotalNewEntryCnt   uint16 = 0x0120 // FSCH_TOTAL_NEW_ENTRY_CNT
	FSCHTotalValidEntryCnt uint16 = 0x0128 // FSCH_TOTAL_VALID_ENTRY_CNT
	FSCHTotalDelayEntryCnt uint16 = 0x0130 // FSCH_TOTAL_DELAY_ENTRY_CNT
	FSCHTotalDropEntryCnt  uint16 = 0x0138 // FSCH_TOTAL_DROP_ENTRY_CNT
)

// TX buffer writer/reader and transfer FSM blocks (FBW_, FBR_, FTRSF_).
const (
	FBWStatus0                 uint16 = 0x0148 // FBW_STATUS0
	FBWStatus1                 uint16 = 0x0150 // FBW_STATUS1
	FBWStatus2                 uint16 = 0x0158 // FBW_STATUS2
	FBWStatus3                 uint16 = 0x0160 // FBW_STATUS3
	FBRStatus0                 uint16 = 0x0168 // FBR_STATUS0
	FBRStatus1                 uint16 = 0x0170 // FBR_STATUS1
	FBRStatus2                 uint16 = 0x0178 // FBR_STATUS2
	FTRSFTxFrameStatus         uint16 = 0x0188 // FTRSF_TX_FRAME_STATUS
	FTRSFGeneralStatus         uint16 = 0x0190 // FTRSF_GENERAL_STATUS
	FTRSFTotalTxFrameCnt       uint16 = 0x0198 // FTRSF_TOTAL_TX_FRAME_CNT
	FTRSFTotalMetaFIFOFullCnt  uint16 = 0x01A0 // FTRSF_TOTAL_META_FIFO_FULL_CNT
	FTRSFTotalFrameFIFOFullCnt uint16 = 0x01A8 // FTRSF_TOTAL_FRAME_FIFO_FULL_CNT
)

// TX transmitter block (FT_).
const (
	FTTxFrameStatus1  uint16 = 0x01B8 // FT_TX_FRAME_STATUS1
	FTTxFrameStatus2  uint16 = 0x01C0 // FT_TX_FRAME_STATUS2
	FTTotalTxFrameCnt uint16 = 0x01C8 // FT_TOTAL_TX_FRAME_CNT
	FTTotalTxByteCnt  uint16 = 0x01D0 // FT_TOTAL_TX_BYTE_CNT
	FTTxTstamp1       uint16 = 0x01D8 // FT_TX_TSTAMP1: timestamp_id 1 (gPTP)
	FTTxTstamp2       uint16 = 0x01E0 // FT_TX_TSTAMP2: timestamp_id 2 (normal)
	FTTxTstamp3       uint16 = 0x01E8 // FT_TX_TSTAMP3: timestamp_id 3 (reserved)
	FTTxTstamp4       uint16 = 0x01F0 // FT_TX_TSTAMP4: timestamp_id 4 (reserved)
)

// FTTxTstamp returns the FT_TX_TSTAMPn register for timestamp_id n (1-4).
func FTTxTstamp(n int) uint16 { return FTTxTstamp1 + uint16(n-1)*8 }
