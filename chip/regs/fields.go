package regs

// Field is a bit field [Hi:Lo] of a 64-bit register.
type Field struct {
	Name   string
	Hi, Lo uint
}

// The shift counts below are masked with &63, which changes nothing for
// Hi and Lo in 0..63 but lets the compiler drop the code Go otherwise
// emits for shifts of 64 bits or more: the frame path does about 30 field
// operations per frame, and this halves what they cost (150 instructions
// fewer per 64-byte frame in chip's BenchmarkFrameWork; issue 13).

// Mask returns the field's bits in place.
func (f Field) Mask() uint64 { return (^uint64(0) >> ((63 - f.Hi + f.Lo) & 63)) << (f.Lo & 63) }

// Get extracts the field from a register value.
func (f Field) Get(v uint64) uint64 { return (v & f.Mask()) >> (f.Lo & 63) }

// Put returns v with the field set to x (excess bits of x are discarded).
func (f Field) Put(v, x uint64) uint64 { return v&^f.Mask() | (x<<(f.Lo&63))&f.Mask() }

// Set reports whether a one-bit field is set in v.
func (f Field) Set(v uint64) bool { return f.Get(v) != 0 }

// Fields of TSN_SYSTEM_INFO.
var (
	InfoYear   = Field{"YEAR", 63, 56}
	InfoMonth  = Field{"MONTH", 55, 48}
	InfoDay    = Field{"DAY", 47, 40}
	InfoCommit = Field{"COMMIT", 39, 32}
)

// Field of TSN_MAC_ADDR.
var MACAddress = Field{"MAC_ADDR", 47, 0}

// Field of TSN_SYSTEM_CONTROL.
var TSNEnable = Field{"TSN_ENABLE", 0, 0}

// Fields of TSN_RX_CONTROL.
var (
	RxMaxFrameLength        = Field{"MAX_FRAME_LENGTH", 63, 48}
	RxMaxFrameFIFODataCount = Field{"MAX_FRAME_FIFO_DATA_COUNT", 44, 32}
	RxMaxMetaFIFODataCount  = Field{"MAX_META_FIFO_DATA_COUNT", 24, 16}
	RxClearDropByteCnt      = Field{"CLEAR_DROP_BYTE_CNT", 7, 7}
	RxClearDropFrameCnt     = Field{"CLEAR_DROP_FRAME_CNT", 6, 6}
	RxClearRxByteCnt        = Field{"CLEAR_RX_BYTE_CNT", 5, 5}
	RxClearRxFrameCnt       = Field{"CLEAR_RX_FRAME_CNT", 4, 4}
	RxChecksumEnable        = Field{"CHECKSUM_ENABLE", 3, 3}
	RxJumboDrop             = Field{"JUMBO_DROP", 2, 2}
	RxFCSOffload            = Field{"FCS_OFFLOAD", 1, 1}
	RxVLANOffload           = Field{"VLAN_OFFLOAD", 0, 0}
)

// Fields of TSN_TX_CONTROL.
var (
	TxInterFrameGap     = Field{"ETHERNET_INTER_FRAME_GAP", 31, 16}
	TxHostFIFOFullLimit = Field{"HOST_FIFO_FULL_LIMIT", 9, 0}
)

// Fields of FD_RX_FRAME_STATUS1 and FD_RX_FRAME_STATUS2.
var (
	RxStatusChecksum    = Field{"CHECKSUM", 63, 32}
	RxStatusVLANTag     = Field{"VLAN_TAG", 31, 16}
	RxStatusFrameLength = Field{"FRAME_LENGTH", 15, 0}
	RxFlagVLANOffload   = Field{"VLAN_OFFLOAD", 4, 4}
	RxFlagFCSOffload    = Field{"FCS_OFFLOAD", 3, 3}
	RxFlagFCSError      = Field{"FCS_ERROR", 2, 2}
	RxFlagJumboError    = Field{"JUMBO_ERROR", 1, 1}
	RxFlagFIFOFull      = Field{"FIFO_FULL", 0, 0}
)

// Fields of TSN_RX_FIFO_STATUS.
var (
	RxFrameFIFODataCnt = Field{"FRAME_FIFO_DATA_CNT", 28, 16}
	RxMetaFIFODataCnt  = Field{"META_FIFO_DATA_CNT", 8, 0}
)

// Fields of FS_GENERAL_STATUS.
var (
	FSHostFIFORdCnt    = Field{"HOST_FIFO_RD_CNT", 57, 48}
	FSHostFIFOWrCnt    = Field{"HOST_FIFO_WR_CNT", 41, 32}
	FSAXISTready       = Field{"AXIS_TREADY", 3, 3}
	FSHostFIFOUserFull = Field{"HOST_FIFO_USER_FULL", 2, 2}
	FSHostFIFOEmpty    = Field{"HOST_FIFO_EMPTY", 1, 1}
	FSHostFIFOFull     = Field{"HOST_FIFO_FULL", 0, 0}
)

// Fields of the FP_FRAME_TICK_* registers: one tick_count word.
var (
	FPTick     = Field{"TICK", 31, 3}
	FPPriority = Field{"PRIORITY", 2, 0}
)

// Fields of FP_FRAME_STATUS1, and of FT_TX_FRAME_STATUS1 for the last
// transmitted frame.
var (
	FPAllocAddr   = Field{"ALLOC_ADDR", 55, 48}
	FPFailPolicy  = Field{"FAIL_POLICY", 32, 32}
	FPFrameLength = Field{"FRAME_LENGTH", 31, 16}
	FPTimestampID = Field{"TIMESTAMP_ID", 15, 0}
)
