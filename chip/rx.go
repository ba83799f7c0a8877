package chip

import (
	"encoding/binary"
	"time"

	"tsnsim/chip/proto"
	"tsnsim/chip/regs"
)

// ReceivePHY is the RX frame decoder: the cable calls it when the last
// byte of frame (incl. FCS) has arrived; sof is when the frame's first
// byte after the preamble arrived at the PHY. The frame is timestamped
// RxLatency after sof (the same stamp point as TX), checked (FCS, then
// length, then FIFO space) and either queued with its rx_metadata or
// dropped and counted. ReceivePHY does not retain frame unless it queues
// it, and then it owns it: callers must not reuse the buffer.
func (c *Chip) ReceivePHY(frame []byte, sof time.Time) {
	n := uint64(len(frame))
	at := sof
	if c.cfg.RxLatency != 0 {
		at = at.Add(c.cfg.RxLatency) // skipped at 0, as Add is not free (about 75 instructions; issue 13)
	}
	stamp := c.clock.At(at)

	c.mu.Lock()
	defer c.mu.Unlock()
	ctl := c.regs.Get(regs.TSNRxControl)
	c.regs.Add(regs.FDTotalRxFrameCnt, 1)
	c.regs.Add(regs.FDTotalRxByteCnt, n)
	c.regs.Set(regs.FDRxTstamp, stamp)

	status1 := regs.RxStatusFrameLength.Put(0, n)
	if len(frame) >= proto.FCSLen {
		status1 = regs.RxStatusChecksum.Put(status1, uint64(binary.BigEndian.Uint32(frame[len(frame)-proto.FCSLen:])))
	}
	if len(frame) >= 16 && binary.BigEndian.Uint16(frame[12:]) == 0x8100 {
		status1 = regs.RxStatusVLANTag.Put(status1, uint64(binary.BigEndian.Uint16(frame[14:])))
	}
	c.regs.Set(regs.FDRxFrameStatus1, status1)
	status2 := regs.RxFlagVLANOffload.Put(0, regs.RxVLANOffload.Get(ctl))
	status2 = regs.RxFlagFCSOffload.Put(status2, regs.RxFCSOffload.Get(ctl))

	maxLen := uint64(proto.MaxWireLen)
	if regs.RxJumboDrop.Set(ctl) {
		maxLen = min(maxLen, regs.RxMaxFrameLength.Get(ctl))
	}
	var dropFrames, dropBytes uint16
	switch {
	case !proto.FCSValid(frame):
		status2 = regs.RxFlagFCSError.Put(status2, 1)
		dropFrames, dropBytes = regs.FDFCSDropFrameCnt, regs.FDFCSDropByteCnt
	case n > maxLen:
		status2 = regs.RxFlagJumboError.Put(status2, 1)
		dropFrames, dropBytes = regs.FDJumboDropFrameCnt, regs.FDJumboDropByteCnt
	case !c.rxFrames.Fits(frame) || c.rxMeta.Len() >= c.rxMeta.Limit():
		status2 = regs.RxFlagFIFOFull.Put(status2, 1)
		dropFrames, dropBytes = regs.FDFIFOFullDropFrameCnt, regs.FDFIFOFullDropByteCnt
	}
	c.regs.Set(regs.FDRxFrameStatus2, status2)
	if dropFrames != 0 {
		c.regs.Add(dropFrames, 1)
		c.regs.Add(dropBytes, n)
		c.regs.Add(regs.FDTotalDropFrameCnt, 1)
		c.regs.Add(regs.FDTotalDropByteCnt, n)
		return
	}
	c.rxFrames.Push(frame)
	c.rxMeta.Push(proto.RxMetadata{Timestamp: stamp, FrameLength: uint16(n)})
	if c.rxMeta.Len() == 1 {
		c.raiseIRQ(sof, len(frame))
	}
}
