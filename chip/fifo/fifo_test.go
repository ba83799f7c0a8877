package fifo

import "testing"

func TestCapacityAndDrops(t *testing.T) {
	f := New[int](3, nil) // every item one unit
	if f.Capacity() != 3 || f.Limit() != 3 || f.Len() != 0 || f.Used() != 0 || f.Full() {
		t.Fatalf("new FIFO: %+v full=%v", f.Stats(), f.Full())
	}
	if _, ok := f.Peek(); ok {
		t.Fatal("Peek on empty FIFO succeeded")
	}
	if _, ok := f.Pop(); ok {
		t.Fatal("Pop on empty FIFO succeeded")
	}
	for i := range 3 {
		if !f.Fits(i) || !f.Push(i) {
			t.Fatalf("Push(%d) into %+v refused", i, f.Stats())
		}
	}
	if !f.Full() || f.Fits(9) {
		t.Fatalf("after 3 pushes: Full %v Fits %v, want true false", f.Full(), f.Fits(9))
	}
	if f.Push(3) || f.Push(4) {
		t.Fatal("Push into a full FIFO succeeded")
	}
	want := Stats{Pushed: 3, Drops: 2, DroppedUnits: 2, Len: 3, Used: 3, Limit: 3, Capacity: 3}
	if got := f.Stats(); got != want {
		t.Fatalf("Stats = %+v, want %+v", got, want)
	}
	if v, ok := f.Peek(); !ok || v != 0 {
		t.Fatalf("Peek = %d %v, want 0 true", v, ok)
	}
	if f.Len() != 3 {
		t.Fatalf("Peek removed an item: Len %d", f.Len())
	}
	for i := range 3 {
		if v, ok := f.Pop(); !ok || v != i {
			t.Fatalf("Pop = %d %v, want %d true", v, ok, i)
		}
	}
	want = Stats{Pushed: 3, Popped: 3, Drops: 2, DroppedUnits: 2, Limit: 3, Capacity: 3}
	if got := f.Stats(); got != want {
		t.Fatalf("Stats after draining = %+v, want %+v", got, want)
	}
}

// words is the unit function of the RX frame FIFO: 16-byte words.
func words(b []byte) int { return (len(b) + 15) / 16 }

func TestUnits(t *testing.T) {
	f := New(100, words)           // 100 words = 1600 bytes
	if !f.Push(make([]byte, 64)) { // 4 words
		t.Fatal("64-byte frame refused")
	}
	if !f.Push(make([]byte, 1518)) { // 95 words (1518/16 = 94.9)
		t.Fatal("1518-byte frame refused")
	}
	if got := f.Used(); got != 4+95 {
		t.Fatalf("Used = %d, want 99", got)
	}
	if f.Full() {
		t.Fatal("Full with 1 word free")
	}
	if f.Fits(make([]byte, 17)) || f.Push(make([]byte, 17)) { // 2 words
		t.Fatal("17-byte frame (2 words) accepted with 1 word free")
	}
	if !f.Push(make([]byte, 16)) { // exactly 1 word
		t.Fatal("16-byte frame (1 word) refused with 1 word free")
	}
	if !f.Full() {
		t.Fatal("not Full at 100 of 100 words")
	}
	s := f.Stats()
	if s.Drops != 1 || s.DroppedUnits != 2 || s.Len != 3 || s.Used != 100 {
		t.Fatalf("Stats = %+v, want 1 drop of 2 units, 3 queued, 100 used", s)
	}
	if v, _ := f.Pop(); len(v) != 64 {
		t.Fatalf("popped %d bytes, want 64", len(v))
	}
	if got := f.Used(); got != 96 {
		t.Fatalf("Used after popping 4 words = %d, want 96", got)
	}
}

func TestLimit(t *testing.T) {
	f := New[int](10, nil)
	f.SetLimit(2)
	if f.Limit() != 2 || f.Capacity() != 10 {
		t.Fatalf("Limit %d Capacity %d, want 2 10", f.Limit(), f.Capacity())
	}
	f.Push(1)
	f.Push(2)
	if !f.Full() || f.Push(3) {
		t.Fatal("limit 2 not enforced")
	}
	// Limits above capacity and below zero are clamped.
	f.SetLimit(11)
	if f.Limit() != 10 {
		t.Fatalf("SetLimit(11) on capacity 10: Limit %d, want 10", f.Limit())
	}
	f.SetLimit(-5)
	if f.Limit() != 0 {
		t.Fatalf("SetLimit(-5): Limit %d, want 0", f.Limit())
	}
	if f.Push(4) {
		t.Fatal("push accepted with limit 0")
	}
	// Lowering the limit below the occupancy keeps what is queued.
	if f.Len() != 2 || !f.Full() {
		t.Fatalf("Len %d Full %v after lowering the limit, want 2 true", f.Len(), f.Full())
	}
	f.SetLimit(3)
	if !f.Push(5) || f.Push(6) {
		t.Fatal("limit 3 with 2 queued: want exactly one more push")
	}
	if s := f.Stats(); s.Drops != 3 || s.Pushed != 3 || s.Len != 3 {
		t.Fatalf("Stats = %+v, want 3 pushed, 3 drops, 3 queued", s)
	}
	for _, want := range []int{1, 2, 5} {
		if v, _ := f.Pop(); v != want {
			t.Fatalf("Pop = %d, want %d", v, want)
		}
	}
}

// TestOrderAcrossCompaction pushes and pops many items in patterns that
// exercise both the reset-when-empty path and the compaction of a long
// consumed prefix, checking order and accounting throughout.
func TestOrderAcrossCompaction(t *testing.T) {
	f := New[int](1000, func(v int) int { return v%3 + 1 })
	next, expect := 0, 0
	used := 0
	push := func() bool {
		u := next%3 + 1
		ok := f.Push(next)
		if ok {
			used += u
			next++
		}
		return ok
	}
	pop := func() {
		v, ok := f.Pop()
		if !ok || v != expect {
			t.Fatalf("Pop = %d %v, want %d true", v, ok, expect)
		}
		used -= v%3 + 1
		expect++
	}
	for round := range 200 {
		// Push a burst, pop most of it: the head advances well past 64
		// with items still queued, which triggers compaction.
		for range 50 + round%37 {
			if !push() {
				break
			}
		}
		for range 40 + round%23 {
			if f.Len() == 0 {
				break
			}
			pop()
		}
		if f.Len() != next-expect || f.Used() != used {
			t.Fatalf("round %d: Len %d Used %d, want %d %d", round, f.Len(), f.Used(), next-expect, used)
		}
		if v, ok := f.Peek(); f.Len() > 0 && (!ok || v != expect) {
			t.Fatalf("round %d: Peek = %d %v, want %d", round, v, ok, expect)
		}
	}
	for f.Len() > 0 {
		pop()
	}
	if f.Used() != 0 || expect != next {
		t.Fatalf("drained: Used %d, popped %d of %d", f.Used(), expect, next)
	}
	s := f.Stats()
	if s.Pushed != uint64(next) || s.Popped != uint64(next) {
		t.Fatalf("Stats = %+v, want %d pushed and popped", s, next)
	}
	if len(f.items) > 2*f.capacity {
		t.Errorf("backing slice grew to %d items for a FIFO of at most %d", len(f.items), f.capacity)
	}
}

// TestSteadyStateDoesNotGrow: a FIFO kept one item deep for a long run
// must not keep growing its backing array.
func TestSteadyStateDoesNotGrow(t *testing.T) {
	f := New[int](4, nil)
	f.Push(-1)
	for i := range 100_000 {
		f.Push(i)
		if v, ok := f.Pop(); !ok || v != i-1 {
			t.Fatalf("Pop = %d %v, want %d", v, ok, i-1)
		}
	}
	if cap(f.items) > 1024 {
		t.Fatalf("backing array has capacity %d after 100000 single-item cycles", cap(f.items))
	}
}

// TestDiscard: Discard takes the head as Pop does (units, counts, order)
// without returning it, and reports an empty FIFO.
func TestDiscard(t *testing.T) {
	f := New(100, words)
	if f.Discard() {
		t.Fatal("Discard on an empty FIFO reported an item")
	}
	f.Push(make([]byte, 64))   // 4 words
	f.Push(make([]byte, 1518)) // 95 words
	if !f.Discard() {
		t.Fatal("Discard found no item")
	}
	if s := f.Stats(); s.Used != 95 || s.Len != 1 || s.Popped != 1 {
		t.Fatalf("after Discard: %+v, want 95 words, 1 queued, 1 popped", s)
	}
	if v, _ := f.Pop(); len(v) != 1518 {
		t.Fatalf("next Pop returned %d bytes, want the 1518-byte frame", len(v))
	}
	g := New[int](3, nil)
	g.Push(7)
	g.Push(8)
	if !g.Discard() || g.Used() != 1 {
		t.Fatalf("one-unit FIFO after Discard: used %d, want 1", g.Used())
	}
	if v, _ := g.Pop(); v != 8 {
		t.Fatalf("Pop after Discard = %d, want 8", v)
	}
}
