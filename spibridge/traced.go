package spibridge

import (
	"context"
	"encoding/binary"
	"errors"
	"syscall"
	"time"

	"tsnsim/chip/proto"
	"tsnsim/chip/regs"
)

// Recorder receives one TraceEvent per SPI transfer of a Traced
// transport. Record is called synchronously, on the goroutine that made
// the transfer, after the transfer returned; it must be safe for
// concurrent use (several nodes and several goroutines per bus share one
// recorder) and must not retain the event's byte slices beyond what the
// event owns (it owns them: Traced copies them). spitrace.Writer is the
// recorder that writes the --spi-trace file.
type Recorder interface {
	Record(TraceEvent)
}

// Space is the address space of an SPI transaction, decoded from its MOSI
// header (chip.md section 2). Its values are the "space" names of the
// trace file.
type Space string

// The address spaces of chip.md section 2, and SpaceInvalid for a header
// that names none of them: fewer than 3 bytes, an unknown command byte,
// or an address that is not a space of the command (a read of 0x2000, a
// write of 0xF000, 0x1004, 0x5000...).
const (
	SpaceRegRead  Space = "reg_read"
	SpaceRegWrite Space = "reg_write"
	SpaceRxMeta   Space = "rx_meta"
	SpaceRxFrame  Space = "rx_frame"
	SpaceTxFrame  Space = "tx_frame"
	SpaceInvalid  Space = "invalid"
)

// Spaces lists every Space in the order reports print them.
var Spaces = []Space{SpaceRegRead, SpaceRegWrite, SpaceRxMeta, SpaceRxFrame, SpaceTxFrame, SpaceInvalid}

// Dir is the direction of an SPI transaction, from its command byte.
type Dir string

// Directions: 0x02 is a read, 0x01 a write; anything else (or no command
// byte at all) is DirNone.
const (
	DirRead  Dir = "read"
	DirWrite Dir = "write"
	DirNone  Dir = "none"
)

// Header is the decoded MOSI header of one transaction.
type Header struct {
	Space Space
	Dir   Dir
	// Addr is the 16-bit address after the command byte (0 when the
	// transaction is shorter than a header).
	Addr uint16
	// Reg names the 32-bit register half of a register read or write,
	// "TSN_SYSCOUNT_H" style, from chip/regs; empty for other spaces and
	// for offsets the register map does not declare.
	Reg string
}

// DecodeHeader decodes the command and address of a transaction the way
// the chip's command decoder does (chip.md section 2). It looks at the
// header only: a register read of the wrong length is still SpaceRegRead
// (the chip rejects it for its length, not its address).
func DecodeHeader(mosi []byte) Header {
	if len(mosi) < proto.HeaderLen {
		return Header{Space: SpaceInvalid, Dir: DirNone}
	}
	h := Header{Space: SpaceInvalid, Dir: DirNone, Addr: binary.BigEndian.Uint16(mosi[1:])}
	switch mosi[0] {
	case proto.CmdRead:
		h.Dir = DirRead
		switch {
		case h.Addr&proto.AddrSpace == proto.AddrRegRead:
			h.Space = SpaceRegRead
		case h.Addr == proto.AddrRxMeta:
			h.Space = SpaceRxMeta
		case h.Addr == proto.AddrRxFrame:
			h.Space = SpaceRxFrame
		}
	case proto.CmdWrite:
		h.Dir = DirWrite
		switch {
		case h.Addr&proto.AddrSpace == proto.AddrRegWrite:
			h.Space = SpaceRegWrite
		case h.Addr == proto.AddrTxFrame:
			h.Space = SpaceTxFrame
		}
	}
	if h.Space == SpaceRegRead || h.Space == SpaceRegWrite {
		h.Reg = RegisterName(h.Addr & proto.RegMask)
	}
	return h
}

// RegisterName names the 32-bit register half at a 12-bit register
// address ("TSN_SYSCOUNT_H", "TSN_SYSCOUNT_L"), or "" when the register
// map declares no register there.
func RegisterName(addr uint16) string {
	d, half, ok := regs.Resolve(addr)
	if !ok {
		return ""
	}
	if half == regs.High {
		return d.Name + "_H"
	}
	return d.Name + "_L"
}

// DefaultTracePrefix is how many MOSI and MISO bytes a Traced transport
// keeps of each transfer unless told otherwise: a register access whole,
// a frame transfer's header, metadata and the start of the frame.
const DefaultTracePrefix = 64

// TraceEvent is one SPI transfer as a Traced transport saw it.
type TraceEvent struct {
	Node string
	// Start is when Transfer was called (queued for the bus); Duration
	// runs from then to the end of the transfer's bus occupancy, waiting
	// for the bus included. BusStart is when it started to occupy the
	// bus. Over a TimelineTransport (the in-process bus) these are the
	// modelled timeline, so durations are the model's even in real time;
	// over other transports BusStart is zero and Duration is how long the
	// call took. All come from the time package, so they are emulated
	// (virtual) time inside a synctest bubble.
	Start    time.Time
	Duration time.Duration
	BusStart time.Time
	// Late is how long after the modelled end the Transfer call returned
	// (wall clock): the real-time timer's lateness plus scheduling. Zero
	// in virtual time and over transports without a timeline.
	Late time.Duration
	// Call is how long the Transfer call took as the host saw it, from
	// the call to its return, over a TimelineTransport (zero otherwise:
	// Duration is the call then). In virtual time it equals Duration; in
	// real time it is Duration plus Late, less what the bus took back
	// from the transfer's start (the previous transfer's oversleep it
	// repaid, or a late wake-up of the host: EventMarker.Woke), so it
	// can be shorter than the transfer's time on the bus.
	Call time.Duration
	Header
	// Len is the full length of the transfer (MOSI and MISO have the
	// same length).
	Len int
	// MOSI and MISO are copies of the first bytes of the transfer (the
	// prefix the transport was told to keep), owned by the event. MISO
	// is nil when the transfer failed: its content is then undefined.
	MOSI, MISO []byte
	// Err is what Transfer returned.
	Err error
	// Errno is the syscall.Errno that Err wraps, 0 if none.
	Errno syscall.Errno
	// Fault is the kind of an injected fault: every kind that acted on
	// the transfer when the inner transport reports them (Timeline.Faults:
	// the in-process bus, completed flips and latencies included), else
	// the kind Err reports (FaultKind), else "".
	Fault string
}

// End is when the transfer returned.
func (e *TraceEvent) End() time.Time { return e.Start.Add(e.Duration) }

// FaultKind returns the kind of the injected fault err reports: the
// FaultKind() of the first error in err's tree that has that method (the
// fault-injecting transports' errors do), or "" when err reports none.
func FaultKind(err error) string {
	var f interface{ FaultKind() string }
	if errors.As(err, &f) {
		return f.FaultKind()
	}
	return ""
}

// ErrnoOf returns the syscall.Errno that err wraps, or 0.
func ErrnoOf(err error) syscall.Errno {
	var e syscall.Errno
	if errors.As(err, &e) {
		return e
	}
	return 0
}

// TraceOption configures a Traced transport.
type TraceOption func(*Traced)

// TracePrefix sets how many MOSI and MISO bytes of each transfer the
// events carry; negative keeps whole transfers (frames included), which
// makes big traces.
func TracePrefix(n int) TraceOption {
	return func(t *Traced) { t.prefix = n }
}

// Traced is a Transport that forwards to another transport (in-process,
// socket, spidev, fault-injecting: any) and hands one TraceEvent per
// Transfer to a Recorder. It adds no timing of its own beyond copying
// the prefixes and calling the recorder after the transfer returned.
type Traced struct {
	inner    Transport
	timeline TimelineTransport // inner, if it reports timelines
	node     string
	rec      Recorder
	prefix   int
}

// NewTraced returns tr traced as node into rec.
func NewTraced(tr Transport, node string, rec Recorder, opts ...TraceOption) *Traced {
	t := &Traced{inner: tr, node: node, rec: rec, prefix: DefaultTracePrefix}
	t.timeline, _ = tr.(TimelineTransport)
	for _, o := range opts {
		o(t)
	}
	return t
}

// Unwrap implements Unwrapper: the traced transport.
func (t *Traced) Unwrap() Transport { return t.inner }

// Transfer implements Transport: it forwards to the inner transport,
// then records the transfer, with its modelled timeline when the inner
// transport reports one (TimelineTransport).
func (t *Traced) Transfer(ctx context.Context, tx, rx []byte) error {
	start := time.Now()
	var tl Timeline
	var err error
	if t.timeline != nil {
		err = t.timeline.TransferTimeline(ctx, tx, rx, &tl)
	} else {
		err = t.inner.Transfer(ctx, tx, rx)
	}
	returned := time.Now()
	ev := TraceEvent{
		Node: t.node, Start: start, Duration: returned.Sub(start), Header: DecodeHeader(tx),
		Len: len(tx), MOSI: t.keep(tx), Err: err,
	}
	if !tl.End.IsZero() {
		ev.Start, ev.BusStart = tl.Queued, tl.Start
		ev.Duration = tl.End.Sub(tl.Queued)
		ev.Late = max(returned.Sub(tl.End), 0)
		ev.Call = returned.Sub(start)
	}
	if err == nil {
		ev.MISO = t.keep(rx)
	} else {
		ev.Errno = ErrnoOf(err)
		ev.Fault = FaultKind(err)
	}
	if tl.Faults != "" {
		ev.Fault = tl.Faults // every kind that acted, completed transfers too
	}
	t.rec.Record(ev)
	return err
}

// keep copies the prefix of b the events carry.
func (t *Traced) keep(b []byte) []byte {
	n := len(b)
	if t.prefix >= 0 {
		n = min(n, t.prefix)
	}
	return append([]byte(nil), b[:n]...)
}

// Interrupt implements Transport by forwarding to the inner transport.
func (t *Traced) Interrupt() <-chan struct{} { return t.inner.Interrupt() }

// Close implements Transport by forwarding to the inner transport.
func (t *Traced) Close() error { return t.inner.Close() }

var _ Transport = (*Traced)(nil)
