// Package spitrace records every SPI transaction of a topology as one
// JSON line (the --spi-trace file of tsnsim run), reads such files back
// and summarises them (tsnsim trace).
//
// # Wiring
//
// A Writer is a spibridge.Recorder; spibridge.NewTraced wraps any
// transport and feeds it. Tracing a topology is three lines: create the
// writer with the topology's epoch, wrap each node's transport, close the
// writer after the topology:
//
//	w, err := spitrace.Create(path, cfg.Chip.Epoch) // epoch: set before topology.New
//	tr := spibridge.NewTraced(bus, name, w)         // per node: give tr to driver.New
//	err = w.Close()                                 // after topology.Close: flushes, closes the file
//
// # File format
//
// One JSON object per line (JSON Lines), one line per Transfer:
//
//	{"t":0,"node":"a","space":"reg_read","dir":"read","addr":"0x3288","reg":"TSN_SYSCOUNT_H","len":8,"dur":24266,"start":0,"late_ns":21042,"result":"ok","mosi":"0232880000000000","miso":"0000000000000000"}
//
// t is when Transfer was called (queued for the bus), start when the
// transfer began to occupy the bus and t+dur when it released it, all in
// nanoseconds of emulated time since the writer's epoch, from the bus's
// modelled timeline: in real time too, dur-(start-t) is the model's
// overhead + 8n/f. late_ns is how much later, on the wall clock, the call
// returned than t+dur: how far the run was behind the model there (timer
// lateness and scheduling, and with run --model-wakeups the host wake-ups
// the bus could not take back from the transfer's start; absent in
// virtual time).
// Transports without a timeline (socket, spidev) write no start and the
// call's duration as dur. space and dir are decoded from the MOSI header
// (spibridge.DecodeHeader), addr is its 16-bit address, reg the register
// half's name where the register map declares it. len is the full
// transfer length; mosi and miso are hex of its first bytes (64 by
// default, spibridge.TracePrefix). A failed transfer has result "error",
// err (the error text), errno (its syscall.Errno name, such as
// ETIMEDOUT, when it wraps one) and no miso. fault names the injected
// fault kinds that acted on a transfer, failed or not, "+"-joined in the
// order they act (spi.stuck, spi.timeout-before, spi.latency,
// spi.timeout-after, spi.flip: "spi.latency+spi.flip"); over the socket
// and spidev only the kind a failure reports is known.
//
// The chip's PPS edges (chip.md section 4) are lines of their own, with
// event "pps", the edge's emulated time t, its sequence number seq (from
// 1) and the SYSCOUNT it fired at:
//
//	{"t":1000000000,"node":"a","event":"pps","seq":1,"syscount":125000000}
//
// Readers tell them from transfers by event (absent on transfers).
//
// # Order and determinism
//
// Lines are ordered by completion time (t+dur). Transfers that complete
// at the same instant are ordered by node, then start, then the line's
// bytes, so the file does not depend on which goroutine recorded first:
// in virtual time (testing/synctest) the same run gives the same file,
// byte for byte. See Writer for how, and for the real-time caveat.
package spitrace

import (
	"encoding/hex"
	"fmt"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"tsnsim/spibridge"
)

// Results of a transfer.
const (
	ResultOK    = "ok"
	ResultError = "error"
)

// ErrnoOther is the key of Summary error counts for failed transfers
// whose error wraps no errno.
const ErrnoOther = "other"

// EventPPS is the event of a PPS edge's line.
const EventPPS = "pps"

// Record is one line of a trace file: a transfer, or (Event set) an
// event of the chip that is not a transfer.
type Record struct {
	T    int64  `json:"t"`    // ns since the epoch when Transfer was called, or of the event
	Node string `json:"node"` // node name
	// Event is EventPPS for a PPS edge (then only T, Node, Seq and
	// Syscount are set), empty for a transfer.
	Event    string `json:"event,omitempty"`
	Seq      uint64 `json:"seq,omitempty"`      // PPS: pulse number, from 1
	Syscount uint64 `json:"syscount,omitempty"` // PPS: SYSCOUNT at the edge

	Space spibridge.Space `json:"space"`
	Dir   spibridge.Dir   `json:"dir"`
	Addr  Addr            `json:"addr"`
	Reg   string          `json:"reg,omitempty"`
	Len   int             `json:"len"` // full transfer length, bytes
	Dur   int64           `json:"dur"` // ns from t to the end of the transfer's bus occupancy
	// Start is when the transfer began to occupy the bus, ns since the
	// epoch, on the bus's modelled timeline (absent when the transport
	// reports no timeline: then dur is how long the call took).
	Start *int64 `json:"start,omitempty"`
	// LateNs is how long after the modelled end the call returned, wall
	// clock (timer lateness and scheduling; 0 in virtual time).
	LateNs int64 `json:"late_ns,omitempty"`
	// CallNs is how long the call took as the host saw it, wall clock,
	// when that differs from dur (real time: see CallTime).
	CallNs *int64 `json:"call_ns,omitempty"`
	Result string `json:"result"`
	Err    string `json:"err,omitempty"`
	Errno  string `json:"errno,omitempty"`
	Fault  string `json:"fault,omitempty"`
	MOSI   Hex    `json:"mosi"`
	MISO   Hex    `json:"miso,omitempty"`
}

// End is the completion time of the transfer, ns since the epoch.
func (r *Record) End() int64 { return r.T + r.Dur }

// BusStart is when the transfer began to occupy the bus, ns since the
// epoch: Start when the record has it, else T (queueing then counts as
// occupancy).
func (r *Record) BusStart() int64 {
	if r.Start != nil {
		return *r.Start
	}
	return r.T
}

// Occupancy is how long the transfer occupied the bus, ns: the modelled
// duration of the transfer itself, without queueing.
func (r *Record) Occupancy() int64 { return r.End() - r.BusStart() }

// CallTime is how long the Transfer call took as the host saw it, ns:
// call_ns when the record has it, else dur. In real time a call takes
// its queueing, its time on the bus and late_ns, less what the bus took
// back from its start (the oversleep of the transfer before it, which
// the bus repays, or with run --model-wakeups a late wake-up of the
// host): then it can return sooner than its time on the bus.
func (r *Record) CallTime() int64 {
	if r.CallNs != nil {
		return *r.CallNs
	}
	return r.Dur
}

// Failed reports whether the transfer returned an error.
func (r *Record) Failed() bool { return r.Result == ResultError }

// Hex is a byte string that JSON carries as lower-case hex.
type Hex []byte

// MarshalText implements encoding.TextMarshaler.
func (h Hex) MarshalText() ([]byte, error) { return hex.AppendEncode(nil, h), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (h *Hex) UnmarshalText(b []byte) error {
	out, err := hex.AppendDecode(nil, b)
	if err != nil {
		return fmt.Errorf("spitrace: bad hex bytes: %w", err)
	}
	*h = out
	return nil
}

// Addr is the 16-bit address of a transaction header; JSON carries it
// as "0x3288".
type Addr uint16

// MarshalText implements encoding.TextMarshaler.
func (a Addr) MarshalText() ([]byte, error) { return fmt.Appendf(nil, "0x%04x", uint16(a)), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (a *Addr) UnmarshalText(b []byte) error {
	v, err := strconv.ParseUint(string(b), 0, 16)
	if err != nil {
		return fmt.Errorf("spitrace: bad address %q: want a 16-bit number such as 0x3288", b)
	}
	*a = Addr(v)
	return nil
}

// ppsLine is the line of a PPS edge: the fields of Record it sets.
type ppsLine struct {
	T        int64  `json:"t"`
	Node     string `json:"node"`
	Event    string `json:"event"`
	Seq      uint64 `json:"seq"`
	Syscount uint64 `json:"syscount"`
}

// RecordOf converts a transport's event into a trace record, with times
// relative to epoch (monotonic clock readings are used where both
// times have them, so wall-clock steps do not show).
func RecordOf(ev spibridge.TraceEvent, epoch time.Time) Record {
	r := Record{
		T: int64(ev.Start.Sub(epoch)), Node: ev.Node,
		Space: ev.Space, Dir: ev.Dir, Addr: Addr(ev.Addr), Reg: ev.Reg,
		Len: ev.Len, Dur: int64(ev.Duration), Result: ResultOK,
		MOSI: ev.MOSI, MISO: ev.MISO, LateNs: int64(ev.Late),
	}
	if !ev.BusStart.IsZero() {
		start := int64(ev.BusStart.Sub(epoch))
		r.Start = &start
	}
	if ev.Call != 0 && ev.Call != ev.Duration {
		call := int64(ev.Call)
		r.CallNs = &call
	}
	if ev.Err != nil {
		r.Result = ResultError
		r.Err = ev.Err.Error()
		r.Errno = ErrnoName(ev.Errno)
	}
	r.Fault = ev.Fault
	return r
}

// ErrnoName is the C name of e ("ETIMEDOUT"), "errno N" for numbers
// without a name, "" for 0.
func ErrnoName(e syscall.Errno) string {
	if e == 0 {
		return ""
	}
	if n := unix.ErrnoName(e); n != "" {
		return n
	}
	return "errno " + strconv.Itoa(int(e))
}
