package driver_test

// Golden protocol tests: the real driver core talks to the real chip model
// over an unthrottled in-process bus wrapped in a spitest.Recorder, and
// the exact MOSI and MISO bytes of every transaction are compared with hex
// written out by hand from chip.md sections 2 and 3. The expected bytes
// deliberately do not come from the proto builders, so a mistake shared
// by the encoder (driver) and the decoder (chip) still shows up here.
//
// Everything runs inside a synctest bubble: time only moves when the test
// sleeps, so SYSCOUNT values and RX timestamps are exact.

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"tsnsim/chip"
	"tsnsim/chip/proto"
	"tsnsim/driver"
	"tsnsim/spibridge"
	"tsnsim/spibridge/spitest"
)

// hx parses space-separated hex ("02 32 84 ...", runs like "0000" allowed).
func hx(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		t.Fatalf("bad hex literal %q: %v", s, err)
	}
	return b
}

// zeros returns n zero bytes as a hex literal.
func zeros(n int) string { return strings.Repeat("00 ", n) }

type rig struct {
	chip *chip.Chip
	rec  *spitest.Recorder
	drv  *driver.Driver

	mu   sync.Mutex
	rcvd [][]byte
}

func (r *rig) received() [][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([][]byte(nil), r.rcvd...)
}

// newRig builds chip + unthrottled bus + recorder + driver inside the
// current synctest bubble, without opening the driver.
func newRig(t *testing.T) *rig {
	t.Helper()
	r := &rig{}
	r.chip = chip.New(chip.Config{Name: "golden"})
	bus := spibridge.NewInProcess(r.chip, spibridge.Timing{}, nil)
	r.rec = spitest.NewRecorder(bus)
	r.drv = driver.New(r.rec, driver.Config{Name: "eth1", Receive: func(f []byte) bool {
		r.mu.Lock()
		r.rcvd = append(r.rcvd, f)
		r.mu.Unlock()
		return true
	}})
	t.Cleanup(func() {
		if err := r.drv.Stop(context.Background()); err != nil {
			t.Errorf("Stop: %v", err)
		}
		r.rec.Close()
	})
	return r
}

// openRig returns an open rig whose worker is idle and whose recorder is
// empty.
func openRig(t *testing.T) *rig {
	t.Helper()
	r := newRig(t)
	if err := r.drv.Open(t.Context()); err != nil {
		t.Fatalf("Open: %v", err)
	}
	synctest.Wait()
	r.rec.Reset()
	return r
}

// wantTx is one expected transaction, as hex literals.
type wantTx struct{ mosi, miso string }

func checkRecords(t *testing.T, got []spitest.Record, want []wantTx) {
	t.Helper()
	if len(got) != len(want) {
		for i, g := range got {
			t.Logf("record %d: MOSI % x", i, g.MOSI)
		}
		t.Fatalf("%d transactions recorded, want %d", len(got), len(want))
	}
	for i, w := range want {
		g := got[i]
		if g.Err != nil {
			t.Errorf("transaction %d: error %v", i, g.Err)
		}
		if wm := hx(t, w.mosi); !bytes.Equal(g.MOSI, wm) {
			t.Errorf("transaction %d MOSI:\n got % x\nwant % x", i, g.MOSI, wm)
		}
		if wm := hx(t, w.miso); !bytes.Equal(g.MISO, wm) {
			t.Errorf("transaction %d MISO:\n got % x\nwant % x", i, g.MISO, wm)
		}
	}
}

// Register read: 02 3R RR + 5 don't-care; MISO bytes 4..7 = BE u32.
func TestGoldenRegisterRead(t *testing.T) {
	tests := []struct {
		name  string
		off   uint16
		sleep time.Duration
		val   uint32
		mosi  string
		miso  string
	}{
		{"TSN_MAC_ADDR_L", 0x0284, 0, 0x00000001, "02 32 84 00 00 00 00 00", "00 00 00 00 00 00 00 01"},
		{"TSN_MAC_ADDR_H", 0x0280, 0, 0x00000200, "02 32 80 00 00 00 00 00", "00 00 00 00 00 00 02 00"},
		{"TSN_SYSTEM_INFO_H", 0x0278, 0, 0x1A0B1501, "02 32 78 00 00 00 00 00", "00 00 00 00 1A 0B 15 01"},
		{"TSN_TX_CONTROL_L", 0x02A4, 0, 0x000C0080, "02 32 A4 00 00 00 00 00", "00 00 00 00 00 0C 00 80"},
		{"PPS_CYCLE_1S_L", 0x02B4, 0, 125_000_000, "02 32 B4 00 00 00 00 00", "00 00 00 00 07 73 59 40"},
		{"FS_GENERAL_STATUS_L", 0x00B4, 0, 0x0000000A, "02 30 B4 00 00 00 00 00", "00 00 00 00 00 00 00 0A"},
		// 1 ms at 8 ns per tick = 125000 = 0x1E848.
		{"TSN_SYSCOUNT_L after 1ms", 0x028C, time.Millisecond, 0x0001E848, "02 32 8C 00 00 00 00 00", "00 00 00 00 00 01 E8 48"},
		{"TSN_SYSCOUNT_H", 0x0288, time.Millisecond, 0, "02 32 88 00 00 00 00 00", "00 00 00 00 00 00 00 00"},
		{"unmapped 0x0700", 0x0700, 0, 0, "02 37 00 00 00 00 00 00", "00 00 00 00 00 00 00 00"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				r := openRig(t)
				time.Sleep(tt.sleep)
				v, err := r.drv.ReadRegister(t.Context(), tt.off)
				if err != nil {
					t.Fatalf("ReadRegister: %v", err)
				}
				if v != tt.val {
					t.Errorf("ReadRegister(%#04x) = %#08x, want %#08x", tt.off, v, tt.val)
				}
				checkRecords(t, r.rec.Records(), []wantTx{{tt.mosi, tt.miso}})
			})
		})
	}
}

// Register write: 01 4R RR v3 v2 v1 v0, MISO ignored (zero from the model).
func TestGoldenRegisterWrite(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t)
		// One TX write reached the chip before Open (FS_TOTAL_RX_FRAME_CNT
		// = 1), bypassing the driver.
		pre, err := proto.TxFrameWrite(proto.SendNow(64, 7), make([]byte, 60))
		if err != nil {
			t.Fatal(err)
		}
		if err := r.chip.Transact(pre, make([]byte, len(pre))); err != nil {
			t.Fatal(err)
		}
		// Open writes TSN_SYSTEM_CONTROL_L = 1, reads the TX counter
		// baseline (FS_TOTAL_RX_FRAME_CNT_L, FS_TOTAL_BACK_PRESSURE_EVENT_CNT_L,
		// twice) and the RX one (FD_TOTAL_RX_FRAME_CNT_L,
		// FD_TOTAL_DROP_FRAME_CNT_L, TSN_RX_FIFO_STATUS_L, twice), then the
		// worker drains RX once (an empty metadata entry).
		if err := r.drv.Open(t.Context()); err != nil {
			t.Fatalf("Open: %v", err)
		}
		synctest.Wait()
		txBase := []wantTx{
			{"02 30 BC 00 00 00 00 00", "00 00 00 00 00 00 00 01"},
			{"02 30 CC 00 00 00 00 00", zeros(8)},
		}
		rxBase := []wantTx{
			{"02 30 1C 00 00 00 00 00", zeros(8)},
			{"02 30 2C 00 00 00 00 00", zeros(8)},
			{"02 30 AC 00 00 00 00 00", zeros(8)},
		}
		want := []wantTx{{"01 42 94 00 00 00 01", zeros(7)}}
		want = append(append(append(append(want, txBase...), txBase...), rxBase...), rxBase...)
		checkRecords(t, r.rec.Records(), append(want, wantTx{"02 F0 00" + zeros(11), zeros(14)}))
		if got := r.chip.Register(0x0290); got != 1 {
			t.Errorf("TSN_SYSTEM_CONTROL after Open = %#x, want 1", got)
		}

		r.rec.Reset()
		if err := r.drv.WriteRegister(t.Context(), 0x02AC, 0xDEADBEEF); err != nil {
			t.Fatalf("WriteRegister: %v", err)
		}
		checkRecords(t, r.rec.Records(), []wantTx{{"01 42 AC DE AD BE EF", zeros(7)}})
		if got := r.chip.Register(0x02A8); got != 0xDEADBEEF {
			t.Errorf("PPS_PULSE_AT after write = %#x, want 0xdeadbeef", got)
		}

		r.rec.Reset()
		if err := r.drv.Stop(t.Context()); err != nil {
			t.Fatalf("Stop: %v", err)
		}
		// Stop settles the RX ledger against a stable snapshot, reads
		// the chip's drop counters (three times, until three passes
		// agree), then clears TSN_SYSTEM_CONTROL.
		chipDrops := []wantTx{
			{"02 30 5C 00 00 00 00 00", zeros(8)},
			{"02 30 3C 00 00 00 00 00", zeros(8)},
			{"02 30 4C 00 00 00 00 00", zeros(8)},
			{"02 30 CC 00 00 00 00 00", zeros(8)},
			{"02 30 1C 00 00 00 00 00", zeros(8)},
		}
		stop := append(append(append(append(append([]wantTx(nil), rxBase...), rxBase...), chipDrops...), chipDrops...), chipDrops...)
		checkRecords(t, r.rec.Records(), append(stop, wantTx{"01 42 94 00 00 00 00", zeros(7)}))
		if got := r.chip.Register(0x0290); got != 0 {
			t.Errorf("TSN_SYSTEM_CONTROL after Stop = %#x, want 0", got)
		}
	})
}

// goldenRxFrame is a 60-byte broadcast frame from 02:00:00:00:00:02,
// EtherType 0x88B5, payload 00..2d.
const goldenRxFrame = "ff ff ff ff ff ff 02 00 00 00 00 02 88 b5" +
	"00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f" +
	"10 11 12 13 14 15 16 17 18 19 1a 1b 1c 1d 1e 1f" +
	"20 21 22 23 24 25 26 27 28 29 2a 2b 2c 2d"

// goldenRxFCS is the IEEE CRC-32 of goldenRxFrame (0xb2155d9e), least
// significant byte first.
const goldenRxFCS = "9e 5d 15 b2"

// rxExchange delivers goldenRxFrame to the chip's PHY 1 ms after reset and
// returns the transactions the driver made to fetch it.
func rxExchange(t *testing.T) (*rig, []spitest.Record) {
	t.Helper()
	r := openRig(t)
	wire := hx(t, goldenRxFrame+goldenRxFCS)
	if !bytes.Equal(wire, proto.AppendFCS(hx(t, goldenRxFrame))) {
		t.Fatalf("hand-written FCS %s disagrees with proto.AppendFCS", goldenRxFCS)
	}
	time.Sleep(time.Millisecond)
	sof := time.Now()
	// Stamp = SYSCOUNT at sof + RX latency (512 ns): (1 ms + 512 ns) / 8 ns
	// = 125064 = 0x1E888.
	if got := r.chip.Clock().At(sof.Add(512 * time.Nanosecond)); got != 0x1E888 {
		t.Fatalf("clock at stamp point = %#x, want 0x1e888", got)
	}
	r.chip.ReceivePHY(wire, sof)
	synctest.Wait()
	recs := r.rec.Records()
	if len(recs) != 3 {
		for i, g := range recs {
			t.Logf("record %d: MOSI % x", i, g.MOSI)
		}
		t.Fatalf("%d transactions for one RX frame, want 3 (meta, frame, empty meta)", len(recs))
	}
	got := r.received()
	if len(got) != 1 || !bytes.Equal(got[0], hx(t, goldenRxFrame)) {
		t.Errorf("driver delivered %d frames (% x), want the frame without FCS", len(got), got)
	}
	return r, recs
}

// RX metadata read: 02 F0 00 + 11 don't-care; MISO 4..13 = BE u64
// timestamp, BE u16 length incl. FCS. A second read returns all zeros.
func TestGoldenRxMetadataRead(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		_, recs := rxExchange(t)
		checkRecords(t, []spitest.Record{recs[0], recs[2]}, []wantTx{
			{"02 F0 00" + zeros(11), "00 00 00 00" + "00 00 00 00 00 01 E8 88" + "00 40"},
			{"02 F0 00" + zeros(11), zeros(14)},
		})
	})
}

// RX frame read: 02 10 00 + (1 + L) don't-care; MISO 4.. = frame incl.
// FCS.
func TestGoldenRxFrameRead(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r, recs := rxExchange(t)
		checkRecords(t, recs[1:2], []wantTx{
			{"02 10 00" + zeros(1+64), "00 00 00 00" + goldenRxFrame + goldenRxFCS},
		})
		st := r.chip.Stats()
		if st.RxFrameFIFO.Len != 0 || st.RxMetaFIFO.Len != 0 {
			t.Errorf("RX FIFOs not drained: frames %d, meta %d", st.RxFrameFIFO.Len, st.RxMetaFIFO.Len)
		}
		if s := r.drv.Stats(); s.RxPackets != 1 || s.RxBytes != 60 || s.RxErrors != 0 {
			t.Errorf("driver stats %+v, want 1 packet of 60 bytes, no errors", s)
		}
	})
}

// TX frame write: 01 20 00 + tx_metadata (32) + frame padded to 60 + FCS
// (LSB first). The driver uses simple mode with best-effort priority 7:
// from = tick 0 | 7, to = 0x1FFFFFFF<<3 | 7.
func TestGoldenTxFrameWrite(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := openRig(t)
		frame := hx(t, "02 00 00 00 00 02 02 00 00 00 00 01 88 b5"+
			"a0 a1 a2 a3 a4 a5 a6 a7 a8 a9 aa ab ac ad ae af"+
			"b0 b1 b2 b3 b4 b5 b6 b7 b8 b9 ba bb") // 42 bytes
		if err := r.drv.Transmit(frame); err != nil {
			t.Fatalf("Transmit: %v", err)
		}
		synctest.Wait()
		mosi := "01 20 00" +
			"00 00 00 07" + "ff ff ff ff" + "00 00 00 07" + "ff ff ff ff" + // from, to, delay_from, delay_to
			"00 40" + "00 00" + "00" + "00 00 00" + "00 00 00 00 00 00 00 00" + // frame_length 64, ts id, policy, reserved
			"02 00 00 00 00 02 02 00 00 00 00 01 88 b5" +
			"a0 a1 a2 a3 a4 a5 a6 a7 a8 a9 aa ab ac ad ae af" +
			"b0 b1 b2 b3 b4 b5 b6 b7 b8 b9 ba bb" + zeros(18) + // padding to 60
			"10 9b 6d ec" // CRC-32 0xec6d9b10, LSB first
		checkRecords(t, r.rec.Records(), []wantTx{{mosi, zeros(3 + 32 + 64)}})

		st := r.chip.Stats()
		if st.HostFIFO.Len != 1 || st.ProtocolErrors != 0 {
			t.Errorf("chip host FIFO %d frames, %d protocol errors; want 1, 0", st.HostFIFO.Len, st.ProtocolErrors)
		}
		for _, c := range []struct {
			name string
			off  uint16
			want uint64
		}{
			{"FP_FRAME_TICK_FROM", 0x00E0, 0x00000007},
			{"FP_FRAME_TICK_TO", 0x00E8, 0xFFFFFFFF},
			{"FP_FRAME_TICK_DELAY_FROM", 0x00F0, 0x00000007},
			{"FP_FRAME_TICK_DELAY_TO", 0x00F8, 0xFFFFFFFF},
			{"FP_FRAME_STATUS1", 0x0100, 0x0000_0000_0040_0000},
		} {
			if got := r.chip.Register(c.off); got != c.want {
				t.Errorf("%s = %#x, want %#x", c.name, got, c.want)
			}
		}
		if s := r.drv.Stats(); s.TxPackets != 1 || s.TxBytes != 42 {
			t.Errorf("driver stats TxPackets %d TxBytes %d, want 1, 42", s.TxPackets, s.TxBytes)
		}
	})
}

// The tick_count examples of chip.md section 3 (verified against GCC's
// big-endian bit-field layout).
func TestTickCountWireLayout(t *testing.T) {
	m := proto.TxMetadata{
		From:        proto.TickCount{Tick: 0x1ABCDEF, Priority: 5},
		To:          proto.TickCount{Tick: 0x1FFFFFFF, Priority: 0},
		DelayFrom:   proto.TickCount{Tick: 0, Priority: 3},
		DelayTo:     proto.TickCount{Tick: 1, Priority: 7},
		FrameLength: 0x05DC,
		TimestampID: 1,
		FailPolicy:  1,
	}
	b := bytes.Repeat([]byte{0xAA}, proto.TxMetaLen) // reserved bytes must be cleared
	m.Put(b)
	want := hx(t, "0d 5e 6f 7d"+"ff ff ff f8"+"00 00 00 03"+"00 00 00 0f"+
		"05 dc"+"00 01"+"01"+"00 00 00"+"00 00 00 00 00 00 00 00")
	if !bytes.Equal(b, want) {
		t.Errorf("tx_metadata:\n got % x\nwant % x", b, want)
	}
	if got := proto.ParseTxMetadata(b); got != m {
		t.Errorf("ParseTxMetadata round trip = %+v, want %+v", got, m)
	}
}

// TestFakeReadRegister: the driver takes a register value from MISO
// bytes 4..7 only, and reports a failed transfer as an error.
func TestFakeReadRegister(t *testing.T) {
	fake := spitest.NewFake(hx(t, "ff ff ff ff 12 34 56 78"))
	d := driver.New(fake, driver.Config{})
	v, err := d.ReadRegister(t.Context(), 0x02B4)
	if err != nil || v != 0x12345678 {
		t.Fatalf("ReadRegister = %#x, %v; want 0x12345678", v, err)
	}
	if _, err := d.ReadRegister(t.Context(), 0x02B4); !errors.Is(err, spitest.ErrNoReply) {
		t.Errorf("ReadRegister without a reply: %v, want ErrNoReply", err)
	}
	recs := fake.Records()
	if len(recs) != 2 || !bytes.Equal(recs[0].MOSI, hx(t, "02 32 b4 00 00 00 00 00")) || recs[1].Err == nil {
		t.Errorf("records %+v", recs)
	}
}

// TestFakeRxBadFCS: a frame whose FCS is wrong after the SPI read is
// counted as a CRC error and not delivered; the driver still reads the
// frame so the chip's FIFOs stay in step, checks them (RX snapshot: both
// empty, the one accepted frame is accounted), then sees the FIFO empty.
func TestFakeRxBadFCS(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		bad := hx(t, "00 00 00 00"+goldenRxFrame+"9e 5d 15 b3")
		reg := func(v string) []byte { return hx(t, "00 00 00 00"+v) }
		fake := spitest.NewFake(make([]byte, 7)) // Open's register write
		for range 10 {
			fake.Push(make([]byte, 8)) // Open's baselines: counters 0, FIFOs empty
		}
		fake.Push(
			hx(t, "00 00 00 00 00 00 00 00 00 00 00 2a 00 40"), // one 64-byte frame
			bad,
		)
		for range 2 { // resynchronisation: 1 frame accepted, FIFOs empty
			fake.Push(reg("00 00 00 01"), reg("00 00 00 00"), reg("00 00 00 00"))
		}
		fake.Push(make([]byte, 14)) // FIFO empty
		var delivered int
		d := driver.New(fake, driver.Config{Receive: func([]byte) bool { delivered++; return true }})
		if err := d.Open(t.Context()); err != nil {
			t.Fatalf("Open: %v", err)
		}
		synctest.Wait()
		recs := fake.Records()
		if len(recs) != 20 {
			t.Fatalf("%d transactions, want 20", len(recs))
		}
		if !bytes.Equal(recs[12].MOSI, hx(t, "02 10 00"+zeros(65))) {
			t.Errorf("frame read MOSI % x", recs[12].MOSI)
		}
		for i, off := range []string{"1c", "2c", "ac", "1c", "2c", "ac"} {
			if m := recs[13+i].MOSI; !bytes.Equal(m, hx(t, "02 30"+off+zeros(5))) {
				t.Errorf("resync read %d MOSI % x", i, m)
			}
		}
		s := d.Stats()
		if delivered != 0 || s.RxCRCErrors != 1 || s.RxErrors != 1 || s.RxPackets != 0 {
			t.Errorf("delivered %d, stats %+v; want one CRC error", delivered, s)
		}
		for range 2 { // Stop's RX snapshot: 1 frame accepted, FIFOs empty
			fake.Push(reg("00 00 00 01"), reg("00 00 00 00"), reg("00 00 00 00"))
		}
		for range 3 { // Stop's read of the chip's drop counters (zero) and FD_TOTAL_RX_FRAME_CNT
			fake.Push(reg("00 00 00 00"), reg("00 00 00 00"), reg("00 00 00 00"), reg("00 00 00 00"), reg("00 00 00 01"))
		}
		fake.Push(make([]byte, 7)) // Stop's register write
		if err := d.Stop(t.Context()); err != nil {
			t.Fatalf("Stop: %v", err)
		}
	})
}
