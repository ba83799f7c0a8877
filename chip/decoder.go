package chip

import (
	"encoding/binary"
	"fmt"
	"time"

	"go.uber.org/zap"

	"tsnsim/chip/proto"
	"tsnsim/chip/regs"
)

// ProtocolErrorKind classifies a rejected SPI transaction.
type ProtocolErrorKind int

// The kinds of rejected transactions. A rejected transaction returns all
// zero MISO bytes and changes no state, except where noted.
const (
	// ErrShortHeader: fewer than 3 bytes, no command header.
	ErrShortHeader ProtocolErrorKind = iota
	// ErrUnknownCommand: first byte is neither 0x01 nor 0x02.
	ErrUnknownCommand
	// ErrUnknownAddress: an address that is not a space of the command
	// (for example a read of 0x2000, a write of 0xF000, 0x1004, 0x5000).
	ErrUnknownAddress
	// ErrBadLength: a register read not 8 bytes, a register write not 7
	// bytes, a metadata read not 14 bytes, a frame read with no data byte.
	ErrBadLength
	// ErrShortTxWrite: a TX write shorter than header + 32-byte metadata.
	ErrShortTxWrite
	// ErrTxLengthMismatch: tx_metadata.frame_length differs from the
	// number of frame bytes sent.
	ErrTxLengthMismatch
	// ErrTxOversize: frame_length above 1560.
	ErrTxOversize
	// ErrTxRunt: frame_length below 64 (60-byte minimum plus FCS).
	ErrTxRunt
	// ErrRxFrameFIFOEmpty: a frame read while the RX frame FIFO is empty.
	ErrRxFrameFIFOEmpty
	// ErrRxFrameLengthMismatch: a frame read whose length differs from the
	// head frame's. The head frame is still consumed (the FIFO is frame
	// granular): the MISO carries as many of its bytes as fit, zeros
	// after. This keeps the RX FIFOs moving instead of wedging them.
	ErrRxFrameLengthMismatch
	numProtocolErrors
)

var protocolErrorNames = [numProtocolErrors]string{
	"short header", "unknown command", "unknown address", "bad length",
	"short TX write", "TX length mismatch", "TX oversize", "TX runt",
	"RX frame FIFO empty", "RX frame length mismatch",
}

// String names the kind.
// RejectsTxWrite reports whether errors of kind k reject a TX frame write
// (the frame never reached the host FIFO).
func (k ProtocolErrorKind) RejectsTxWrite() bool { return k >= ErrShortTxWrite && k <= ErrTxRunt }

func (k ProtocolErrorKind) String() string {
	if k < 0 || k >= numProtocolErrors {
		return fmt.Sprintf("ProtocolErrorKind(%d)", int(k))
	}
	return protocolErrorNames[k]
}

// ProtocolError is a rejected SPI transaction.
type ProtocolError struct {
	Kind   ProtocolErrorKind
	Detail string
}

func (e *ProtocolError) Error() string { return "chip: " + e.Kind.String() + ": " + e.Detail }

// reject counts a protocol error. Called with c.mu held.
func (c *Chip) reject(kind ProtocolErrorKind, format string, args ...any) error {
	c.errs[kind]++
	err := &ProtocolError{Kind: kind, Detail: fmt.Sprintf(format, args...)}
	c.log.Debug("rejected SPI transaction", zap.Error(err))
	return err
}

// Transact decodes one full-duplex SPI transaction: mosi is what the host
// clocked out; miso (the same length) receives what the chip clocks back.
// Bytes of miso the transaction does not define are zero. A rejected
// transaction is counted and returns a *ProtocolError; the SPI bus itself
// reports nothing to the host, so transports do not fail the transfer.
//
// The decode time (when a TX frame became ready, when TSN was enabled)
// is read from the clock only by a transaction that needs it, so the
// frame path with no timing model reads no clock per transfer.
func (c *Chip) Transact(mosi, miso []byte) error {
	return c.TransactAt(mosi, miso, time.Time{})
}

// TransactAt is Transact for a bus that keeps its own emulated timeline
// (spibridge.TimedDevice): at is when the model decodes the transaction,
// which in a real-time run can be a little before now (the bus woke up
// late). A TX frame is ready, and TSN enabled, from at; the transmitter
// backdates the frame's start to it within its bound. In virtual time
// at is now. A zero at means now, read only if the transaction needs it.
func (c *Chip) TransactAt(mosi, miso []byte, at time.Time) error {
	if !isFrameRead(mosi, miso) {
		clear(miso)
	} // else read clears what the frame does not cover (no double zeroing)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.decodeAt = at
	if len(mosi) < proto.HeaderLen {
		return c.reject(ErrShortHeader, "%d bytes", len(mosi))
	}
	if len(miso) < len(mosi) {
		return c.reject(ErrBadLength, "MISO buffer of %d bytes for %d MOSI bytes", len(miso), len(mosi))
	}
	addr := binary.BigEndian.Uint16(mosi[1:])
	switch mosi[0] {
	case proto.CmdRead:
		return c.read(addr, mosi, miso)
	case proto.CmdWrite:
		return c.write(addr, mosi)
	}
	return c.reject(ErrUnknownCommand, "command %#02x", mosi[0])
}

// decodeTime is when the transaction being decoded is decoded: the
// time TransactAt was given, or else now, read on first use and kept for
// the rest of the transaction. Called with c.mu held.
func (c *Chip) decodeTime() time.Time {
	if c.decodeAt.IsZero() {
		c.decodeAt = c.now()
	}
	return c.decodeAt
}

// isFrameRead reports whether mosi is an RX frame read carrying data,
// with a MISO buffer as long: the one transaction whose MISO the chip
// clears itself around the frame it copies in (read), instead of
// clearing all of it first.
func isFrameRead(mosi, miso []byte) bool {
	return len(mosi) > proto.ReadDataStart && len(miso) >= len(mosi) && mosi[0] == proto.CmdRead &&
		binary.BigEndian.Uint16(mosi[1:]) == proto.AddrRxFrame
}

func (c *Chip) read(addr uint16, mosi, miso []byte) error {
	switch {
	case addr&proto.AddrSpace == proto.AddrRegRead:
		if len(mosi) != proto.RegReadLen {
			return c.reject(ErrBadLength, "register read of %d bytes, want %d", len(mosi), proto.RegReadLen)
		}
		binary.BigEndian.PutUint32(miso[proto.ReadDataStart:], c.regs.Read32(addr&proto.RegMask))
		return nil
	case addr == proto.AddrRxMeta:
		if len(mosi) != proto.RxMetaReadLen {
			return c.reject(ErrBadLength, "metadata read of %d bytes, want %d", len(mosi), proto.RxMetaReadLen)
		}
		if m, ok := c.rxMeta.Pop(); ok {
			m.Put(miso[proto.ReadDataStart:])
		}
		return nil
	case addr == proto.AddrRxFrame:
		n := len(mosi) - proto.ReadDataStart
		if n < 1 {
			return c.reject(ErrBadLength, "frame read of %d bytes carries no data", len(mosi))
		}
		f, ok := c.rxFrames.Pop()
		if !ok {
			clear(miso)
			return c.reject(ErrRxFrameFIFOEmpty, "frame read of %d bytes", n)
		}
		clear(miso[:proto.ReadDataStart])
		clear(miso[proto.ReadDataStart+copy(miso[proto.ReadDataStart:], f):])
		if n != len(f) {
			return c.reject(ErrRxFrameLengthMismatch, "read %d bytes of a %d-byte frame", n, len(f))
		}
		return nil
	}
	return c.reject(ErrUnknownAddress, "read of %#04x", addr)
}

func (c *Chip) write(addr uint16, mosi []byte) error {
	switch {
	case addr&proto.AddrSpace == proto.AddrRegWrite:
		if len(mosi) != proto.RegWriteLen {
			return c.reject(ErrBadLength, "register write of %d bytes, want %d", len(mosi), proto.RegWriteLen)
		}
		c.writeRegister(addr&proto.RegMask, binary.BigEndian.Uint32(mosi[proto.HeaderLen:]))
		return nil
	case addr == proto.AddrTxFrame:
		return c.writeTxFrame(mosi)
	}
	return c.reject(ErrUnknownAddress, "write of %#04x", addr)
}

func (c *Chip) writeRegister(off uint16, v uint32) {
	d := c.regs.Write32(off, v)
	if d == nil {
		c.log.Debug("ignored register write", zap.Uint16("offset", off), zap.Uint32("value", v))
		return
	}
	switch d.Offset {
	case regs.TSNRxControl, regs.TSNTxControl:
		c.applyControl()
		c.wakeTransmitter()
	case regs.PPSPulseAt, regs.PPSCycle1S:
		c.kickPPS()
	case regs.TSNSystemControl:
		switch on := regs.TSNEnable.Set(c.regs.Get(regs.TSNSystemControl)); {
		case on && c.enabled.IsZero():
			c.enabled = c.decodeTime()
		case !on:
			c.enabled = time.Time{}
		}
		c.wakeTransmitter()
	}
}

// writeTxFrame is the frame stacker and parser: it checks the write,
// queues the frame in the host FIFO (or counts back-pressure when full)
// and records the parsed metadata in the FP_ registers.
func (c *Chip) writeTxFrame(mosi []byte) error {
	if len(mosi) < proto.TxWriteHeader {
		return c.reject(ErrShortTxWrite, "%d bytes, want at least %d", len(mosi), proto.TxWriteHeader)
	}
	m := proto.ParseTxMetadata(mosi[proto.HeaderLen:])
	sent := len(mosi) - proto.TxWriteHeader
	switch fl := int(m.FrameLength); {
	case fl > proto.MaxWireLen:
		return c.reject(ErrTxOversize, "frame_length %d > %d", fl, proto.MaxWireLen)
	case fl != sent:
		return c.reject(ErrTxLengthMismatch, "frame_length %d, %d bytes sent", fl, sent)
	case fl < proto.MinWireLen:
		return c.reject(ErrTxRunt, "frame_length %d < %d", fl, proto.MinWireLen)
	}
	e := txEntry{meta: m}
	if !c.host.Fits(e) {
		c.host.Push(e) // counts the drop
		c.regs.Add(regs.FSTotalBackPressureEventCnt, 1)
		c.log.Debug("host FIFO full, TX frame lost", zap.Int("len", sent))
		return nil
	}
	e.frame = append([]byte(nil), mosi[proto.TxWriteHeader:]...) // not zeroed first, unlike make
	if c.cfg.LinkBitsPerSec > 0 {
		e.ready = c.decodeTime() // only the line timeline needs it
	}
	c.host.Push(e)
	c.hostWr++
	c.regs.Add(regs.FSTotalRxFrameCnt, 1)
	c.regs.Add(regs.FSTotalRx16ByteCnt, uint64((proto.TxMetaLen+sent+15)/16))
	c.regs.Set(regs.FPFrameTickFrom, uint64(m.From.Word()))
	c.regs.Set(regs.FPFrameTickTo, uint64(m.To.Word()))
	c.regs.Set(regs.FPFrameTickDelayFrom, uint64(m.DelayFrom.Word()))
	c.regs.Set(regs.FPFrameTickDelayTo, uint64(m.DelayTo.Word()))
	st := regs.FPAllocAddr.Put(0, (c.hostWr-1)&0xFF)
	st = regs.FPFailPolicy.Put(st, uint64(m.FailPolicy&1))
	st = regs.FPFrameLength.Put(st, uint64(m.FrameLength))
	c.regs.Set(regs.FPFrameStatus1, regs.FPTimestampID.Put(st, uint64(m.TimestampID)))
	c.regs.Add(regs.FSCHTotalNewEntryCnt, 1)
	c.wakeTransmitter()
	return nil
}
