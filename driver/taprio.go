package driver

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"tsnsim/chip/proto"
)

// Time-aware transmission (IEEE 802.1Qbv) in the form of Linux's taprio
// qdisc. The chip has one hardware queue that holds each frame until its
// [from, to] window opens (chip.md section 3); the driver turns the gate
// control list into those windows. For each frame Transmit:
//
//  1. classifies it: priority = 3 for gPTP (EtherType 0x88F7, the vendor
//     driver's gPTP priority), the PCP of its VLAN tag when tagged, else
//     0; traffic class = Map[priority];
//  2. takes the earliest PHC time it can start: the later of the SYSCOUNT
//     model's now plus the host-to-chip estimate (the SPI writes of the
//     frames ahead of it on the ring and its own, plus chip.md's 30 us
//     H2C budget) and the predicted end of the frame queued before it (the
//     chip's one queue sends in order: a window before that end could not
//     be met);
//  3. finds the first open interval of its class (consecutive gate
//     entries with the class's bit set are one interval, across cycle
//     boundaries too) in which the frame's wire time (preamble, frame,
//     FCS) fits after that earliest start, and gives the chip
//     [from, to] = [max(open, earliest), close - wire time];
//  4. with fail policy retry for the class, gives the next such interval
//     as the delay window.
//
// A frame that fits no interval before Horizon is dropped (TxDropped, and
// per class in TSNStats.TaprioDropped) and Transmit returns ErrNoWindow.
// The metadata priority field carries the vendor's values: 3 gPTP, 5
// VLAN-tagged, 7 other.

// ErrNoWindow: taprio found no open interval of the frame's class that
// fits it within the horizon; the frame was dropped.
var ErrNoWindow = errors.New("driver: taprio: no open interval fits the frame within the horizon")

// NumPriorities is the number of priorities Taprio.Map maps (as tc).
const NumPriorities = 16

// MaxTC is the largest number of traffic classes (gate mask bits).
const MaxTC = 8

// EtherTypePTP is the EtherType of IEEE 1588 / 802.1AS over Ethernet.
const EtherTypePTP = 0x88F7

// ethHeaderSpan is the span of a wire frame beyond its bytes: preamble
// and SFD before, inter-frame gap after.
const (
	preambleBytes = 8
	ifgBytes      = 12
)

// GateEntry is one sched-entry: the classes whose gates are open
// (bit n: class n) for Interval.
type GateEntry struct {
	Gates    uint8
	Interval time.Duration
}

// Taprio is a gate control list, as `tc qdisc ... taprio` takes it.
type Taprio struct {
	NumTC int                  // traffic classes, 1..8
	Map   [NumPriorities]uint8 // priority -> traffic class
	// BaseTime is the PHC time (ns) at which the schedule starts; cycles
	// repeat every CycleTime before and after it.
	BaseTime  int64
	CycleTime time.Duration // zero: the sum of the intervals
	Entries   []GateEntry
	// FailPolicy per class: proto.FailDrop (default) or proto.FailRetry
	// (the next open interval of the class is the delay window).
	FailPolicy [MaxTC]uint8
	// Horizon bounds how far ahead a frame's window may lie (default
	// 10 cycles; at most 2^28 ticks, where 29-bit windows become
	// ambiguous to the chip).
	Horizon time.Duration
}

// Validate checks the schedule and fills CycleTime and Horizon.
func (t *Taprio) Validate() error {
	if t.NumTC < 1 || t.NumTC > MaxTC {
		return fmt.Errorf("taprio: num_tc %d: want 1..%d", t.NumTC, MaxTC)
	}
	for p, tc := range t.Map {
		if int(tc) >= t.NumTC {
			return fmt.Errorf("taprio: map: priority %d to class %d, but num_tc is %d", p, tc, t.NumTC)
		}
	}
	if len(t.Entries) == 0 {
		return errors.New("taprio: no sched-entry")
	}
	var sum time.Duration
	for i, e := range t.Entries {
		if e.Interval <= 0 {
			return fmt.Errorf("taprio: sched-entry %d: interval %v: want > 0", i, e.Interval)
		}
		if int(e.Gates)>>t.NumTC != 0 {
			return fmt.Errorf("taprio: sched-entry %d: gate mask %#02x names a class >= num_tc %d", i, e.Gates, t.NumTC)
		}
		sum += e.Interval
	}
	if t.CycleTime == 0 {
		t.CycleTime = sum
	}
	if t.CycleTime < sum {
		return fmt.Errorf("taprio: cycle-time %v shorter than the entries' %v", t.CycleTime, sum)
	}
	if t.Horizon == 0 {
		t.Horizon = 10 * t.CycleTime
	}
	if t.Horizon < t.CycleTime {
		return fmt.Errorf("taprio: horizon %v shorter than one cycle %v", t.Horizon, t.CycleTime)
	}
	for c := range t.NumTC {
		if t.FailPolicy[c] > proto.FailRetry {
			return fmt.Errorf("taprio: class %d: fail policy %d: want 0 (drop) or 1 (retry)", c, t.FailPolicy[c])
		}
	}
	return nil
}

// span is one open interval in PHC ns, [open, close).
type span struct{ open, close int64 }

// spans returns the open intervals of class c within one cycle, as
// offsets from the cycle start (the gates stay shut from the last
// entry's end to the cycle's end when CycleTime exceeds the sum).
func (t *Taprio) spans(c int) []span {
	var out []span
	var at int64
	for _, e := range t.Entries {
		end := at + int64(e.Interval)
		if e.Gates&(1<<c) != 0 {
			if n := len(out); n > 0 && out[n-1].close == at {
				out[n-1].close = end
			} else {
				out = append(out, span{at, end})
			}
		}
		at = end
	}
	return out
}

// window finds the first open interval of class c (merged across cycle
// boundaries) in which a transmission of wire ns starting no earlier than
// earliest fits, searching until limit. It returns the window's first
// and last start times and the interval's close.
func (t *Taprio) window(c int, earliest, wire, limit int64) (from, to, closeAt int64, ok bool) {
	sp := t.spans(c)
	if len(sp) == 0 {
		return 0, 0, 0, false
	}
	cyc := int64(t.CycleTime)
	// decide judges the interval cur: fits, cannot fit before the limit
	// (stop), or neither (look further).
	decide := func(cur span) (from, to int64, fits, stop bool) {
		f := max(cur.open, earliest)
		if f > limit {
			return 0, 0, false, true
		}
		if f+wire <= cur.close {
			return f, min(cur.close, limit+wire) - wire, true, true
		}
		return 0, 0, false, false
	}
	var cur span
	have := false
	for k := floorDiv(earliest-t.BaseTime, cyc); ; k++ {
		start := t.BaseTime + k*cyc
		for _, s := range sp {
			abs := span{start + s.open, start + s.close}
			switch {
			case have && cur.close == abs.open:
				cur.close = abs.close // one interval across entries or cycles
			case have:
				if f, to, fits, stop := decide(cur); stop {
					return f, to, cur.close, fits
				}
				fallthrough
			default:
				cur, have = abs, true
			}
			if cur.close >= limit+wire { // an interval reaching past the limit decides
				f, to, fits, _ := decide(cur)
				return f, to, cur.close, fits
			}
		}
	}
}

// Open reports whether class c's gate is open at PHC time at (ns).
func (t *Taprio) Open(c int, at int64) bool {
	cyc := int64(t.CycleTime)
	off := ((at-t.BaseTime)%cyc + cyc) % cyc
	var pos int64
	for _, e := range t.Entries {
		if off < pos+int64(e.Interval) {
			return e.Gates&(1<<c) != 0
		}
		pos += int64(e.Interval)
	}
	return false
}

// OpenThroughout reports whether class c's gate is open at every point
// of [start, end] (PHC ns), checked every step ns and at both ends.
func (t *Taprio) OpenThroughout(c int, start, end, step int64) bool {
	for at := start; at < end; at += step {
		if !t.Open(c, at) {
			return false
		}
	}
	return t.Open(c, end)
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// Classify returns the priority of an Ethernet frame (no FCS) as the
// taprio map sees it, and the vendor's metadata priority: gPTP 3/3,
// VLAN-tagged PCP/5, other 0/7.
func Classify(frame []byte) (prio int, meta uint8) {
	if len(frame) < 14 {
		return 0, proto.PriorityBestEffort
	}
	et := binary.BigEndian.Uint16(frame[12:])
	if et == 0x8100 && len(frame) >= 18 {
		pcp := int(frame[14] >> 5)
		if binary.BigEndian.Uint16(frame[16:]) == EtherTypePTP {
			return int(proto.PriorityGPTP), proto.PriorityGPTP
		}
		return pcp, proto.PriorityVLAN
	}
	if et == EtherTypePTP {
		return int(proto.PriorityGPTP), proto.PriorityGPTP
	}
	return 0, proto.PriorityBestEffort
}

// ParseTaprio reads a schedule written like the arguments of
// `tc qdisc replace dev DEV parent root taprio ...` (see the README):
//
//	num_tc N  map P0 .. P15  base-time NS  [cycle-time NS]
//	sched-entry S MASK NS ...  [clockid CLOCK_TAI]
//	[fail-policy CLASS drop|retry] ...  [horizon NS]
//
// MASK is hexadecimal (with or without 0x), times are nanoseconds as tc
// takes them. map may give fewer than 16 priorities; the rest map to 0.
// tc's queues and flags have no meaning for a one-queue chip and are
// rejected, as is any clockid but CLOCK_TAI (the PHC).
func ParseTaprio(s string) (*Taprio, error) {
	f := strings.Fields(s)
	t := &Taprio{}
	gotTC := false
	num := func(i int, what string) (int64, error) {
		if i >= len(f) {
			return 0, fmt.Errorf("taprio: %s: missing value", what)
		}
		v, err := strconv.ParseInt(f[i], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("taprio: %s %q: %w", what, f[i], err)
		}
		return v, nil
	}
	for i := 0; i < len(f); {
		switch f[i] {
		case "num_tc":
			v, err := num(i+1, "num_tc")
			if err != nil {
				return nil, err
			}
			t.NumTC, gotTC = int(v), true
			i += 2
		case "map":
			i++
			for p := 0; p < NumPriorities && i < len(f); p++ {
				v, err := strconv.ParseUint(f[i], 10, 8)
				if err != nil {
					break
				}
				t.Map[p] = uint8(v)
				i++
			}
		case "base-time":
			v, err := num(i+1, "base-time")
			if err != nil {
				return nil, err
			}
			t.BaseTime = v
			i += 2
		case "cycle-time":
			v, err := num(i+1, "cycle-time")
			if err != nil {
				return nil, err
			}
			t.CycleTime = time.Duration(v)
			i += 2
		case "horizon":
			v, err := num(i+1, "horizon")
			if err != nil {
				return nil, err
			}
			t.Horizon = time.Duration(v)
			i += 2
		case "sched-entry":
			if i+3 >= len(f) {
				return nil, errors.New("taprio: sched-entry: want S MASK INTERVAL")
			}
			if f[i+1] != "S" {
				return nil, fmt.Errorf("taprio: sched-entry command %q: only S (set gates) is supported", f[i+1])
			}
			m, err := strconv.ParseUint(strings.TrimPrefix(strings.ToLower(f[i+2]), "0x"), 16, 8)
			if err != nil {
				return nil, fmt.Errorf("taprio: sched-entry mask %q: %w", f[i+2], err)
			}
			v, err := num(i+3, "sched-entry interval")
			if err != nil {
				return nil, err
			}
			t.Entries = append(t.Entries, GateEntry{Gates: uint8(m), Interval: time.Duration(v)})
			i += 4
		case "clockid":
			if i+1 >= len(f) || f[i+1] != "CLOCK_TAI" {
				return nil, errors.New("taprio: clockid: only CLOCK_TAI (the PHC) is supported")
			}
			i += 2
		case "fail-policy":
			if i+2 >= len(f) {
				return nil, errors.New("taprio: fail-policy: want CLASS drop|retry")
			}
			c, err := strconv.Atoi(f[i+1])
			if err != nil || c < 0 || c >= MaxTC {
				return nil, fmt.Errorf("taprio: fail-policy class %q: want 0..%d", f[i+1], MaxTC-1)
			}
			switch f[i+2] {
			case "drop":
				t.FailPolicy[c] = proto.FailDrop
			case "retry":
				t.FailPolicy[c] = proto.FailRetry
			default:
				return nil, fmt.Errorf("taprio: fail-policy %q: want drop or retry", f[i+2])
			}
			i += 3
		case "queues", "flags", "txtime-delay":
			return nil, fmt.Errorf("taprio: %s: not supported (the chip has one hardware queue and enforces windows itself)", f[i])
		default:
			return nil, fmt.Errorf("taprio: unknown word %q", f[i])
		}
	}
	if !gotTC {
		return nil, errors.New("taprio: num_tc missing")
	}
	if err := t.Validate(); err != nil {
		return nil, err
	}
	return t, nil
}

// String writes the schedule back in ParseTaprio's syntax.
func (t *Taprio) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "num_tc %d map", t.NumTC)
	for _, c := range t.Map {
		fmt.Fprintf(&b, " %d", c)
	}
	fmt.Fprintf(&b, " base-time %d cycle-time %d", t.BaseTime, int64(t.CycleTime))
	for _, e := range t.Entries {
		fmt.Fprintf(&b, " sched-entry S %02x %d", e.Gates, int64(e.Interval))
	}
	for c := range t.NumTC {
		if t.FailPolicy[c] == proto.FailRetry {
			fmt.Fprintf(&b, " fail-policy %d retry", c)
		}
	}
	fmt.Fprintf(&b, " horizon %d", int64(t.Horizon))
	return b.String()
}
