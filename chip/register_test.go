package chip_test

import (
	"bytes"
	"encoding/binary"
	"net"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"tsnsim/chip"
	"tsnsim/chip/proto"
	"tsnsim/chip/regs"
)

// TestRegisterResetValues reads both halves of every register in
// regs.Map over SPI right after reset (SYSCOUNT is 0: no virtual time has
// passed) and compares with values written out from chip.md and the
// [model] defaults.
func TestRegisterResetValues(t *testing.T) {
	for _, tt := range []struct {
		name string
		cfg  chip.Config
		want map[uint16]uint64 // registers not listed reset to 0
	}{
		{"default", chip.Config{}, map[uint16]uint64{
			regs.TSNSystemInfo:   0x1A0B_1501_0000_0000, // 2026-11-21, commit 1
			regs.TSNMACAddr:      0x0000_0200_0000_0001,
			regs.TSNRxControl:    0x0618_1000_0100_0004, // 1560, 4096 words, 256 entries, jumbo drop
			regs.TSNTxControl:    0x0000_0000_000C_0080, // IFG 12, host FIFO 128
			regs.PPSCycle1S:      125_000_000,
			regs.FSGeneralStatus: 0x0000_0000_0000_000A, // tready, empty
		}},
		{"custom", chip.Config{
			MAC:  net.HardwareAddr{0x02, 0x11, 0x22, 0x33, 0x44, 0x55},
			Info: chip.BuildInfo{Year: 25, Month: 3, Day: 9, Commit: 0xAB},
			// Capacities above the register fields' range are clamped.
			HostFIFOFrames: 5000, RxFrameFIFOWords: 100, RxMetaFIFOSize: 1000,
		}, map[uint16]uint64{
			regs.TSNSystemInfo:   0x1903_09AB_0000_0000,
			regs.TSNMACAddr:      0x0000_0211_2233_4455,
			regs.TSNRxControl:    0x0618_0064_01FF_0004, // 100 words, 511 entries
			regs.TSNTxControl:    0x0000_0000_000C_03FF, // 1023 frames
			regs.PPSCycle1S:      125_000_000,
			regs.FSGeneralStatus: 0x0000_0000_0000_000A,
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				c := chip.New(tt.cfg)
				for off := range tt.want {
					if _, ok := regs.Lookup(off); !ok {
						t.Errorf("expected value for undeclared register %#04x", off)
					}
				}
				for _, d := range regs.Map {
					want := tt.want[d.Offset]
					hi, lo := rd(t, c, d.Offset), rd(t, c, d.Offset+4)
					if hi != uint32(want>>32) || lo != uint32(want) {
						t.Errorf("%s (%#04x) = %08x_%08x, want %08x_%08x", d.Name, d.Offset, hi, lo, uint32(want>>32), uint32(want))
					}
				}
				if got := c.MAC().String(); got != net.HardwareAddr(binary.BigEndian.AppendUint64(nil, tt.want[regs.TSNMACAddr])[2:]).String() {
					t.Errorf("MAC() = %s", got)
				}
			})
		})
	}
}

// TestReadOnlyRegistersIgnoreWrites writes all ones to both halves of
// every read-only, counter and live register over SPI: nothing changes
// and each write is counted in Stats().ReadOnlyWrites.
func TestReadOnlyRegistersIgnoreWrites(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := chip.New(chip.Config{})
		c.ReceivePHY(rxWire(64, 0), time.Now())                 // some non-zero RX state
		transact(t, c, txWrite(t, proto.SendNow(64, 7), 64, 0)) // and TX state
		before := snapshot(c)
		var n uint64
		for _, d := range regs.Map {
			if d.Access == regs.ReadWrite {
				continue
			}
			wr(t, c, d.Offset, 0xFFFFFFFF)
			wr(t, c, d.Offset+4, 0xFFFFFFFF)
			n += 2
		}
		diffRegs(t, before, snapshot(c))
		if got := rd64(t, c, regs.TSNSysCount); got != 0 {
			t.Errorf("TSN_SYSCOUNT = %d after writes, want 0 (no time passed)", got)
		}
		st := c.Stats()
		if st.ReadOnlyWrites != n || st.UnmappedWrites != 0 || st.ProtocolErrors != 0 {
			t.Errorf("ReadOnlyWrites %d, UnmappedWrites %d, ProtocolErrors %d; want %d, 0, 0",
				st.ReadOnlyWrites, st.UnmappedWrites, st.ProtocolErrors, n)
		}
	})
}

// TestReadWriteRegistersStoreFieldBits writes all ones then zeros to each
// RW register over SPI and reads back only the declared field bits;
// writes to TSN_RX_CONTROL and TSN_TX_CONTROL move the FIFO limits.
func TestReadWriteRegistersStoreFieldBits(t *testing.T) {
	c := chip.New(chip.Config{})
	want := map[uint16]uint64{
		regs.TSNMACAddr:       0x0000_FFFF_FFFF_FFFF,
		regs.TSNSystemControl: 0x0000_0000_0000_0001,
		regs.TSNRxControl:     0xFFFF_1FFF_01FF_000F, // clear bits 7..4 read 0
		regs.TSNTxControl:     0x0000_0000_FFFF_03FF,
		regs.PPSPulseAt:       0xFFFF_FFFF_FFFF_FFFF,
		regs.PPSCycle1S:       0xFFFF_FFFF_FFFF_FFFF,
	}
	for _, d := range regs.Map {
		if d.Access != regs.ReadWrite {
			continue
		}
		w, ok := want[d.Offset]
		if !ok {
			t.Errorf("RW register %s has no expectation", d.Name)
			continue
		}
		wr(t, c, d.Offset, 0xFFFFFFFF)
		wr(t, c, d.Offset+4, 0xFFFFFFFF)
		if got := rd64(t, c, d.Offset); got != w {
			t.Errorf("%s after all ones = %#016x, want %#016x", d.Name, got, w)
		}
		if got := c.Register(d.Offset); got != w {
			t.Errorf("%s Register() = %#016x, want %#016x", d.Name, got, w)
		}
	}
	// FIFO limits follow the fields, clamped to the hard capacities.
	st := c.Stats()
	if st.RxFrameFIFO.Limit != chip.DefaultRxFrameFIFOWords || st.RxMetaFIFO.Limit != chip.DefaultRxMetaFIFOSize ||
		st.HostFIFO.Limit != chip.DefaultHostFIFOFrames {
		t.Errorf("limits after all ones: frame %d meta %d host %d; want capacities",
			st.RxFrameFIFO.Limit, st.RxMetaFIFO.Limit, st.HostFIFO.Limit)
	}
	wr(t, c, regs.TSNRxControl, 0x05DC_0020)   // 1500, 32 words
	wr(t, c, regs.TSNRxControl+4, 0x0003_0004) // 3 entries, jumbo drop
	wr(t, c, regs.TSNTxControl+4, 0x000C_0007) // 7 frames
	if got := rd64(t, c, regs.TSNRxControl); got != 0x05DC_0020_0003_0004 {
		t.Errorf("TSN_RX_CONTROL = %#x", got)
	}
	st = c.Stats()
	if st.RxFrameFIFO.Limit != 32 || st.RxMetaFIFO.Limit != 3 || st.HostFIFO.Limit != 7 {
		t.Errorf("limits: frame %d meta %d host %d; want 32, 3, 7", st.RxFrameFIFO.Limit, st.RxMetaFIFO.Limit, st.HostFIFO.Limit)
	}
	for _, d := range regs.Map {
		if d.Access == regs.ReadWrite {
			wr(t, c, d.Offset, 0)
			wr(t, c, d.Offset+4, 0)
			if got := rd64(t, c, d.Offset); got != 0 {
				t.Errorf("%s after zeros = %#x", d.Name, got)
			}
		}
	}
	if s := c.Stats(); s.ReadOnlyWrites != 0 || s.UnmappedWrites != 0 {
		t.Errorf("RW writes counted as ignored: %d RO, %d unmapped", s.ReadOnlyWrites, s.UnmappedWrites)
	}
}

// TestUnmappedOffsets: addresses that are not a half of a declared
// register read 0; writes are ignored and counted as unmapped.
func TestUnmappedOffsets(t *testing.T) {
	c := chip.New(chip.Config{})
	before := snapshot(c)
	addrs := []uint16{0x0700, 0x0003, 0x02B8, 0x02BC, 0x0068, 0x0282, 0x0FFC, 0x0140}
	for _, a := range addrs {
		wr(t, c, a, 0xFFFFFFFF)
		if got := rd(t, c, a); got != 0 {
			t.Errorf("unmapped %#04x reads %#x", a, got)
		}
	}
	diffRegs(t, before, snapshot(c))
	if st := c.Stats(); st.UnmappedWrites != uint64(len(addrs)) || st.ReadOnlyWrites != 0 || st.ProtocolErrors != 0 {
		t.Errorf("UnmappedWrites %d, ReadOnlyWrites %d, ProtocolErrors %d; want %d, 0, 0",
			st.UnmappedWrites, st.ReadOnlyWrites, st.ProtocolErrors, len(addrs))
	}
}

// rxTraffic is the known RX traffic of the counter tests.
type rxTraffic struct {
	queued  [][]byte // frames that made it into the FIFOs, in order
	last    []byte   // last frame fed
	stamp   uint64   // RX timestamp of every frame
	lastLen int
}

// feedRx configures MAX_FRAME_LENGTH 1000 and a 4-entry metadata FIFO over
// SPI, then feeds, 1 ms after reset: 5 good frames (64, 65, 200, 999,
// 1000 bytes; the fifth overflows the metadata FIFO), 3 with a bad FCS
// (64, 80, 1200) and 2 jumbo frames (1001, 1560).
func feedRx(t *testing.T, c *chip.Chip) rxTraffic {
	t.Helper()
	wr(t, c, regs.TSNRxControl, 0x03E8_1000)   // MAX_FRAME_LENGTH 1000, 4096 words
	wr(t, c, regs.TSNRxControl+4, 0x0004_0004) // 4 metadata entries, jumbo drop
	time.Sleep(time.Millisecond)
	sof := time.Now()
	var tr rxTraffic
	tr.stamp = 125_064 // (1 ms + 512 ns RX latency) / 8 ns
	feed := func(f []byte) {
		tr.last = bytes.Clone(f)
		c.ReceivePHY(f, sof)
	}
	for i, n := range []int{64, 65, 200, 999, 1000} {
		f := rxWire(n, byte(i))
		if i < 4 {
			tr.queued = append(tr.queued, bytes.Clone(f))
		}
		feed(f)
	}
	for i, n := range []int{64, 80, 1200} {
		feed(badFCS(n, byte(10+i)))
	}
	for i, n := range []int{1001, 1560} {
		feed(rxWire(n, byte(20+i)))
	}
	return tr
}

// rxCounters are the FD_ counters after feedRx.
var rxCounters = map[uint16]uint64{
	regs.FDTotalRxFrameCnt:      10,
	regs.FDTotalRxByteCnt:       6233,
	regs.FDTotalDropFrameCnt:    6,
	regs.FDTotalDropByteCnt:     4905,
	regs.FDFCSDropFrameCnt:      3,
	regs.FDFCSDropByteCnt:       1344,
	regs.FDJumboDropFrameCnt:    2,
	regs.FDJumboDropByteCnt:     2561,
	regs.FDFIFOFullDropFrameCnt: 1,
	regs.FDFIFOFullDropByteCnt:  1000,
}

// TestRxCountersAfterTraffic checks every FD_ register, the RX FIFO
// occupancies and the interrupt line after known traffic, then drains
// the FIFOs over SPI.
func TestRxCountersAfterTraffic(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := chip.New(chip.Config{})
		tr := feedRx(t, c)
		for off, want := range rxCounters {
			if got := rd64(t, c, off); got != want {
				d, _ := regs.Lookup(off)
				t.Errorf("%s = %d, want %d", d.Name, got, want)
			}
		}
		if got := rd64(t, c, regs.FDRxTstamp); got != tr.stamp {
			t.Errorf("FD_RX_TSTAMP = %d, want %d", got, tr.stamp)
		}
		// Last frame: 1560-byte jumbo drop; its received FCS, no VLAN.
		st1 := uint64(binary.BigEndian.Uint32(tr.last[1556:]))<<32 | 1560
		if got := rd64(t, c, regs.FDRxFrameStatus1); got != st1 {
			t.Errorf("FD_RX_FRAME_STATUS1 = %#x, want %#x", got, st1)
		}
		if got := rd64(t, c, regs.FDRxFrameStatus2); got != 0x2 {
			t.Errorf("FD_RX_FRAME_STATUS2 = %#x, want 0x2 (jumbo error)", got)
		}
		// 4 + 5 + 13 + 63 = 85 words, 4 entries.
		if got := rd64(t, c, regs.TSNRxFIFOStatus); got != 0x0055_0004 {
			t.Errorf("TSN_RX_FIFO_STATUS = %#x, want 0x00550004", got)
		}
		st := c.Stats()
		if st.RxFrameFIFO.Used != 85 || st.RxMetaFIFO.Len != 4 || st.RxFrameFIFO.Len != 4 {
			t.Errorf("Stats RX FIFOs: frame %+v meta %+v", st.RxFrameFIFO, st.RxMetaFIFO)
		}
		if !c.IRQAsserted() {
			t.Error("IRQ not asserted with frames queued")
		}
		select {
		case <-c.IRQ():
		default:
			t.Error("no falling edge on IRQ()")
		}

		// Drain as the driver does.
		for i, f := range tr.queued {
			miso := transact(t, c, append([]byte{0x02, 0xF0, 0x00}, make([]byte, 11)...))
			want := binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint64(make([]byte, 4), tr.stamp), uint16(len(f)))
			if !bytes.Equal(miso, want) {
				t.Errorf("meta %d: % x, want % x", i, miso, want)
			}
			miso = transact(t, c, append([]byte{0x02, 0x10, 0x00}, make([]byte, 1+len(f))...))
			if !bytes.Equal(miso[4:], f) || !bytes.Equal(miso[:4], []byte{0, 0, 0, 0}) {
				t.Errorf("frame %d: wrong bytes", i)
			}
		}
		if miso := transact(t, c, append([]byte{0x02, 0xF0, 0x00}, make([]byte, 11)...)); !bytes.Equal(miso, make([]byte, 14)) {
			t.Errorf("metadata after drain % x, want zeros", miso)
		}
		if got := rd64(t, c, regs.TSNRxFIFOStatus); got != 0 {
			t.Errorf("TSN_RX_FIFO_STATUS after drain = %#x", got)
		}
		if c.IRQAsserted() {
			t.Error("IRQ asserted after drain")
		}
	})
}

// TestRxFrameFIFOWordLimit: the frame FIFO counts 16-byte words and
// drops a frame that does not fit in MAX_FRAME_FIFO_DATA_COUNT.
func TestRxFrameFIFOWordLimit(t *testing.T) {
	c := chip.New(chip.Config{})
	wr(t, c, regs.TSNRxControl, 0x0618_000A) // 10 words
	for _, n := range []int{64, 100, 96} {   // 4 words, 7 (does not fit), 6
		c.ReceivePHY(rxWire(n, byte(n)), time.Now())
	}
	if got := rd(t, c, regs.TSNRxFIFOStatus+4); got != 0x000A_0002 {
		t.Errorf("TSN_RX_FIFO_STATUS_L = %#x, want 0x000a0002", got)
	}
	if got := c.Register(regs.FDFIFOFullDropFrameCnt); got != 1 {
		t.Errorf("FD_FIFO_FULL_DROP_FRAME_CNT = %d, want 1", got)
	}
	if got := c.Register(regs.FDFIFOFullDropByteCnt); got != 100 {
		t.Errorf("FD_FIFO_FULL_DROP_BYTE_CNT = %d, want 100", got)
	}
	if got := c.Register(regs.FDRxFrameStatus2); got != 0 {
		t.Errorf("FD_RX_FRAME_STATUS2 = %#x after a good last frame", got)
	}
	// The 100-byte drop set the FIFO-full flag at the time.
	c.ReceivePHY(rxWire(64, 1), time.Now())
	if got := c.Register(regs.FDRxFrameStatus2); got != 0x1 {
		t.Errorf("FD_RX_FRAME_STATUS2 = %#x, want 0x1 (FIFO full)", got)
	}
}

// TestRxStatusOffloadAndVLAN: offload settings are reported in
// FD_RX_FRAME_STATUS2 and a VLAN tag in FD_RX_FRAME_STATUS1.
func TestRxStatusOffloadAndVLAN(t *testing.T) {
	c := chip.New(chip.Config{})
	wr(t, c, regs.TSNRxControl+4, 0x0100_0007) // 256 entries, jumbo drop, FCS + VLAN offload
	f := make([]byte, 60)
	copy(f[12:], []byte{0x81, 0x00, 0xA0, 0x05})
	w := proto.AppendFCS(f)
	c.ReceivePHY(bytes.Clone(w), time.Now())
	want1 := uint64(binary.BigEndian.Uint32(w[60:]))<<32 | 0xA005<<16 | 64
	if got := rd64(t, c, regs.FDRxFrameStatus1); got != want1 {
		t.Errorf("FD_RX_FRAME_STATUS1 = %#x, want %#x", got, want1)
	}
	if got := rd64(t, c, regs.FDRxFrameStatus2); got != 0x18 {
		t.Errorf("FD_RX_FRAME_STATUS2 = %#x, want 0x18", got)
	}
	c.ReceivePHY(badFCS(64, 0), time.Now())
	if got := rd64(t, c, regs.FDRxFrameStatus2); got != 0x1C {
		t.Errorf("FD_RX_FRAME_STATUS2 after bad FCS = %#x, want 0x1c", got)
	}
}

// TestRxControlClearBits: each clear bit (7..4) of TSN_RX_CONTROL_L zeroes
// exactly the counters regs.Map lists for it, leaves the others and the
// register's stored bits alone, and reads back 0.
func TestRxControlClearBits(t *testing.T) {
	def, _ := regs.Lookup(regs.TSNRxControl)
	if len(def.Actions) != 4 {
		t.Fatalf("TSN_RX_CONTROL declares %d actions, want 4", len(def.Actions))
	}
	for _, a := range def.Actions {
		t.Run(a.Field.Name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				c := chip.New(chip.Config{})
				feedRx(t, c)
				ctl := rd(t, c, regs.TSNRxControl+4)
				if ctl&0xF0 != 0 {
					t.Fatalf("clear bits read back %#x", ctl)
				}
				wr(t, c, regs.TSNRxControl+4, ctl|uint32(a.Field.Mask()))
				for off, n := range rxCounters {
					want := n
					if slices.Contains(a.Clears, off) {
						want = 0
					}
					if got := rd64(t, c, off); got != want {
						d, _ := regs.Lookup(off)
						t.Errorf("%s = %d, want %d", d.Name, got, want)
					}
				}
				if got := rd(t, c, regs.TSNRxControl+4); got != ctl {
					t.Errorf("TSN_RX_CONTROL_L = %#x after clear, want %#x", got, ctl)
				}
				if got := rd64(t, c, regs.TSNRxFIFOStatus); got != 0x0055_0004 {
					t.Errorf("clear touched the FIFOs: TSN_RX_FIFO_STATUS = %#x", got)
				}
			})
		})
	}
}

// recWire records what the transmitter sends.
type recWire struct {
	mu     sync.Mutex
	frames [][]byte
	sofs   []time.Time
}

func (w *recWire) Send(frame []byte, sof time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.frames = append(w.frames, bytes.Clone(frame))
	w.sofs = append(w.sofs, sof)
}

func (w *recWire) sent() ([][]byte, []time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.frames), slices.Clone(w.sofs)
}

// TestTxCountersAfterTransmission queues five frames (timestamp_id 0..4)
// while TSN is disabled, enables it over SPI and checks the wire, the FT_,
// FSCH_ and FTRSF_ counters and the FT_TX_TSTAMPn values, all exact in
// virtual time: at 100 Mbit/s a byte is 10 ticks, and frames leave back
// to back with 8 bytes of preamble and a 12-byte gap.
func TestTxCountersAfterTransmission(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := chip.New(chip.Config{Name: "tx"})
		epoch := time.Now()
		w := &recWire{}
		c.ConnectPHY(w)
		c.Start()
		defer c.Close()

		lens := []int{64, 100, 200, 300, 400}
		var frames [][]byte
		for i, n := range lens {
			m := proto.SendNow(n, 7)
			m.TimestampID = uint16(i)
			mosi := txWrite(t, m, n, byte(i))
			frames = append(frames, mosi[proto.TxWriteHeader:])
			transact(t, c, mosi)
		}
		synctest.Wait()
		if got, _ := w.sent(); len(got) != 0 {
			t.Fatalf("%d frames sent while TSN disabled", len(got))
		}
		if got := rd64(t, c, regs.FSGeneralStatus); got != 0x0000_0005_0000_0008 {
			t.Errorf("FS_GENERAL_STATUS with 5 queued = %#x, want 0x0000000500000008", got)
		}

		wr(t, c, regs.TSNSystemControl+4, 1)
		time.Sleep(time.Millisecond)
		synctest.Wait()

		got, sofs := w.sent()
		if len(got) != len(frames) {
			t.Fatalf("%d frames on the wire, want %d", len(got), len(frames))
		}
		start := int64(0) // ns after epoch
		for i := range frames {
			if !bytes.Equal(got[i], frames[i]) {
				t.Errorf("frame %d differs on the wire", i)
			}
			// SOF on the wire: start + preamble (640 ns) + TX latency (300 ns).
			if d := sofs[i].Sub(epoch); d != time.Duration(start+640+300) {
				t.Errorf("frame %d SOF at %v, want %v", i, d, time.Duration(start+940))
			}
			start += int64(lens[i]+20) * 80
		}
		for _, r := range []struct {
			name string
			off  uint16
			want uint64
		}{
			{"FT_TOTAL_TX_FRAME_CNT", regs.FTTotalTxFrameCnt, 5},
			{"FT_TOTAL_TX_BYTE_CNT", regs.FTTotalTxByteCnt, 1064},
			{"FT_TX_FRAME_STATUS1", regs.FTTxFrameStatus1, 400<<16 | 4},
			{"FT_TX_TSTAMP1", regs.FTTxTstamp1, 920},  // 84*10 + 80
			{"FT_TX_TSTAMP2", regs.FTTxTstamp2, 2120}, // (84+120)*10 + 80
			{"FT_TX_TSTAMP3", regs.FTTxTstamp3, 4320},
			{"FT_TX_TSTAMP4", regs.FTTxTstamp4, 7520},
			{"FSCH_TOTAL_NEW_ENTRY_CNT", regs.FSCHTotalNewEntryCnt, 5},
			{"FSCH_TOTAL_VALID_ENTRY_CNT", regs.FSCHTotalValidEntryCnt, 5},
			{"FSCH_TOTAL_DELAY_ENTRY_CNT", regs.FSCHTotalDelayEntryCnt, 0},
			{"FSCH_TOTAL_DROP_ENTRY_CNT", regs.FSCHTotalDropEntryCnt, 0},
			{"FTRSF_TOTAL_TX_FRAME_CNT", regs.FTRSFTotalTxFrameCnt, 5},
			{"FS_TOTAL_RX_FRAME_CNT", regs.FSTotalRxFrameCnt, 5},
			{"FS_GENERAL_STATUS", regs.FSGeneralStatus, 0x0005_0005_0000_000A},
		} {
			if v := rd64(t, c, r.off); v != r.want {
				t.Errorf("%s = %d (%#x), want %d (%#x)", r.name, v, v, r.want, r.want)
			}
		}
		if st := c.Stats(); st.Transmitting || st.HostFIFO.Len != 0 {
			t.Errorf("after sending: transmitting %v, host FIFO %d", st.Transmitting, st.HostFIFO.Len)
		}
	})
}

// TestTxSchedulerWindows: a frame whose window passed is dropped (policy
// 0) or moved to its delay window (policy 1); a frame whose window opens
// later waits for it. Checked through FSCH_ counters and TX timestamps.
func TestTxSchedulerWindows(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := chip.New(chip.Config{})
		w := &recWire{}
		c.ConnectPHY(w)
		c.Start()
		defer c.Close()
		wr(t, c, regs.TSNSystemControl+4, 1)
		time.Sleep(time.Millisecond) // SYSCOUNT 125000
		tc := func(tick uint32) proto.TickCount { return proto.TickCount{Tick: tick, Priority: 7} }

		passed := proto.TxMetadata{From: tc(0), To: tc(100), DelayFrom: tc(0), DelayTo: tc(100), FailPolicy: 0}
		transact(t, c, txWrite(t, passed, 64, 1))
		retry := proto.TxMetadata{From: tc(0), To: tc(100), DelayFrom: tc(126_000), DelayTo: tc(127_000),
			FailPolicy: 1, TimestampID: 2}
		transact(t, c, txWrite(t, retry, 64, 2))
		later := proto.TxMetadata{From: tc(130_000), To: tc(140_000), DelayFrom: tc(0), DelayTo: tc(0), TimestampID: 1}
		transact(t, c, txWrite(t, later, 64, 3))

		synctest.Wait()
		if got, _ := w.sent(); len(got) != 0 {
			t.Errorf("%d frames sent before their windows", len(got))
		}
		time.Sleep(time.Millisecond)
		synctest.Wait()
		for _, r := range []struct {
			name string
			off  uint16
			want uint64
		}{
			{"FSCH_TOTAL_NEW_ENTRY_CNT", regs.FSCHTotalNewEntryCnt, 3},
			{"FSCH_TOTAL_VALID_ENTRY_CNT", regs.FSCHTotalValidEntryCnt, 2},
			{"FSCH_TOTAL_DELAY_ENTRY_CNT", regs.FSCHTotalDelayEntryCnt, 1},
			{"FSCH_TOTAL_DROP_ENTRY_CNT", regs.FSCHTotalDropEntryCnt, 1},
			{"FT_TOTAL_TX_FRAME_CNT", regs.FTTotalTxFrameCnt, 2},
			{"FT_TX_TSTAMP2", regs.FTTxTstamp2, 126_080}, // delay window opens at 126000
			{"FT_TX_TSTAMP1", regs.FTTxTstamp1, 130_080}, // window opens at 130000
		} {
			if v := rd64(t, c, r.off); v != r.want {
				t.Errorf("%s = %d, want %d", r.name, v, r.want)
			}
		}
		if got, _ := w.sent(); len(got) != 2 || got[0][0] != 2 || got[1][0] != 3 {
			t.Errorf("wire got %d frames, want the retried one then the later one", len(got))
		}
	})
}
