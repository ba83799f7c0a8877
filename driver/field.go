package driver

import (
	"fmt"
	"strings"
	"sync"
	"time"

	"tsnsim/chip/proto"
)

// Field selects behaviours of the vendor's field driver (chip.md section
// 6), so that each field failure can be reproduced on the emulator and
// compared with the driver core's design. The zero value is the driver
// core itself; docs/field-failures.md maps each behaviour onto what the
// board showed.
type Field uint8

// The field driver's behaviours, one per failure of chip.md section 6.
const (
	// FieldTxSlot is failure 1: one TX slot; a frame offered while the
	// slot is taken (queued, or being written by the SPI worker) is
	// reported sent (NETDEV_TX_OK) and dropped, counted in TxSlotDrops
	// (the board counted it nowhere). The queue is never stopped.
	FieldTxSlot Field = 1 << iota
	// FieldXmitClock is failure 2: Transmit reads SYSCOUNT over SPI in
	// the equivalent of softirq context. The atomic-sleep detector
	// reports each such transfer (AtomicSleepBugs) and the aftermath is
	// modelled: SPI completions are lost for FieldAftermath (every
	// transfer then times out with ETIMEDOUT, LostCompletions) and TX
	// stalls. Implies XmitClockSPI.
	FieldXmitClock
	// FieldLockOrder is failure 3: the register path takes the register
	// lock and then the TX-queue lock, the TX path the TX-queue lock and
	// then the register lock. Register reads during heavy TX deadlock;
	// the lock watchdog reports the cycle (Deadlocks, Deadlock).
	FieldLockOrder
	// FieldFCS is failure 4: received frames are handed up with their
	// 4-byte FCS (RxBytes counts it too).
	FieldFCS
)

// FieldAftermath is how long SPI completions stay lost after a blocking
// transfer in atomic context (FieldXmitClock): the field log shows -110
// timeouts "for seconds" after the BUG. [model]
const FieldAftermath = 3 * time.Second

var fieldNames = []struct {
	f    Field
	name string
}{
	{FieldTxSlot, "tx-slot"},
	{FieldXmitClock, "xmit-clock"},
	{FieldLockOrder, "lock-order"},
	{FieldFCS, "fcs"},
}

// FieldNames lists the behaviours as ParseField and String spell them.
func FieldNames() []string {
	names := make([]string, len(fieldNames))
	for i, n := range fieldNames {
		names[i] = n.name
	}
	return names
}

// ParseField parses a comma-separated list of behaviours (FieldNames);
// "all" selects every one, "" or "none" none.
func ParseField(s string) (Field, error) {
	var f Field
	if s == "" || s == "none" {
		return 0, nil
	}
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "all" {
			for _, n := range fieldNames {
				f |= n.f
			}
			continue
		}
		found := false
		for _, n := range fieldNames {
			if n.name == part {
				f |= n.f
				found = true
			}
		}
		if !found {
			return 0, fmt.Errorf("driver: unknown field-driver behaviour %q (want a list of %s, or all)", part, strings.Join(FieldNames(), ", "))
		}
	}
	return f, nil
}

// String spells f as ParseField reads it.
func (f Field) String() string {
	if f == 0 {
		return "none"
	}
	var parts []string
	for _, n := range fieldNames {
		if f&n.f != 0 {
			parts = append(parts, n.name)
		}
	}
	return strings.Join(parts, ",")
}

// Has reports whether every behaviour of g is selected in f.
func (f Field) Has(g Field) bool { return f&g == g }

// fieldState is the state of the field driver's behaviours; its own
// mutex, never held across a transfer or a driver lock.
type fieldState struct {
	mu sync.Mutex

	// xmit-clock: lost completions after a BUG.
	lostUntil time.Time     // completions lost until then
	ctrl      chan struct{} // the SPI controller, held while a lost completion is waited for
	bugs      uint64
	lost      uint64
	firstBug  string // the first BUG's report

	// TX progress, for the stall figure.
	txFailing  bool
	stallStart time.Time
	maxStall   time.Duration

	// lock-order.
	graph    lockGraph
	regLock  *fieldLock
	txLock   *fieldLock
	deadlock chan string // the first deadlock's report, then closed
	reported bool
	dead     uint64

	// clock reader.
	readers               sync.WaitGroup
	clockReads, clockErrs uint64
}

func (d *Driver) initField() {
	f := &d.fld
	f.ctrl = make(chan struct{}, 1)
	f.regLock = f.graph.newLock("register lock")
	f.txLock = f.graph.newLock("TX-queue lock")
	f.deadlock = make(chan string, 1)
	if d.cfg.Field.Has(FieldTxSlot) {
		d.cfg.TxRingSize = 1
	}
	if d.cfg.Field.Has(FieldXmitClock) {
		d.cfg.XmitClock = XmitClockSPI
	}
	if d.cfg.Field&(FieldXmitClock|FieldLockOrder) != 0 {
		d.tr = &fieldTransport{Transport: d.tr, d: d}
	}
}

// Deadlock delivers the lock watchdog's report of the first deadlock it
// finds (FieldLockOrder), once.
func (d *Driver) Deadlock() <-chan string { return d.fld.deadlock }

// upLen is the length of a received frame of n bytes (FCS included) as
// it is handed up: without the FCS, or with it for FieldFCS.
func (d *Driver) upLen(n int) int {
	if d.cfg.Field.Has(FieldFCS) {
		return n
	}
	return n - proto.FCSLen
}

// fieldStats adds the field counters to a snapshot.
func (d *Driver) fieldStats(s *Stats) {
	f := &d.fld
	f.mu.Lock()
	defer f.mu.Unlock()
	s.AtomicSleepBugs, s.LostCompletions = f.bugs, f.lost
	s.TxMaxStall = f.maxStall
	if f.txFailing {
		s.TxMaxStall = max(s.TxMaxStall, time.Since(f.stallStart))
	}
	s.Deadlocks = f.dead
	s.ClockReads, s.ClockReadErrors = f.clockReads, f.clockErrs
}

// FieldSummary is one report line of the field driver's counters, empty
// when none of them moved.
func (s Stats) FieldSummary() string {
	var parts []string
	if s.TxSlotDrops > 0 {
		parts = append(parts, fmt.Sprintf("TX slot drops %d (reported sent, dropped)", s.TxSlotDrops))
	}
	if s.AtomicSleepBugs > 0 || s.LostCompletions > 0 {
		parts = append(parts, fmt.Sprintf("BUG: scheduling while atomic %d; SPI transfers timed out (-110) %d; longest TX stall %v",
			s.AtomicSleepBugs, s.LostCompletions, s.TxMaxStall.Round(time.Millisecond)))
	}
	if s.Deadlocks > 0 {
		parts = append(parts, fmt.Sprintf("deadlocks %d", s.Deadlocks))
	}
	if s.ClockReads > 0 || s.ClockReadErrors > 0 {
		parts = append(parts, fmt.Sprintf("clock reads %d, failed %d", s.ClockReads, s.ClockReadErrors))
	}
	if len(parts) == 0 {
		return ""
	}
	return "field: " + strings.Join(parts, "; ")
}

// Field is the field-driver behaviours the driver runs with.
func (d *Driver) Field() Field { return d.cfg.Field }
