package chip_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
	"time"

	"tsnsim/chip"
	"tsnsim/chip/proto"
	"tsnsim/chip/regs"
)

// maxFuzzTransaction caps one transaction of FuzzTransact.
const maxFuzzTransaction = 2000

// fuzzSeq encodes transactions as FuzzTransact reads them: each is a
// 2-byte big-endian length followed by that many MOSI bytes.
func fuzzSeq(txs ...[]byte) []byte {
	var b []byte
	for _, tx := range txs {
		b = binary.BigEndian.AppendUint16(b, uint16(len(tx)))
		b = append(b, tx...)
	}
	return b
}

// FuzzTransact feeds arbitrary sequences of SPI transactions to a chip
// and checks that it never panics, that every rejection is a counted
// *ProtocolError with zero MISO (except the documented frame length
// mismatch), that FIFO occupancies stay within capacity and match
// TSN_RX_FIFO_STATUS, and that the chip is still usable afterwards.
func FuzzTransact(f *testing.F) {
	tx, err := proto.TxFrameWrite(proto.SendNow(64, 7), []byte{1, 2, 3})
	if err != nil {
		f.Fatal(err)
	}
	regRead := []byte{0x02, 0x32, 0x84, 0, 0, 0, 0, 0}
	regWrite := []byte{0x01, 0x42, 0xAC, 0xDE, 0xAD, 0xBE, 0xEF}
	metaRead := append([]byte{0x02, 0xF0, 0x00}, make([]byte, 11)...)
	frameRead := append([]byte{0x02, 0x10, 0x00}, make([]byte, 1+64)...)
	limits := []byte{0x01, 0x42, 0x9C, 0x00, 0x01, 0x00, 0x84} // 1 metadata entry, clear all counters, jumbo drop
	hostLimit := []byte{0x01, 0x42, 0xA4, 0x00, 0x0C, 0x00, 0x00}
	for _, s := range [][]byte{regRead, regWrite, metaRead, frameRead, tx, limits, hostLimit} {
		f.Add(fuzzSeq(s))
	}
	f.Add(fuzzSeq(regRead, regWrite, metaRead, frameRead, tx))
	f.Add(fuzzSeq(metaRead, frameRead, metaRead, frameRead, metaRead, frameRead))
	f.Add(fuzzSeq(tx, tx, tx, tx, tx, tx, tx, tx, tx, tx))
	f.Add(fuzzSeq(limits, hostLimit, tx, frameRead[:10]))

	f.Fuzz(func(t *testing.T, data []byte) {
		c := chip.New(chip.Config{HostFIFOFrames: 8, RxFrameFIFOWords: 64, RxMetaFIFOSize: 8})
		c.ReceivePHY(rxWire(64, 1), time.Now())
		c.ReceivePHY(rxWire(100, 2), time.Now())
		st0 := c.Stats()
		var nerr uint64
		for len(data) >= 2 {
			n := min(int(binary.BigEndian.Uint16(data)), maxFuzzTransaction, len(data)-2)
			mosi := data[2 : 2+n]
			data = data[2+n:]
			miso := bytes.Repeat([]byte{0xA5}, n)
			err := c.Transact(mosi, miso)
			if err != nil {
				nerr++
				var pe *chip.ProtocolError
				if !errors.As(err, &pe) {
					t.Fatalf("Transact(% x) error %v (%T), want *chip.ProtocolError", mosi[:min(n, 8)], err, err)
				}
				if pe.Kind != chip.ErrRxFrameLengthMismatch && !bytes.Equal(miso, make([]byte, n)) {
					t.Fatalf("rejected (%v) transaction returned non-zero MISO", err)
				}
			} else if mosi[0] == proto.CmdWrite && !bytes.Equal(miso, make([]byte, n)) {
				t.Fatalf("write transaction returned non-zero MISO % x", miso[:min(n, 16)])
			}
			if err == nil && n >= proto.ReadDataStart && !bytes.Equal(miso[:proto.ReadDataStart], make([]byte, proto.ReadDataStart)) {
				t.Fatalf("MISO bytes before the data are % x", miso[:proto.ReadDataStart])
			}
			st := c.Stats()
			for name, s := range map[string]struct{ used, cap int }{
				"host":  {st.HostFIFO.Used, st.HostFIFO.Capacity},
				"frame": {st.RxFrameFIFO.Used, st.RxFrameFIFO.Capacity},
				"meta":  {st.RxMetaFIFO.Used, st.RxMetaFIFO.Capacity},
			} {
				if s.used < 0 || s.used > s.cap {
					t.Fatalf("%s FIFO occupancy %d outside [0, %d]", name, s.used, s.cap)
				}
			}
			if st.RxMetaFIFO.Pushed != 2 || st.RxFrameFIFO.Pushed != 2 {
				// Only the PHY pushes into the RX FIFOs.
				t.Fatalf("SPI pushed into the RX FIFOs: %d frames, %d entries", st.RxFrameFIFO.Pushed, st.RxMetaFIFO.Pushed)
			}
			want := uint64(st.RxFrameFIFO.Used)<<16 | uint64(st.RxMetaFIFO.Used)
			if got := c.Register(regs.TSNRxFIFOStatus); got != want {
				t.Fatalf("TSN_RX_FIFO_STATUS = %#x, Stats say %#x", got, want)
			}
		}
		st := c.Stats()
		if got := st.ProtocolErrors - st0.ProtocolErrors; got != nerr {
			t.Fatalf("%d errors returned, ProtocolErrors grew by %d", nerr, got)
		}

		// Still usable: a RW register round-trips...
		wr(t, c, regs.PPSPulseAt+4, 0x12345678)
		if got := rd(t, c, regs.PPSPulseAt+4); got != 0x12345678 {
			t.Fatalf("PPS_PULSE_AT_L read back %#x", got)
		}
		// ...and a valid TX write is queued or counted as back-pressure.
		acc0 := c.Register(regs.FSTotalRxFrameCnt) + c.Register(regs.FSTotalBackPressureEventCnt)
		transact(t, c, tx)
		if acc := c.Register(regs.FSTotalRxFrameCnt) + c.Register(regs.FSTotalBackPressureEventCnt); acc != acc0+1 {
			t.Fatalf("valid TX write moved FS_TOTAL_RX_FRAME_CNT + BACK_PRESSURE by %d, want 1", acc-acc0)
		}
		if got := c.Stats().ProtocolErrors; got != st.ProtocolErrors {
			t.Fatalf("valid transactions counted as protocol errors")
		}
	})
}
