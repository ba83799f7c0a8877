package spibridge

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"tsnsim/chip"
	"tsnsim/chip/proto"
	"tsnsim/chip/regs"
)

// memRecorder keeps the events it is given.
type memRecorder struct {
	mu     sync.Mutex
	events []TraceEvent
}

func (m *memRecorder) Record(ev TraceEvent) {
	m.mu.Lock()
	m.events = append(m.events, ev)
	m.mu.Unlock()
}

func (m *memRecorder) only(t *testing.T) TraceEvent {
	t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.events) != 1 {
		t.Fatalf("%d events recorded, want 1", len(m.events))
	}
	ev := m.events[0]
	m.events = nil
	return ev
}

func TestDecodeHeader(t *testing.T) {
	for _, tc := range []struct {
		name string
		mosi []byte
		want Header
	}{
		{"syscount H read", proto.RegRead(regs.TSNSysCount), Header{SpaceRegRead, DirRead, 0x3288, "TSN_SYSCOUNT_H"}},
		{"syscount L read", proto.RegRead(regs.TSNSysCount + 4), Header{SpaceRegRead, DirRead, 0x328C, "TSN_SYSCOUNT_L"}},
		{"control L write", proto.RegWrite(regs.TSNSystemControl+4, 1), Header{SpaceRegWrite, DirWrite, 0x4294, "TSN_SYSTEM_CONTROL_L"}},
		{"unmapped register", proto.RegRead(0xFF8), Header{SpaceRegRead, DirRead, 0x3FF8, ""}},
		{"misaligned register", proto.RegRead(0x282), Header{SpaceRegRead, DirRead, 0x3282, ""}},
		{"rx meta", proto.RxMetaRead(), Header{SpaceRxMeta, DirRead, 0xF000, ""}},
		{"rx frame", proto.RxFrameRead(64), Header{SpaceRxFrame, DirRead, 0x1000, ""}},
		{"tx frame", []byte{0x01, 0x20, 0x00, 0, 0}, Header{SpaceTxFrame, DirWrite, 0x2000, ""}},
		{"read of the TX FIFO", []byte{0x02, 0x20, 0x00}, Header{SpaceInvalid, DirRead, 0x2000, ""}},
		{"write of the RX meta FIFO", []byte{0x01, 0xF0, 0x00}, Header{SpaceInvalid, DirWrite, 0xF000, ""}},
		{"register write as read", []byte{0x02, 0x42, 0x90}, Header{SpaceInvalid, DirRead, 0x4290, ""}},
		{"rx frame + 4", []byte{0x02, 0x10, 0x04}, Header{SpaceInvalid, DirRead, 0x1004, ""}},
		{"unknown space", []byte{0x01, 0x50, 0x00}, Header{SpaceInvalid, DirWrite, 0x5000, ""}},
		{"unknown command", []byte{0x03, 0x32, 0x88}, Header{SpaceInvalid, DirNone, 0x3288, ""}},
		{"short header", []byte{0x02, 0x32}, Header{SpaceInvalid, DirNone, 0, ""}},
		{"empty", nil, Header{SpaceInvalid, DirNone, 0, ""}},
	} {
		if got := DecodeHeader(tc.mosi); got != tc.want {
			t.Errorf("%s: DecodeHeader(% x) = %+v, want %+v", tc.name, tc.mosi, got, tc.want)
		}
	}
}

// TestTracedInProcessChip: a traced in-process bus over a real chip
// records the exact bytes of a register read and a TX write, with their
// modelled durations, and passes the chip's answers through unchanged.
func TestTracedInProcessChip(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := chip.New(chip.Config{Name: "a", MAC: net.HardwareAddr{0x02, 0, 0, 0, 0, 0x01}})
		defer c.Close()
		rec := &memRecorder{}
		tr := NewTraced(NewInProcess(c, DefaultTiming(), nil), "a", rec)
		defer tr.Close()

		// Register read of TSN_MAC_ADDR_H: bits 63:32 of 0x020000000001.
		t0 := time.Now()
		mosi := proto.RegRead(regs.TSNMACAddr)
		miso := make([]byte, len(mosi))
		if err := tr.Transfer(context.Background(), mosi, miso); err != nil {
			t.Fatal(err)
		}
		wantMISO := []byte{0, 0, 0, 0, 0x00, 0x00, 0x02, 0x00}
		if !bytes.Equal(miso, wantMISO) {
			t.Fatalf("MISO % x, want % x", miso, wantMISO)
		}
		ev := rec.only(t)
		// 20 us overhead + 8 bytes * 8 bits at 15 MHz (4266 ns).
		want := TraceEvent{
			Node: "a", Start: t0, Duration: 24266 * time.Nanosecond, BusStart: t0,
			Header: Header{SpaceRegRead, DirRead, 0x3280, "TSN_MAC_ADDR_H"},
			Len:    8, MOSI: []byte{0x02, 0x32, 0x80, 0, 0, 0, 0, 0}, MISO: wantMISO,
		}
		checkEvent(t, ev, want)

		// TX write of a 60-byte frame: 99 bytes, the first 64 kept.
		t1 := time.Now()
		mosi, err := proto.TxFrameWrite(proto.SendNow(64, proto.PriorityBestEffort), bytes.Repeat([]byte{0xAB}, 60))
		if err != nil {
			t.Fatal(err)
		}
		miso = make([]byte, len(mosi))
		if err := tr.Transfer(context.Background(), mosi, miso); err != nil {
			t.Fatal(err)
		}
		ev = rec.only(t)
		want = TraceEvent{
			Node: "a", Start: t1, Duration: 20*time.Microsecond + 99*8*time.Second/15_000_000, BusStart: t1,
			Header: Header{SpaceTxFrame, DirWrite, 0x2000, ""},
			Len:    99, MOSI: mosi[:64], MISO: make([]byte, 64),
		}
		checkEvent(t, ev, want)
		if got, errs := c.Register(regs.FSTotalRxFrameCnt), c.Stats().ProtocolErrors; got != 1 || errs != 0 {
			t.Errorf("chip took %d TX frames with %d protocol errors, want 1 and 0", got, errs)
		}
	})
}

func checkEvent(t *testing.T, got, want TraceEvent) {
	t.Helper()
	if got.Node != want.Node || !got.Start.Equal(want.Start) || got.Duration != want.Duration ||
		!got.BusStart.Equal(want.BusStart) || got.Late != want.Late ||
		got.Header != want.Header || got.Len != want.Len || !bytes.Equal(got.MOSI, want.MOSI) ||
		!bytes.Equal(got.MISO, want.MISO) || (got.MISO == nil) != (want.MISO == nil) ||
		!errors.Is(got.Err, want.Err) || got.Errno != want.Errno || got.Fault != want.Fault {
		t.Errorf("event\n got %+v\nwant %+v", got, want)
	}
}

// faultErr is an injected fault the way the fault injector reports one.
type faultErr struct{ kind string }

func (e *faultErr) Error() string     { return "spifault: injected " + e.kind }
func (e *faultErr) FaultKind() string { return e.kind }

// failing is a transport whose transfers fail with err after d.
type failing struct {
	err    error
	d      time.Duration
	irq    chan struct{}
	closed bool
}

func (f *failing) Transfer(_ context.Context, tx, rx []byte) error {
	time.Sleep(f.d)
	copy(rx, tx) // garbage the trace must not keep
	return f.err
}
func (f *failing) Interrupt() <-chan struct{} { return f.irq }
func (f *failing) Close() error               { f.closed = true; return nil }

// TestTracedErrors: a failed transfer is recorded with its error, errno
// and fault kind and without MISO, and the error reaches the caller
// unchanged.
func TestTracedErrors(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		inj := fmt.Errorf("%w: %w", &faultErr{"timeout"}, fmt.Errorf("spibridge: SPI transfer timed out after 500ms: %w", syscall.ETIMEDOUT))
		inner := &failing{err: inj, d: 500 * time.Millisecond, irq: make(chan struct{})}
		rec := &memRecorder{}
		tr := NewTraced(inner, "b", rec)
		t0 := time.Now()
		mosi := proto.RxMetaRead()
		err := tr.Transfer(context.Background(), mosi, make([]byte, len(mosi)))
		if err != inj {
			t.Fatalf("Transfer returned %v, want the inner error itself", err)
		}
		checkEvent(t, rec.only(t), TraceEvent{
			Node: "b", Start: t0, Duration: 500 * time.Millisecond,
			Header: Header{SpaceRxMeta, DirRead, 0xF000, ""}, Len: 14, MOSI: mosi,
			Err: inj, Errno: syscall.ETIMEDOUT, Fault: "timeout",
		})

		// An error without errno or fault kind.
		inner.err, inner.d = errors.New("socket: peer went away"), 0
		if err := tr.Transfer(context.Background(), mosi, make([]byte, len(mosi))); err != inner.err {
			t.Fatalf("Transfer returned %v", err)
		}
		checkEvent(t, rec.only(t), TraceEvent{
			Node: "b", Start: t0.Add(500 * time.Millisecond), Header: Header{SpaceRxMeta, DirRead, 0xF000, ""},
			Len: 14, MOSI: mosi, Err: inner.err,
		})

		if tr.Interrupt() != (<-chan struct{})(inner.irq) {
			t.Error("Interrupt is not the inner transport's line")
		}
		if err := tr.Close(); err != nil || !inner.closed {
			t.Errorf("Close: %v, inner closed %v", err, inner.closed)
		}
	})
}

// TestTracePrefix: the events keep the configured prefix of MOSI and
// MISO, the whole transfer for a negative prefix, and copies (not the
// caller's buffers).
func TestTracePrefix(t *testing.T) {
	inner := &failing{}
	mosi := proto.RxFrameRead(1560)
	for _, tc := range []struct {
		opts []TraceOption
		want int
	}{{nil, DefaultTracePrefix}, {[]TraceOption{TracePrefix(4)}, 4}, {[]TraceOption{TracePrefix(0)}, 0}, {[]TraceOption{TracePrefix(-1)}, len(mosi)}} {
		rec := &memRecorder{}
		tr := NewTraced(inner, "a", rec, tc.opts...)
		miso := make([]byte, len(mosi))
		if err := tr.Transfer(context.Background(), mosi, miso); err != nil {
			t.Fatal(err)
		}
		ev := rec.only(t)
		if len(ev.MOSI) != tc.want || len(ev.MISO) != tc.want || ev.Len != len(mosi) {
			t.Errorf("prefix %d: kept %d MOSI and %d MISO bytes of %d", tc.want, len(ev.MOSI), len(ev.MISO), ev.Len)
		}
		if tc.want > 0 {
			miso[0] ^= 0xFF
			if ev.MISO[0] == miso[0] {
				t.Errorf("prefix %d: MISO aliases the caller's buffer", tc.want)
			}
		}
	}
}

func TestFaultKindAndErrno(t *testing.T) {
	wrapped := fmt.Errorf("driver: reading SYSCOUNT: %w", &faultErr{"latency"})
	if got := FaultKind(wrapped); got != "latency" {
		t.Errorf("FaultKind = %q", got)
	}
	if got := FaultKind(syscall.EIO); got != "" {
		t.Errorf("FaultKind(EIO) = %q", got)
	}
	if got := ErrnoOf(fmt.Errorf("x: %w", syscall.EBADF)); got != syscall.EBADF {
		t.Errorf("ErrnoOf = %v", got)
	}
	if got := ErrnoOf(errors.New("x")); got != 0 {
		t.Errorf("ErrnoOf = %v", got)
	}
}

// TestTracedMarksEveryFault: over the in-process bus every injected SPI
// fault kind that acted on a transfer is in its trace event, including
// those of transfers that completed (flips, latency, a stuck period that
// ended before the deadline), in the order they act.
func TestTracedMarksEveryFault(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := NewInProcess(newFakeDev(), DefaultTiming(), nil)
		defer b.Close()
		b.SetFaults(&script{faults: []SPIFault{
			{},
			{FlipMISOBits: 3, FlipSeed: 1},
			{Latency: 100 * time.Microsecond, FlipMISOBits: 1, FlipSeed: 2},
			{Stuck: time.Millisecond},
			{TimeoutBefore: true},
			{TimeoutAfter: true},
		}})
		rec := &memRecorder{}
		tr := NewTraced(b, "a", rec)
		want := []struct {
			fault string
			fails bool
		}{
			{"", false}, {FaultFlip, false}, {FaultLatency + "+" + FaultFlip, false}, {FaultStuck, false},
			{FaultTimeoutBefore, true}, {FaultTimeoutAfter, true},
		}
		for i, w := range want {
			err := tr.Transfer(context.Background(), proto.RegRead(0x0288), make([]byte, 8))
			if (err != nil) != w.fails {
				t.Errorf("transfer %d: %v, want failure %v", i, err, w.fails)
			}
		}
		rec.mu.Lock()
		defer rec.mu.Unlock()
		if len(rec.events) != len(want) {
			t.Fatalf("%d events, want %d", len(rec.events), len(want))
		}
		for i, w := range want {
			if got := rec.events[i].Fault; got != w.fault {
				t.Errorf("transfer %d: fault %q, want %q", i, got, w.fault)
			}
		}
	})
}
