package regs

import (
	"strings"
	"testing"
)

// TestMapShape checks the declarative table itself: offsets 8-aligned,
// inside the 12-bit space, strictly ascending ("in offset order"), unique
// names, non-overlapping fields inside 64 bits, actions only on RW
// registers, clearing only counters and not stored.
func TestMapShape(t *testing.T) {
	names := map[string]bool{}
	for i, d := range Map {
		if d.Offset%8 != 0 || d.Offset >= 0x1000 {
			t.Errorf("%s: offset %#04x not an 8-aligned 12-bit offset", d.Name, d.Offset)
		}
		if i > 0 && d.Offset <= Map[i-1].Offset {
			t.Errorf("%s (%#04x) not after %s (%#04x)", d.Name, d.Offset, Map[i-1].Name, Map[i-1].Offset)
		}
		if d.Name == "" || names[d.Name] {
			t.Errorf("register at %#04x: empty or duplicate name %q", d.Offset, d.Name)
		}
		names[d.Name] = true
		var used uint64
		for _, f := range d.Fields {
			if f.Hi > 63 || f.Lo > f.Hi {
				t.Errorf("%s.%s: bad bit range [%d:%d]", d.Name, f.Name, f.Hi, f.Lo)
				continue
			}
			if used&f.Mask() != 0 {
				t.Errorf("%s.%s overlaps another field", d.Name, f.Name)
			}
			used |= f.Mask()
		}
		if len(d.Actions) > 0 && d.Access != ReadWrite {
			t.Errorf("%s has actions but is %v", d.Name, d.Access)
		}
		for _, a := range d.Actions {
			if d.writeMask()&a.Field.Mask() != 0 {
				t.Errorf("%s: action bit %s is also a stored field", d.Name, a.Field.Name)
			}
			for _, off := range a.Clears {
				c, ok := Lookup(off)
				if !ok || c.Access != Counter {
					t.Errorf("%s.%s clears %#04x, which is not a counter", d.Name, a.Field.Name, off)
				}
			}
		}
		if d.Access == Counter && !strings.HasSuffix(d.Name, "_CNT") {
			t.Errorf("counter %s not named *_CNT", d.Name)
		}
	}
}

// TestOffsetsMatchSpec pins a sample of offsets to chip.md section 4,
// written as literals.
func TestOffsetsMatchSpec(t *testing.T) {
	want := map[string]uint16{
		"FD_RX_TSTAMP": 0x0000, "FD_RX_FRAME_STATUS1": 0x0008, "FD_RX_FRAME_STATUS2": 0x0010,
		"FD_TOTAL_RX_FRAME_CNT": 0x0018, "FD_FIFO_FULL_DROP_BYTE_CNT": 0x0060,
		"TSN_RX_FIFO_STATUS": 0x00A8, "FS_GENERAL_STATUS": 0x00B0, "FS_TOTAL_BACK_PRESSURE_EVENT_CNT": 0x00C8,
		"FP_FRAME_TICK_FROM": 0x00E0, "FP_FRAME_STATUS1": 0x0100, "FP_FRAME_STATUS2": 0x0108,
		"FSCH_TX_FRAME_STATUS": 0x0118, "FSCH_TOTAL_DROP_ENTRY_CNT": 0x0138,
		"FBW_STATUS0": 0x0148, "FBR_STATUS2": 0x0178, "FTRSF_TX_FRAME_STATUS": 0x0188,
		"FTRSF_TOTAL_FRAME_FIFO_FULL_CNT": 0x01A8, "FT_TX_FRAME_STATUS1": 0x01B8,
		"FT_TOTAL_TX_FRAME_CNT": 0x01C8, "FT_TOTAL_TX_BYTE_CNT": 0x01D0,
		"FT_TX_TSTAMP1": 0x01D8, "FT_TX_TSTAMP4": 0x01F0,
		"TSN_SYSTEM_INFO": 0x0278, "TSN_MAC_ADDR": 0x0280, "TSN_SYSCOUNT": 0x0288,
		"TSN_SYSTEM_CONTROL": 0x0290, "TSN_RX_CONTROL": 0x0298, "TSN_TX_CONTROL": 0x02A0,
		"PPS_PULSE_AT": 0x02A8, "PPS_CYCLE_1S": 0x02B0,
	}
	got := map[string]uint16{}
	for _, d := range Map {
		got[d.Name] = d.Offset
	}
	for name, off := range want {
		if g, ok := got[name]; !ok || g != off {
			t.Errorf("%s at %#04x (declared %v), want %#04x", name, g, ok, off)
		}
	}
	for n := 1; n <= 4; n++ {
		if got, want := FTTxTstamp(n), uint16(0x01D8+8*(n-1)); got != want {
			t.Errorf("FTTxTstamp(%d) = %#04x, want %#04x", n, got, want)
		}
	}
}

func TestFieldOps(t *testing.T) {
	f := Field{"X", 44, 32}
	if got := f.Mask(); got != 0x0000_1FFF_0000_0000 {
		t.Errorf("Mask = %#x", got)
	}
	if got := f.Put(^uint64(0), 0); got != 0xFFFF_E000_FFFF_FFFF {
		t.Errorf("Put 0 = %#x", got)
	}
	if got := f.Put(0, 0xFFFF); got != 0x0000_1FFF_0000_0000 {
		t.Errorf("Put excess bits = %#x", got)
	}
	if got := f.Get(0x0000_1234_0000_0000); got != 0x1234 {
		t.Errorf("Get = %#x", got)
	}
	full := Field{"ALL", 63, 0}
	if full.Mask() != ^uint64(0) {
		t.Errorf("full mask = %#x", full.Mask())
	}
	if !TSNEnable.Set(1) || TSNEnable.Set(2) {
		t.Error("TSNEnable.Set wrong")
	}
}

func TestFileResetAndHalves(t *testing.T) {
	f := NewFile(map[uint16]uint64{TSNMACAddr: 0x0000_0211_2233_4455}, nil)
	for _, d := range Map {
		want := d.Reset
		if d.Offset == TSNMACAddr {
			want = 0x0000_0211_2233_4455
		}
		if got := f.Get(d.Offset); got != want {
			t.Errorf("%s reset %#x, want %#x", d.Name, got, want)
		}
		if hi := f.Read32(d.Offset); hi != uint32(want>>32) {
			t.Errorf("%s_H = %#x, want %#x", d.Name, hi, uint32(want>>32))
		}
		if lo := f.Read32(d.Offset + 4); lo != uint32(want) {
			t.Errorf("%s_L = %#x, want %#x", d.Name, lo, uint32(want))
		}
	}
	// Literal reset values from the [model] defaults.
	for off, want := range map[uint16]uint64{
		TSNRxControl: 0x0618_0000_0000_0004, // MAX_FRAME_LENGTH 1560, JUMBO_DROP
		TSNTxControl: 0x0000_0000_000C_0000, // IFG 12
		PPSCycle1S:   125_000_000,
	} {
		if got := NewFile(nil, nil).Get(off); got != want {
			t.Errorf("reset of %#04x = %#x, want %#x", off, got, want)
		}
	}
	// Register address bits above the 12-bit space are ignored.
	if got := f.Read32(0x3000 | (TSNMACAddr + 4)); got != 0x22334455 {
		t.Errorf("Read32 with space bits = %#x", got)
	}
}

func TestNewFilePanicsOnUndeclaredOverride(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("NewFile accepted a reset override for 0x0700")
		}
	}()
	NewFile(map[uint16]uint64{0x0700: 1}, nil)
}

func TestResolve(t *testing.T) {
	for _, tt := range []struct {
		addr uint16
		name string
		h    Half
		ok   bool
	}{
		{0x0284, "TSN_MAC_ADDR", Low, true},
		{0x0280, "TSN_MAC_ADDR", High, true},
		{0x3288, "TSN_SYSCOUNT", High, true},
		{0x0000, "FD_RX_TSTAMP", High, true},
		{0x0003, "", 0, false},
		{0x0282, "", 0, false},
		{0x0700, "", 0, false},
		{0x02B8, "", 0, false},
		{0x0068, "", 0, false},
		{0x0FFC, "", 0, false},
	} {
		d, h, ok := Resolve(tt.addr)
		if ok != tt.ok || (ok && (d.Name != tt.name || h != tt.h)) {
			t.Errorf("Resolve(%#04x) = %v %v %v, want %s %v %v", tt.addr, d, h, ok, tt.name, tt.h, tt.ok)
		}
	}
}

func TestFileWrites(t *testing.T) {
	live := func(off uint16) uint64 { return 0xABCD_0000_0000_1234 }
	f := NewFile(nil, live)

	// Read-only, counter and live registers ignore writes and count them.
	var ro uint64
	for _, d := range Map {
		if d.Access == ReadWrite {
			continue
		}
		before := f.Get(d.Offset)
		for _, a := range []uint16{d.Offset, d.Offset + 4} {
			if got := f.Write32(a, 0xFFFFFFFF); got != nil {
				t.Errorf("write to %v %s accepted", d.Access, d.Name)
			}
			ro++
		}
		if after := f.Get(d.Offset); after != before {
			t.Errorf("%s changed by a write: %#x -> %#x", d.Name, before, after)
		}
	}
	if gotRO, gotUn := f.IgnoredWrites(); gotRO != ro || gotUn != 0 {
		t.Errorf("IgnoredWrites = %d, %d; want %d, 0", gotRO, gotUn, ro)
	}
	if got := f.Get(TSNSysCount); got != 0xABCD_0000_0000_1234 {
		t.Errorf("live register read %#x, want the live value", got)
	}

	// Read-write registers store only their declared fields (all bits
	// when none are declared).
	wantAllOnes := map[uint16]uint64{
		TSNMACAddr:       0x0000_FFFF_FFFF_FFFF,
		TSNSystemControl: 0x0000_0000_0000_0001,
		TSNRxControl:     0xFFFF_1FFF_01FF_000F,
		TSNTxControl:     0x0000_0000_FFFF_03FF,
		PPSPulseAt:       0xFFFF_FFFF_FFFF_FFFF,
		PPSCycle1S:       0xFFFF_FFFF_FFFF_FFFF,
	}
	for _, d := range Map {
		if d.Access != ReadWrite {
			continue
		}
		want, ok := wantAllOnes[d.Offset]
		if !ok {
			t.Errorf("RW register %s not covered", d.Name)
			continue
		}
		for _, a := range []uint16{d.Offset, d.Offset + 4} {
			if got := f.Write32(a, 0xFFFFFFFF); got == nil || got.Offset != d.Offset {
				t.Errorf("write to %s_%v ignored", d.Name, a)
			}
		}
		if got := f.Get(d.Offset); got != want {
			t.Errorf("%s after all-ones = %#x, want %#x", d.Name, got, want)
		}
		// Halves are independent.
		f.Write32(d.Offset+4, 0)
		if got := f.Get(d.Offset); got != want&0xFFFFFFFF_00000000 {
			t.Errorf("%s after L=0 = %#x, want %#x", d.Name, got, want&0xFFFFFFFF_00000000)
		}
		f.Write32(d.Offset, 0)
		if got := f.Get(d.Offset); got != 0 {
			t.Errorf("%s after H=0 = %#x, want 0", d.Name, got)
		}
	}

	// Unmapped addresses are counted, not stored.
	before := f.vals
	for _, a := range []uint16{0x0700, 0x0003, 0x02B8, 0x0282, 0x0FFC} {
		if got := f.Write32(a, 0xFFFFFFFF); got != nil {
			t.Errorf("write to unmapped %#04x returned %s", a, got.Name)
		}
		if got := f.Read32(a); got != 0 {
			t.Errorf("unmapped %#04x reads %#x", a, got)
		}
	}
	if f.vals != before {
		t.Error("an unmapped write changed the register file")
	}
	if gotRO, gotUn := f.IgnoredWrites(); gotRO != ro || gotUn != 5 {
		t.Errorf("IgnoredWrites = %d, %d; want %d, 5", gotRO, gotUn, ro)
	}
}

// TestFileClearActions: each clear bit of TSN_RX_CONTROL_L zeroes exactly
// its counters (written out from chip.md) and is not stored.
func TestFileClearActions(t *testing.T) {
	counters := []uint16{FDTotalRxFrameCnt, FDTotalRxByteCnt, FDTotalDropFrameCnt, FDTotalDropByteCnt,
		FDFCSDropFrameCnt, FDFCSDropByteCnt, FDJumboDropFrameCnt, FDJumboDropByteCnt,
		FDFIFOFullDropFrameCnt, FDFIFOFullDropByteCnt}
	for _, tt := range []struct {
		bit    uint
		clears []uint16
	}{
		{7, []uint16{FDTotalDropByteCnt, FDFCSDropByteCnt, FDJumboDropByteCnt, FDFIFOFullDropByteCnt}},
		{6, []uint16{FDTotalDropFrameCnt, FDFCSDropFrameCnt, FDJumboDropFrameCnt, FDFIFOFullDropFrameCnt}},
		{5, []uint16{FDTotalRxByteCnt}},
		{4, []uint16{FDTotalRxFrameCnt}},
	} {
		f := NewFile(nil, nil)
		for i, c := range counters {
			f.Add(c, uint64(100+i))
		}
		ctl := f.Get(TSNRxControl)
		if d := f.Write32(TSNRxControl+4, uint32(ctl)|1<<tt.bit); d == nil {
			t.Fatalf("bit %d: write ignored", tt.bit)
		}
		for i, c := range counters {
			want := uint64(100 + i)
			for _, x := range tt.clears {
				if x == c {
					want = 0
				}
			}
			if got := f.Get(c); got != want {
				t.Errorf("bit %d: counter %#04x = %d, want %d", tt.bit, c, got, want)
			}
		}
		if got := f.Get(TSNRxControl); got != ctl {
			t.Errorf("bit %d: TSN_RX_CONTROL = %#x after clear, want %#x (bit not stored)", tt.bit, got, ctl)
		}
		// A clear bit written to the H half does nothing.
		f.Add(FDTotalRxFrameCnt, 5)
		f.Write32(TSNRxControl, uint32(ctl>>32)|1<<tt.bit)
		if got := f.Get(FDTotalRxFrameCnt); got == 0 {
			t.Errorf("bit %d in the H half cleared FD_TOTAL_RX_FRAME_CNT", tt.bit)
		}
	}
}
