package chip_test

import (
	"testing"

	"tsnsim/chip"
	"tsnsim/chip/proto"
	"tsnsim/chip/regs"
)

// TestSetFIFOLimitsHostFull: a host cap of 0 refuses every TX write as
// back-pressure while queued frames stay; removing it restores the
// configured limit.
func TestSetFIFOLimitsHostFull(t *testing.T) {
	c := chip.New(chip.Config{HostFIFOFrames: 4})
	transact(t, c, txWrite(t, proto.SendNow(64, 7), 64, 0))
	c.SetFIFOLimits(0, chip.NoFIFOLimit, chip.NoFIFOLimit)
	for i := range 3 {
		transact(t, c, txWrite(t, proto.SendNow(64, 7), 64, byte(i)))
	}
	if got := c.Register(regs.FSTotalBackPressureEventCnt); got != 3 {
		t.Errorf("FS_TOTAL_BACK_PRESSURE_EVENT_CNT = %d, want 3", got)
	}
	if st := c.Stats().HostFIFO; st.Len != 1 || st.Drops != 3 || st.Limit != 0 {
		t.Errorf("host FIFO %+v, want 1 queued, 3 drops, limit 0", st)
	}
	if got := regs.TxHostFIFOFullLimit.Get(c.Register(regs.TSNTxControl)); got != 4 {
		t.Errorf("HOST_FIFO_FULL_LIMIT register = %d, want the configured 4", got)
	}
	c.SetFIFOLimits(chip.NoFIFOLimit, chip.NoFIFOLimit, chip.NoFIFOLimit)
	transact(t, c, txWrite(t, proto.SendNow(64, 7), 64, 9))
	if st := c.Stats().HostFIFO; st.Len != 2 || st.Limit != 4 || c.Register(regs.FSTotalRxFrameCnt) != 2 {
		t.Errorf("after restore: host FIFO %+v, FS_TOTAL_RX_FRAME_CNT %d, want 2 queued, limit 4",
			st, c.Register(regs.FSTotalRxFrameCnt))
	}
}

// TestSetFIFOLimitsRx: RX caps drop new frames as FIFO full while queued
// ones stay; a cap never raises a limit software lowered; a register
// write while capped keeps the cap.
func TestSetFIFOLimitsRx(t *testing.T) {
	c := chip.New(chip.Config{})
	for i := range 3 {
		c.ReceivePHY(rxWire(64, byte(i)), c.Clock().TimeOf(0))
	}
	c.SetFIFOLimits(chip.NoFIFOLimit, chip.NoFIFOLimit, 2)
	c.ReceivePHY(rxWire(64, 5), c.Clock().TimeOf(0))
	if got := c.Register(regs.FDFIFOFullDropFrameCnt); got != 1 {
		t.Errorf("FD_FIFO_FULL_DROP_FRAME_CNT = %d, want 1", got)
	}
	if st := c.Stats().RxMetaFIFO; st.Len != 3 || st.Limit != 2 {
		t.Errorf("RX meta FIFO %+v, want 3 queued over a limit of 2", st)
	}
	// Software lowers MAX_META_FIFO_DATA_COUNT to 1: the smaller wins.
	wr(t, c, regs.TSNRxControl+4, 1<<16)
	if got := c.Stats().RxMetaFIFO.Limit; got != 1 {
		t.Errorf("limit with register 1 and cap 2 = %d, want 1", got)
	}
	wr(t, c, regs.TSNRxControl+4, 256<<16)
	if got := c.Stats().RxMetaFIFO.Limit; got != 2 {
		t.Errorf("limit with register 256 and cap 2 = %d, want the cap", got)
	}
	c.SetFIFOLimits(chip.NoFIFOLimit, 4, chip.NoFIFOLimit) // 4 words: one 64-byte frame
	if st := c.Stats(); st.RxFrameFIFO.Limit != 4 || st.RxMetaFIFO.Limit != 256 {
		t.Errorf("limits %d words, %d entries, want 4 and 256", st.RxFrameFIFO.Limit, st.RxMetaFIFO.Limit)
	}
	c.ReceivePHY(rxWire(64, 6), c.Clock().TimeOf(0))
	if got := c.Register(regs.FDFIFOFullDropFrameCnt); got != 2 {
		t.Errorf("FD_FIFO_FULL_DROP_FRAME_CNT = %d, want 2", got)
	}
	c.SetFIFOLimits(chip.NoFIFOLimit, chip.NoFIFOLimit, chip.NoFIFOLimit)
	c.ReceivePHY(rxWire(64, 7), c.Clock().TimeOf(0))
	if st := c.Stats(); st.RxMetaFIFO.Len != 4 || st.RxFrameFIFO.Limit != chip.DefaultRxFrameFIFOWords {
		t.Errorf("after restore: %+v", st)
	}
}
