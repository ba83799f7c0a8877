package chip_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"maps"
	"slices"
	"testing"
	"time"

	"tsnsim/chip"
	"tsnsim/chip/proto"
	"tsnsim/chip/regs"
)

// rxWire returns an n-byte frame (FCS included, valid) whose bytes depend
// on seed.
func rxWire(n int, seed byte) []byte {
	f := make([]byte, n-proto.FCSLen)
	for i := range f {
		f[i] = seed + byte(i)
	}
	return proto.AppendFCS(f)
}

// badFCS returns an n-byte frame whose FCS is wrong.
func badFCS(n int, seed byte) []byte {
	f := rxWire(n, seed)
	f[n-1] ^= 0xFF
	return f
}

// txWrite returns a valid TX write transaction for a frame of wireLen
// bytes incl. FCS with the given metadata.
func txWrite(t *testing.T, m proto.TxMetadata, wireLen int, seed byte) []byte {
	t.Helper()
	frame := make([]byte, wireLen-proto.FCSLen)
	for i := range frame {
		frame[i] = seed ^ byte(i)
	}
	b, err := proto.TxFrameWrite(m, frame)
	if err != nil {
		t.Fatalf("TxFrameWrite: %v", err)
	}
	if len(b) != proto.TxWriteHeader+wireLen {
		t.Fatalf("TX write of %d bytes, want %d", len(b), proto.TxWriteHeader+wireLen)
	}
	return b
}

// rawTxWrite returns 01 20 00 + metadata with frame_length fl + sent
// frame bytes, without any consistency.
func rawTxWrite(fl uint16, sent int) []byte {
	b := make([]byte, proto.TxWriteHeader+sent)
	b[0], b[1], b[2] = 0x01, 0x20, 0x00
	m := proto.SendNow(int(fl), proto.PriorityBestEffort)
	m.FrameLength = fl
	m.Put(b[proto.HeaderLen:])
	for i := proto.TxWriteHeader; i < len(b); i++ {
		b[i] = byte(i)
	}
	return b
}

// transact runs one transaction that must be accepted and returns MISO.
func transact(t *testing.T, c *chip.Chip, mosi []byte) []byte {
	t.Helper()
	miso := make([]byte, len(mosi))
	if err := c.Transact(mosi, miso); err != nil {
		t.Fatalf("Transact(% x...): %v", mosi[:min(len(mosi), 8)], err)
	}
	return miso
}

// rd reads the 32-bit register half at addr over SPI (02 3R RR + 5).
func rd(t *testing.T, c *chip.Chip, addr uint16) uint32 {
	t.Helper()
	mosi := []byte{0x02, 0x30 | byte(addr>>8&0x0F), byte(addr), 0, 0, 0, 0, 0}
	miso := transact(t, c, mosi)
	if !bytes.Equal(miso[:4], []byte{0, 0, 0, 0}) {
		t.Fatalf("register read MISO header bytes % x, want zeros", miso[:4])
	}
	return binary.BigEndian.Uint32(miso[4:])
}

// rd64 reads a 64-bit register as H then L over SPI.
func rd64(t *testing.T, c *chip.Chip, off uint16) uint64 {
	t.Helper()
	return uint64(rd(t, c, off))<<32 | uint64(rd(t, c, off+4))
}

// wr writes the 32-bit register half at addr over SPI (01 4R RR v3..v0).
func wr(t *testing.T, c *chip.Chip, addr uint16, v uint32) {
	t.Helper()
	mosi := []byte{0x01, 0x40 | byte(addr>>8&0x0F), byte(addr), 0, 0, 0, 0}
	binary.BigEndian.PutUint32(mosi[3:], v)
	if miso := transact(t, c, mosi); !bytes.Equal(miso, make([]byte, 7)) {
		t.Fatalf("register write MISO % x, want zeros", miso)
	}
}

// snapshot returns every declared register except the free-running
// SYSCOUNT.
func snapshot(c *chip.Chip) map[uint16]uint64 {
	m := map[uint16]uint64{}
	for _, d := range regs.Map {
		if d.Offset != regs.TSNSysCount {
			m[d.Offset] = c.Register(d.Offset)
		}
	}
	return m
}

func diffRegs(t *testing.T, before, after map[uint16]uint64, skip ...uint16) {
	t.Helper()
	for off, v := range before {
		if slices.Contains(skip, off) {
			continue
		}
		if after[off] != v {
			d, _ := regs.Lookup(off)
			t.Errorf("%s (%#04x) changed: %#x -> %#x", d.Name, off, v, after[off])
		}
	}
}

// TestTransactRejections has one row per ProtocolErrorKind (several for
// some): each rejection returns that kind, counts exactly one error of
// that kind, returns zero MISO and changes no state, except that an RX
// frame length mismatch consumes the head frame and returns its bytes.
func TestTransactRejections(t *testing.T) {
	head := rxWire(64, 0x40) // the RX frame queued before each row
	n := func(b []byte, extra int) []byte { return append(b, make([]byte, extra)...) }
	tx2001 := rawTxWrite(64, 64) // a well-formed TX write, to 0x2001
	tx2001[2] = 0x01
	tests := []struct {
		name     string
		kind     chip.ProtocolErrorKind
		mosi     []byte
		misoLen  int  // 0: len(mosi)
		noRx     bool // no RX frame queued
		wantMISO []byte
		consumes bool // head RX frame consumed
	}{
		{name: "empty", kind: chip.ErrShortHeader, mosi: []byte{}},
		{name: "1 byte", kind: chip.ErrShortHeader, mosi: []byte{0x02}},
		{name: "2 bytes", kind: chip.ErrShortHeader, mosi: []byte{0x02, 0x32}},
		{name: "cmd 00", kind: chip.ErrUnknownCommand, mosi: n([]byte{0x00, 0x32, 0x84}, 5)},
		{name: "cmd 03", kind: chip.ErrUnknownCommand, mosi: n([]byte{0x03, 0x42, 0x94}, 4)},
		{name: "cmd ff", kind: chip.ErrUnknownCommand, mosi: n([]byte{0xFF, 0xF0, 0x00}, 11)},
		{name: "read 0x2000", kind: chip.ErrUnknownAddress, mosi: n([]byte{0x02, 0x20, 0x00}, 5)},
		{name: "read 0x4294", kind: chip.ErrUnknownAddress, mosi: n([]byte{0x02, 0x42, 0x94}, 5)},
		{name: "read 0x1004", kind: chip.ErrUnknownAddress, mosi: n([]byte{0x02, 0x10, 0x04}, 65)},
		{name: "read 0x5000", kind: chip.ErrUnknownAddress, mosi: n([]byte{0x02, 0x50, 0x00}, 5)},
		{name: "read 0xF001", kind: chip.ErrUnknownAddress, mosi: n([]byte{0x02, 0xF0, 0x01}, 11)},
		{name: "write 0xF000", kind: chip.ErrUnknownAddress, mosi: n([]byte{0x01, 0xF0, 0x00}, 4)},
		{name: "write 0x1004", kind: chip.ErrUnknownAddress, mosi: n([]byte{0x01, 0x10, 0x04}, 4)},
		{name: "write 0x1000", kind: chip.ErrUnknownAddress, mosi: n([]byte{0x01, 0x10, 0x00}, 4)},
		{name: "write 0x3284", kind: chip.ErrUnknownAddress, mosi: n([]byte{0x01, 0x32, 0x84}, 4)},
		{name: "write 0x2001", kind: chip.ErrUnknownAddress, mosi: tx2001},
		{name: "reg read 7 bytes", kind: chip.ErrBadLength, mosi: n([]byte{0x02, 0x32, 0x84}, 4)},
		{name: "reg read 9 bytes", kind: chip.ErrBadLength, mosi: n([]byte{0x02, 0x32, 0x84}, 6)},
		{name: "reg write 6 bytes", kind: chip.ErrBadLength, mosi: []byte{0x01, 0x42, 0xAC, 0xDE, 0xAD, 0xBE}},
		{name: "reg write 8 bytes", kind: chip.ErrBadLength, mosi: []byte{0x01, 0x42, 0xAC, 0xDE, 0xAD, 0xBE, 0xEF, 0x00}},
		{name: "meta read 13 bytes", kind: chip.ErrBadLength, mosi: n([]byte{0x02, 0xF0, 0x00}, 10)},
		{name: "meta read 15 bytes", kind: chip.ErrBadLength, mosi: n([]byte{0x02, 0xF0, 0x00}, 12)},
		{name: "frame read no data", kind: chip.ErrBadLength, mosi: []byte{0x02, 0x10, 0x00, 0x00}},
		{name: "frame read header only", kind: chip.ErrBadLength, mosi: []byte{0x02, 0x10, 0x00}},
		{name: "MISO shorter than MOSI", kind: chip.ErrBadLength, mosi: n([]byte{0x02, 0x32, 0x84}, 5), misoLen: 7},
		{name: "TX header only", kind: chip.ErrShortTxWrite, mosi: []byte{0x01, 0x20, 0x00}},
		{name: "TX 31 metadata bytes", kind: chip.ErrShortTxWrite, mosi: rawTxWrite(64, 0)[:proto.TxWriteHeader-1]},
		{name: "TX fl 64, 63 sent", kind: chip.ErrTxLengthMismatch, mosi: rawTxWrite(64, 63)},
		{name: "TX fl 64, 65 sent", kind: chip.ErrTxLengthMismatch, mosi: rawTxWrite(64, 65)},
		{name: "TX fl 0, 64 sent", kind: chip.ErrTxLengthMismatch, mosi: rawTxWrite(0, 64)},
		{name: "TX fl 1561", kind: chip.ErrTxOversize, mosi: rawTxWrite(1561, 1561)},
		{name: "TX fl 0xffff, 10 sent", kind: chip.ErrTxOversize, mosi: rawTxWrite(0xFFFF, 10)},
		{name: "TX fl 63", kind: chip.ErrTxRunt, mosi: rawTxWrite(63, 63)},
		{name: "TX fl 0, nothing sent", kind: chip.ErrTxRunt, mosi: rawTxWrite(0, 0)},
		{name: "frame read, FIFO empty", kind: chip.ErrRxFrameFIFOEmpty, mosi: n([]byte{0x02, 0x10, 0x00}, 65), noRx: true},
		{name: "frame read 1 byte, FIFO empty", kind: chip.ErrRxFrameFIFOEmpty, mosi: n([]byte{0x02, 0x10, 0x00}, 2), noRx: true},
		{
			name: "frame read short", kind: chip.ErrRxFrameLengthMismatch, mosi: n([]byte{0x02, 0x10, 0x00}, 1+63),
			wantMISO: append(make([]byte, 4), head[:63]...), consumes: true,
		},
		{
			name: "frame read long", kind: chip.ErrRxFrameLengthMismatch, mosi: n([]byte{0x02, 0x10, 0x00}, 1+70),
			wantMISO: append(append(make([]byte, 4), head...), make([]byte, 6)...), consumes: true,
		},
	}
	covered := map[chip.ProtocolErrorKind]bool{}
	for _, tt := range tests {
		covered[tt.kind] = true
		t.Run(tt.name, func(t *testing.T) {
			c := chip.New(chip.Config{Name: "dec"})
			transact(t, c, txWrite(t, proto.SendNow(100, 7), 100, 1)) // one frame in the host FIFO
			if !tt.noRx {
				c.ReceivePHY(bytes.Clone(head), time.Now())
			}
			before, st0 := snapshot(c), c.Stats()

			misoLen := len(tt.mosi)
			if tt.misoLen != 0 {
				misoLen = tt.misoLen
			}
			miso := bytes.Repeat([]byte{0xA5}, misoLen) // Transact must overwrite
			err := c.Transact(tt.mosi, miso)
			var pe *chip.ProtocolError
			if !errors.As(err, &pe) {
				t.Fatalf("Transact error %v (%T), want *chip.ProtocolError", err, err)
			}
			if pe.Kind != tt.kind {
				t.Fatalf("kind %v, want %v (%v)", pe.Kind, tt.kind, err)
			}
			want := tt.wantMISO
			if want == nil {
				want = make([]byte, misoLen)
			}
			if !bytes.Equal(miso, want) {
				t.Errorf("MISO\n got % x\nwant % x", miso, want)
			}

			st := c.Stats()
			if st.ProtocolErrors != st0.ProtocolErrors+1 {
				t.Errorf("ProtocolErrors %d -> %d, want +1", st0.ProtocolErrors, st.ProtocolErrors)
			}
			wantKinds := maps.Clone(st0.ProtocolErrorsByKind)
			wantKinds[tt.kind]++
			if !maps.Equal(st.ProtocolErrorsByKind, wantKinds) {
				t.Errorf("ProtocolErrorsByKind %v, want %v", st.ProtocolErrorsByKind, wantKinds)
			}
			if st.ReadOnlyWrites != st0.ReadOnlyWrites || st.UnmappedWrites != st0.UnmappedWrites {
				t.Errorf("ignored-write counters changed: %d/%d -> %d/%d",
					st0.ReadOnlyWrites, st0.UnmappedWrites, st.ReadOnlyWrites, st.UnmappedWrites)
			}
			if st.HostFIFO.Len != 1 || st.HostFIFO.Pushed != 1 || st.HostFIFO.Drops != 0 {
				t.Errorf("host FIFO %+v, want exactly the one frame queued before", st.HostFIFO)
			}
			if st.RxMetaFIFO.Len != st0.RxMetaFIFO.Len {
				t.Errorf("RX meta FIFO %d -> %d entries", st0.RxMetaFIFO.Len, st.RxMetaFIFO.Len)
			}
			after := snapshot(c)
			if tt.consumes {
				if st.RxFrameFIFO.Len != 0 || st.RxFrameFIFO.Used != 0 || st.RxFrameFIFO.Popped != 1 {
					t.Errorf("RX frame FIFO %+v, want the head frame consumed", st.RxFrameFIFO)
				}
				// Frame FIFO words 4 -> 0; the metadata entry stays.
				if got := after[regs.TSNRxFIFOStatus]; got != 0x0000_0001 {
					t.Errorf("TSN_RX_FIFO_STATUS = %#x, want 0x00000001", got)
				}
				diffRegs(t, before, after, regs.TSNRxFIFOStatus)
				return
			}
			if st.RxFrameFIFO != st0.RxFrameFIFO {
				t.Errorf("RX frame FIFO %+v -> %+v", st0.RxFrameFIFO, st.RxFrameFIFO)
			}
			diffRegs(t, before, after)
		})
	}
	for k := chip.ProtocolErrorKind(0); k < chip.ErrRxFrameLengthMismatch+1; k++ {
		if !covered[k] {
			t.Errorf("no row for %v", k)
		}
	}
}

// TestProtocolErrorKindString names every kind distinctly and formats
// out-of-range kinds.
func TestProtocolErrorKindString(t *testing.T) {
	seen := map[string]bool{}
	for k := chip.ErrShortHeader; k <= chip.ErrRxFrameLengthMismatch; k++ {
		s := k.String()
		if s == "" || seen[s] {
			t.Errorf("kind %d named %q (empty or duplicate)", int(k), s)
		}
		seen[s] = true
	}
	if got := chip.ProtocolErrorKind(99).String(); got != "ProtocolErrorKind(99)" {
		t.Errorf("String of kind 99 = %q", got)
	}
	err := &chip.ProtocolError{Kind: chip.ErrTxRunt, Detail: "x"}
	if got := err.Error(); got != "chip: TX runt: x" {
		t.Errorf("Error() = %q", got)
	}
}

// TestRxMetaReadEmpty: a metadata read of an empty FIFO is not an error;
// it returns frame_length 0 (all zero MISO).
func TestRxMetaReadEmpty(t *testing.T) {
	c := chip.New(chip.Config{})
	miso := transact(t, c, append([]byte{0x02, 0xF0, 0x00}, make([]byte, 11)...))
	if !bytes.Equal(miso, make([]byte, 14)) {
		t.Errorf("MISO % x, want zeros", miso)
	}
	if st := c.Stats(); st.ProtocolErrors != 0 {
		t.Errorf("%d protocol errors, want 0", st.ProtocolErrors)
	}
}

// TestRxFrameReadDirtyMISO: a frame read into a MISO buffer holding
// garbage returns exactly what a zeroed buffer would: zeros in the header
// and turnaround, the frame, zeros after it (a read longer than the
// frame, a MISO buffer longer than MOSI), and all zeros when the FIFO is
// empty.
func TestRxFrameReadDirtyMISO(t *testing.T) {
	c := chip.New(chip.Config{})
	frames := [][]byte{rxWire(64, 1), rxWire(100, 2), rxWire(80, 3)}
	for _, f := range frames {
		c.ReceivePHY(bytes.Clone(f), time.Now())
	}
	dirty := func(n int) []byte { return bytes.Repeat([]byte{0xA5}, n) }
	for i, tc := range []struct {
		read, misoLen int
		want          []byte // after the 4 header bytes
		err           bool
	}{
		{read: 64, misoLen: 4 + 64, want: frames[0]},
		{read: 120, misoLen: 4 + 130, want: append(bytes.Clone(frames[1]), make([]byte, 30)...), err: true},
		{read: 50, misoLen: 4 + 50, want: frames[2][:50], err: true},
		{read: 64, misoLen: 4 + 64, want: make([]byte, 64), err: true}, // FIFO empty
	} {
		mosi := proto.RxFrameRead(tc.read)
		miso := dirty(tc.misoLen)
		err := c.Transact(mosi, miso)
		if (err != nil) != tc.err {
			t.Errorf("read %d: error %v, want error %v", i, err, tc.err)
		}
		if want := append(make([]byte, proto.ReadDataStart), tc.want...); !bytes.Equal(miso, want) {
			t.Errorf("read %d: MISO\n% x\nwant\n% x", i, miso, want)
		}
	}
}

// TestHostFIFOFullBackPressure: a TX write into a full host FIFO is
// accepted on the bus but the frame is lost and counted in
// FS_TOTAL_BACK_PRESSURE_EVENT_CNT; nothing else moves.
func TestHostFIFOFullBackPressure(t *testing.T) {
	c := chip.New(chip.Config{HostFIFOFrames: 2})
	for i := range 2 {
		transact(t, c, txWrite(t, proto.SendNow(64, 7), 64, byte(i)))
	}
	// Full at capacity: FS_GENERAL_STATUS H = rd 0, wr 2; L = user full |
	// full (tready 0, empty 0).
	if got := rd64(t, c, regs.FSGeneralStatus); got != 0x0000_0002_0000_0005 {
		t.Errorf("FS_GENERAL_STATUS full = %#016x, want 0x0000000200000005", got)
	}
	before := snapshot(c)
	miso := transact(t, c, txWrite(t, proto.SendNow(200, 7), 200, 9))
	if !bytes.Equal(miso, make([]byte, len(miso))) {
		t.Errorf("MISO not zero")
	}
	if got := c.Register(regs.FSTotalBackPressureEventCnt); got != 1 {
		t.Errorf("FS_TOTAL_BACK_PRESSURE_EVENT_CNT = %d, want 1", got)
	}
	st := c.Stats()
	if st.HostFIFO.Len != 2 || st.HostFIFO.Pushed != 2 || st.HostFIFO.Drops != 1 {
		t.Errorf("host FIFO %+v, want 2 queued, 1 drop", st.HostFIFO)
	}
	if st.ProtocolErrors != 0 {
		t.Errorf("back-pressure counted as %d protocol errors", st.ProtocolErrors)
	}
	// The refused frame must not reach the parser or the counters.
	diffRegs(t, before, snapshot(c), regs.FSTotalBackPressureEventCnt)

	// Lowering HOST_FIFO_FULL_LIMIT to 1 over SPI: user-full without
	// being full at capacity once one frame is left.
	c2 := chip.New(chip.Config{HostFIFOFrames: 2})
	wr(t, c2, regs.TSNTxControl+4, 12<<16|1)
	transact(t, c2, txWrite(t, proto.SendNow(64, 7), 64, 0))
	if got := rd(t, c2, regs.FSGeneralStatus+4); got != 0x4 {
		t.Errorf("FS_GENERAL_STATUS_L at limit 1 = %#x, want 0x4 (user full only)", got)
	}
	transact(t, c2, txWrite(t, proto.SendNow(64, 7), 64, 1))
	if got := c2.Register(regs.FSTotalBackPressureEventCnt); got != 1 {
		t.Errorf("FS_TOTAL_BACK_PRESSURE_EVENT_CNT at limit 1 = %d, want 1", got)
	}
	if got := c2.Stats().HostFIFO.Len; got != 1 {
		t.Errorf("host FIFO holds %d frames, want 1", got)
	}
}

// TestTxWriteParserRegisters: an accepted TX write records its metadata
// in FP_*, counts in FS_TOTAL_RX_FRAME_CNT, FS_TOTAL_RX_16BYTE_CNT and
// FSCH_TOTAL_NEW_ENTRY_CNT, and advances HOST_FIFO_WR_CNT.
func TestTxWriteParserRegisters(t *testing.T) {
	c := chip.New(chip.Config{})
	m := proto.TxMetadata{
		From:        proto.TickCount{Tick: 100, Priority: 3},
		To:          proto.TickCount{Tick: 200, Priority: 3},
		DelayFrom:   proto.TickCount{Tick: 300, Priority: 5},
		DelayTo:     proto.TickCount{Tick: 0x1FFFFFFF, Priority: 7},
		TimestampID: 2,
		FailPolicy:  1,
	}
	transact(t, c, txWrite(t, m, 100, 0))
	want := []struct {
		name string
		off  uint16
		v    uint64
	}{
		{"FP_FRAME_TICK_FROM", regs.FPFrameTickFrom, 100<<3 | 3},
		{"FP_FRAME_TICK_TO", regs.FPFrameTickTo, 200<<3 | 3},
		{"FP_FRAME_TICK_DELAY_FROM", regs.FPFrameTickDelayFrom, 300<<3 | 5},
		{"FP_FRAME_TICK_DELAY_TO", regs.FPFrameTickDelayTo, 0xFFFFFFFF},
		// alloc_addr 0, fail_policy 1, frame_length 100, timestamp_id 2.
		{"FP_FRAME_STATUS1", regs.FPFrameStatus1, 0x0000_0001_0064_0002},
		{"FS_TOTAL_RX_FRAME_CNT", regs.FSTotalRxFrameCnt, 1},
		{"FS_TOTAL_RX_16BYTE_CNT", regs.FSTotalRx16ByteCnt, 9}, // ceil((32+100)/16)
		{"FSCH_TOTAL_NEW_ENTRY_CNT", regs.FSCHTotalNewEntryCnt, 1},
		{"FS_GENERAL_STATUS", regs.FSGeneralStatus, 0x0000_0001_0000_0008}, // wr 1, tready
		{"FS_TOTAL_BACK_PRESSURE_EVENT_CNT", regs.FSTotalBackPressureEventCnt, 0},
	}
	for _, w := range want {
		if got := rd64(t, c, w.off); got != w.v {
			t.Errorf("%s = %#x, want %#x", w.name, got, w.v)
		}
	}

	// Second frame: 64 bytes, drop policy, no timestamp; slot 1.
	transact(t, c, txWrite(t, proto.SendNow(64, 7), 64, 1))
	if got := rd64(t, c, regs.FPFrameStatus1); got != 0x0001_0000_0040_0000 {
		t.Errorf("FP_FRAME_STATUS1 after 2nd frame = %#x, want 0x0001000000400000", got)
	}
	if got := rd64(t, c, regs.FPFrameTickFrom); got != 7 {
		t.Errorf("FP_FRAME_TICK_FROM after 2nd frame = %#x, want 7", got)
	}
	if got := rd64(t, c, regs.FSTotalRx16ByteCnt); got != 9+6 { // ceil(96/16)
		t.Errorf("FS_TOTAL_RX_16BYTE_CNT = %d, want 15", got)
	}
	if got := rd64(t, c, regs.FSTotalRxFrameCnt); got != 2 {
		t.Errorf("FS_TOTAL_RX_FRAME_CNT = %d, want 2", got)
	}
	if st := c.Stats(); st.HostFIFO.Len != 2 {
		t.Errorf("host FIFO %d frames, want 2", st.HostFIFO.Len)
	}
}

// TestLastEdge: with TimeEdges, the chip keeps when its interrupt line
// fell in the model: the end of the frame that made the RX FIFO
// non-empty, its start of frame plus its time at the link speed; frames
// received while the line is down raise no edge and leave it. Without
// TimeEdges it keeps nothing.
func TestLastEdge(t *testing.T) {
	c := chip.New(chip.Config{LinkBitsPerSec: 100_000_000})
	sof := time.Now()
	c.ReceivePHY(rxWire(64, 1), sof)
	if got := c.LastEdge(); !got.IsZero() {
		t.Errorf("LastEdge without TimeEdges = %v, want zero", got)
	}
	<-c.IRQ()
	transact(t, c, proto.RxMetaRead())
	transact(t, c, proto.RxFrameRead(64))

	c.TimeEdges()
	c.ReceivePHY(rxWire(100, 2), sof)
	want := sof.Add(100 * 8 * 10 * time.Nanosecond) // 100 bytes at 100 Mbit/s
	if got := c.LastEdge(); !got.Equal(want) {
		t.Errorf("LastEdge = sof + %v, want sof + %v", got.Sub(sof), want.Sub(sof))
	}
	c.ReceivePHY(rxWire(64, 3), sof.Add(time.Millisecond)) // line already down: no edge
	if got := c.LastEdge(); !got.Equal(want) {
		t.Errorf("LastEdge after a frame with the line down = sof + %v, want sof + %v", got.Sub(sof), want.Sub(sof))
	}
}
