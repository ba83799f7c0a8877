// Package proto is the LAN1QTSN SPI command protocol of chip.md sections 2
// and 3: command and address constants, transaction lengths, the
// tx_metadata and rx_metadata layouts, and builders for every transaction.
// Both the chip model (which decodes) and the driver core (which encodes)
// use it, as the vendor driver and the FPGA share one header.
package proto

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
)

// Command bytes: the first MOSI byte of every transaction.
const (
	CmdWrite byte = 0x01
	CmdRead  byte = 0x02
)

// Address spaces: the 16-bit big-endian address after the command byte.
const (
	AddrRxFrame  uint16 = 0x1000 // RX frame FIFO, read
	AddrTxFrame  uint16 = 0x2000 // TX frame FIFO, write
	AddrRegRead  uint16 = 0x3000 // register read, | (reg & 0xFFF)
	AddrRegWrite uint16 = 0x4000 // register write, | (reg & 0xFFF)
	AddrRxMeta   uint16 = 0xF000 // RX metadata FIFO, read
	AddrSpace    uint16 = 0xF000 // mask of the address-space nibble
	RegMask      uint16 = 0x0FFF // mask of the register offset
)

// Transaction layout.
const (
	HeaderLen     = 3  // [cmd][addr_hi][addr_lo]
	ReadDataStart = 4  // header + one turnaround byte
	RegReadLen    = 8  // header, turnaround, u32
	RegWriteLen   = 7  // header, u32
	RxMetaLen     = 10 // u64 timestamp, u16 frame_length
	RxMetaReadLen = ReadDataStart + RxMetaLen
	TxMetaLen     = 32
	TxWriteHeader = HeaderLen + TxMetaLen // bytes before the frame in a TX write
	FCSLen        = 4
	MinFrameLen   = 60                   // ETH_ZLEN: frames are padded to this before the FCS
	MinWireLen    = MinFrameLen + FCSLen // shortest frame incl. FCS the chip accepts
	MaxWireLen    = 1560                 // LAN1QTSN_BUFFER_SIZE: longest frame incl. FCS
)

// Timestamp IDs of tx_metadata.
const (
	TimestampNone   uint16 = 0
	TimestampGPTP   uint16 = 1
	TimestampNormal uint16 = 2
	TimestampMaxID  uint16 = 4
)

// Fail policies of tx_metadata.
const (
	FailDrop  uint8 = 0
	FailRetry uint8 = 1
)

// Priorities the vendor driver puts in tick_count words.
const (
	PriorityGPTP       uint8 = 3
	PriorityVLAN       uint8 = 5
	PriorityBestEffort uint8 = 7
)

// TickMax is the largest 29-bit tick.
const TickMax uint32 = 1<<29 - 1

// TickCount is the C bit-field struct { tick:29; priority:3; } stored
// big-endian: the wire word is tick<<3 | priority.
type TickCount struct {
	Tick     uint32
	Priority uint8
}

// Word returns the 32-bit wire value of t.
func (t TickCount) Word() uint32 { return (t.Tick&TickMax)<<3 | uint32(t.Priority&7) }

// TickCountOf decodes a wire word.
func TickCountOf(w uint32) TickCount { return TickCount{Tick: w >> 3, Priority: uint8(w & 7)} }

// TxMetadata is the 32-byte header prepended to every TX frame.
type TxMetadata struct {
	From, To, DelayFrom, DelayTo TickCount
	FrameLength                  uint16 // frame bytes incl. FCS, metadata excluded
	TimestampID                  uint16
	FailPolicy                   uint8
}

// SendNow returns the simple-mode metadata of the vendor driver: windows
// that are always open, for a frame of wireLen bytes incl. FCS.
func SendNow(wireLen int, priority uint8) TxMetadata {
	open := TickCount{Tick: 0, Priority: priority}
	shut := TickCount{Tick: TickMax, Priority: priority}
	return TxMetadata{From: open, To: shut, DelayFrom: open, DelayTo: shut, FrameLength: uint16(wireLen)}
}

// Put encodes m into b[:TxMetaLen], reserved bytes zero.
func (m TxMetadata) Put(b []byte) {
	_ = b[TxMetaLen-1]
	binary.BigEndian.PutUint32(b[0:], m.From.Word())
	binary.BigEndian.PutUint32(b[4:], m.To.Word())
	binary.BigEndian.PutUint32(b[8:], m.DelayFrom.Word())
	binary.BigEndian.PutUint32(b[12:], m.DelayTo.Word())
	binary.BigEndian.PutUint16(b[16:], m.FrameLength)
	binary.BigEndian.PutUint16(b[18:], m.TimestampID)
	b[20] = m.FailPolicy
	clear(b[21:TxMetaLen])
}

// ParseTxMetadata decodes b[:TxMetaLen]. Reserved bytes are ignored.
func ParseTxMetadata(b []byte) TxMetadata {
	_ = b[TxMetaLen-1]
	return TxMetadata{
		From:        TickCountOf(binary.BigEndian.Uint32(b[0:])),
		To:          TickCountOf(binary.BigEndian.Uint32(b[4:])),
		DelayFrom:   TickCountOf(binary.BigEndian.Uint32(b[8:])),
		DelayTo:     TickCountOf(binary.BigEndian.Uint32(b[12:])),
		FrameLength: binary.BigEndian.Uint16(b[16:]),
		TimestampID: binary.BigEndian.Uint16(b[18:]),
		FailPolicy:  b[20],
	}
}

// RxMetadata is the 10-byte entry of the RX metadata FIFO.
type RxMetadata struct {
	Timestamp   uint64 // SYSCOUNT at the start of the frame
	FrameLength uint16 // bytes incl. FCS; 0 means the FIFO is empty
}

// Put encodes m into b[:RxMetaLen].
func (m RxMetadata) Put(b []byte) {
	binary.BigEndian.PutUint64(b[0:], m.Timestamp)
	binary.BigEndian.PutUint16(b[8:], m.FrameLength)
}

// ParseRxMetadata decodes b[:RxMetaLen].
func ParseRxMetadata(b []byte) RxMetadata {
	return RxMetadata{Timestamp: binary.BigEndian.Uint64(b[0:]), FrameLength: binary.BigEndian.Uint16(b[8:])}
}

func header(b []byte, cmd byte, addr uint16) {
	b[0] = cmd
	binary.BigEndian.PutUint16(b[1:], addr)
}

// RegRead returns the MOSI bytes of a register read of the 32-bit half at
// reg: 02 3R RR + 5 zero bytes.
func RegRead(reg uint16) []byte {
	b := make([]byte, RegReadLen)
	header(b, CmdRead, AddrRegRead|reg&RegMask)
	return b
}

// RegReadValue extracts the value from a register read's MISO bytes.
func RegReadValue(miso []byte) uint32 { return binary.BigEndian.Uint32(miso[ReadDataStart:]) }

// RegWrite returns the MOSI bytes of a register write: 01 4R RR v3 v2 v1 v0.
func RegWrite(reg uint16, v uint32) []byte {
	b := make([]byte, RegWriteLen)
	header(b, CmdWrite, AddrRegWrite|reg&RegMask)
	binary.BigEndian.PutUint32(b[HeaderLen:], v)
	return b
}

// RxMetaRead returns the MOSI bytes of an RX metadata read: 02 F0 00 + 11
// zero bytes.
func RxMetaRead() []byte {
	b := make([]byte, RxMetaReadLen)
	header(b, CmdRead, AddrRxMeta)
	return b
}

// RxFrameRead returns the MOSI bytes of an RX frame read of n bytes (frame
// incl. FCS): 02 10 00 + (1 + n) zero bytes.
func RxFrameRead(n int) []byte {
	b := make([]byte, ReadDataStart+n)
	header(b, CmdRead, AddrRxFrame)
	return b
}

// TxFrameWrite returns the MOSI bytes of a TX frame write: 01 20 00, the
// metadata, the frame padded to MinFrameLen with zeros, and its FCS
// (least-significant byte first). m.FrameLength is set from the padded
// frame. It fails when the frame and FCS exceed MaxWireLen.
func TxFrameWrite(m TxMetadata, frame []byte) ([]byte, error) {
	return AppendTxFrameWrite(nil, m, frame)
}

// AppendTxFrameWrite appends the MOSI bytes of TxFrameWrite(m, frame) to
// dst and returns the extended slice; with a dst of enough capacity
// (TxWriteHeader + MaxWireLen) it does not allocate.
func AppendTxFrameWrite(dst []byte, m TxMetadata, frame []byte) ([]byte, error) {
	n := max(len(frame), MinFrameLen)
	if n+FCSLen > MaxWireLen {
		return dst, fmt.Errorf("proto: frame of %d bytes plus FCS exceeds %d bytes", len(frame), MaxWireLen)
	}
	total := len(dst) + TxWriteHeader + n + FCSLen
	if cap(dst) < total {
		grown := make([]byte, len(dst), total)
		copy(grown, dst)
		dst = grown
	}
	out := dst[:total]
	b := out[len(dst):]
	clear(b[:TxWriteHeader])
	header(b, CmdWrite, AddrTxFrame)
	m.FrameLength = uint16(n + FCSLen)
	m.Put(b[HeaderLen:])
	body := b[TxWriteHeader : TxWriteHeader+n]
	clear(body[copy(body, frame):])
	binary.LittleEndian.PutUint32(b[TxWriteHeader+n:], crc32.ChecksumIEEE(body))
	return out, nil
}

// AppendFCS returns frame with its IEEE 802.3 FCS appended, least
// significant byte first, as on the wire.
func AppendFCS(frame []byte) []byte {
	return binary.LittleEndian.AppendUint32(frame, crc32.ChecksumIEEE(frame))
}

// FCSValid reports whether the last four bytes of wire are the FCS of the
// bytes before them.
func FCSValid(wire []byte) bool {
	if len(wire) < FCSLen {
		return false
	}
	n := len(wire) - FCSLen
	return binary.LittleEndian.Uint32(wire[n:]) == crc32.ChecksumIEEE(wire[:n])
}
