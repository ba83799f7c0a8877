// Package fifo provides the bounded FIFOs of the chip model: the host TX
// FIFO, the RX frame FIFO and the RX metadata FIFO.
//
// A FIFO measures its occupancy in units chosen by its owner (entries for
// the metadata FIFO, 16-byte words for the frame FIFO) and counts every
// item it refuses, so that the registers built on it can expose occupancy
// and drops exactly. A FIFO is not safe for concurrent use: the chip
// serialises access under its own lock.
package fifo

// FIFO is a bounded first-in first-out queue of T.
type FIFO[T any] struct {
	items    []T
	head     int
	units    func(T) int // nil: one unit per item
	capacity int
	limit    int
	used     int

	pushed, popped, drops, droppedUnits uint64
}

// New returns an empty FIFO that holds at most capacity units, where units
// reports the size of one item (nil means every item is one unit).
func New[T any](capacity int, units func(T) int) *FIFO[T] {
	return &FIFO[T]{units: units, capacity: capacity, limit: capacity}
}

// Capacity returns the hard capacity in units.
func (f *FIFO[T]) Capacity() int { return f.capacity }

// SetLimit lowers the effective capacity to n units (a register-controlled
// threshold). Values above the hard capacity, or below 0, are clamped.
func (f *FIFO[T]) SetLimit(n int) {
	f.limit = min(max(n, 0), f.capacity)
}

// Limit returns the effective capacity in units.
func (f *FIFO[T]) Limit() int { return f.limit }

// Fits reports whether v can be pushed without exceeding the limit.
func (f *FIFO[T]) Fits(v T) bool { return f.used+f.size(v) <= f.limit }

// size is how many units v takes: 1 without a units function (no call,
// no copy of v).
func (f *FIFO[T]) size(v T) int {
	if f.units == nil {
		return 1
	}
	return f.units(v)
}

// Push appends v if it fits, and otherwise counts it as dropped and
// returns false.
func (f *FIFO[T]) Push(v T) bool {
	n := f.size(v)
	if f.used+n > f.limit {
		f.drops++
		f.droppedUnits += uint64(n)
		return false
	}
	if f.head > 0 && f.head == len(f.items) {
		f.items, f.head = f.items[:0], 0
	} else if f.head > 64 && f.head*2 >= len(f.items) {
		n := copy(f.items, f.items[f.head:])
		clear(f.items[n:])
		f.items, f.head = f.items[:n], 0
	}
	f.items = append(f.items, v)
	f.used += n
	f.pushed++
	return true
}

// Peek returns the oldest item without removing it.
func (f *FIFO[T]) Peek() (v T, ok bool) {
	if f.head == len(f.items) {
		return v, false
	}
	return f.items[f.head], true
}

// Front returns a pointer to the oldest item, for updating it in place,
// or nil when empty. The pointer is valid until the next Push or Pop.
func (f *FIFO[T]) Front() *T {
	if f.head == len(f.items) {
		return nil
	}
	return &f.items[f.head]
}

// Pop removes and returns the oldest item.
func (f *FIFO[T]) Pop() (v T, ok bool) {
	if f.head == len(f.items) {
		return v, false
	}
	v = f.items[f.head]
	var zero T
	f.items[f.head] = zero
	f.head++
	f.used -= f.size(v)
	f.popped++
	return v, true
}

// Discard removes the oldest item without returning it (Pop without
// the copy out); it reports false when the FIFO is empty.
func (f *FIFO[T]) Discard() bool {
	if f.head == len(f.items) {
		return false
	}
	f.used -= f.size(f.items[f.head])
	var zero T
	f.items[f.head] = zero
	f.head++
	f.popped++
	return true
}

// Len returns the number of items queued.
func (f *FIFO[T]) Len() int { return len(f.items) - f.head }

// Used returns the occupancy in units.
func (f *FIFO[T]) Used() int { return f.used }

// Full reports whether no further unit fits under the limit.
func (f *FIFO[T]) Full() bool { return f.used >= f.limit }

// Stats is a snapshot of a FIFO's accounting.
type Stats struct {
	Pushed, Popped, Drops, DroppedUnits uint64
	Len, Used, Limit, Capacity          int
}

// Stats returns the FIFO's counters and occupancy.
func (f *FIFO[T]) Stats() Stats {
	return Stats{
		Pushed: f.pushed, Popped: f.popped, Drops: f.drops, DroppedUnits: f.droppedUnits,
		Len: f.Len(), Used: f.used, Limit: f.limit, Capacity: f.capacity,
	}
}
