package driver

import (
	"testing"
	"testing/synctest"
	"time"

	"tsnsim/chip/proto"
	"tsnsim/chip/regs"
)

// totalTransfers is every transfer the faulty transport saw.
func (f *faulty) total() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.seen {
		n += c
	}
	return n
}

// TestLostEdgesRecoveredByPoll: the interrupt line never delivers an
// edge. Frames are still drained, each burst within PollInterval plus
// the drain time of its frames, and counted as poll recoveries. (The
// poll period is kept from growing on the quiet spells between bursts;
// TestQuietPollGrows covers that.)
func TestLostEdgesRecoveredByPoll(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const poll = 5 * time.Millisecond
		r := newRig(t, Config{PollInterval: poll, IdlePollInterval: poll}, true)
		r.open(t)
		for burst := range 4 {
			time.Sleep(time.Duration(burst+1) * 1700 * time.Microsecond) // not aligned with the ticker
			start := time.Now()
			for i := range 3 {
				r.inject(uint32(burst*3+i), 200)
			}
			time.Sleep(poll + 2*time.Millisecond)
			r.mu.Lock()
			n, last := len(r.at), r.at[len(r.at)-1]
			r.mu.Unlock()
			if n != 3*(burst+1) {
				t.Fatalf("burst %d: %d frames delivered, want %d", burst, n, 3*(burst+1))
			}
			// Drain of three 204-byte frames: 3 x (metadata 27.5 us +
			// frame 130 us) plus the status read and the empty
			// metadata read, well under 1 ms.
			if d := last.Sub(start); d > poll+time.Millisecond {
				t.Errorf("burst %d delivered %v after arrival, bound %v", burst, d, poll+time.Millisecond)
			}
		}
		s := r.checkRxSettled(t)
		if s.RxPollRecoveries != 4 || s.RxPackets != 12 || s.RxErrors != 0 {
			t.Errorf("stats %+v", rxOnly(s))
		}
	})
}

// TestQuietPollGrows: on a quiet link with no interrupt edges the poll
// period grows to IdlePollInterval, so a frame behind a lost edge waits
// at most that long; the traffic it brings returns the period to
// PollInterval for the next frame.
func TestQuietPollGrows(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, Config{}, true)
		r.open(t)
		time.Sleep(time.Second + 3700*time.Microsecond) // quiet, not aligned with the ticker
		// deliver injects frame n-1 and waits, 100 us at a time, until it
		// is the nth delivered; it returns how long that took.
		deliver := func(n int, bound time.Duration) time.Duration {
			t.Helper()
			start := time.Now()
			r.inject(uint32(n-1), 100)
			for len(r.received()) < n {
				if time.Since(start) > bound {
					t.Fatalf("frame %d not delivered within %v", n, bound)
				}
				time.Sleep(100 * time.Microsecond)
			}
			return time.Since(start)
		}
		took := deliver(1, DefaultIdlePollInterval+time.Millisecond)
		if took <= DefaultPollInterval+time.Millisecond {
			t.Errorf("after a quiet second the frame came up in %v: the poll period did not grow", took)
		}
		time.Sleep(3 * time.Millisecond)
		deliver(2, DefaultPollInterval+time.Millisecond)
		if s := r.checkRxSettled(t); s.RxPollRecoveries != 2 || s.RxPackets != 2 {
			t.Errorf("stats %+v", rxOnly(s))
		}
	})
}

// TestStuckLineRecoveredByPoll: the line stays asserted after the first
// edge (no more falling edges): later frames are drained by polling.
func TestStuckLineRecoveredByPoll(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, Config{}, true)
		r.open(t)
		r.inject(0, 100)
		r.f.raise() // the one edge the line makes
		time.Sleep(time.Millisecond)
		if got := len(r.received()); got != 1 {
			t.Fatalf("%d frames after the edge", got)
		}
		for i := 1; i <= 20; i++ {
			r.inject(uint32(i), 100)
			time.Sleep(3 * time.Millisecond)
		}
		time.Sleep(DefaultPollInterval + time.Millisecond)
		s := r.checkRxSettled(t)
		if s.RxPackets != 21 || s.RxPollRecoveries == 0 {
			t.Errorf("stats %+v", rxOnly(s))
		}
	})
}

// TestSpuriousEdgesCostOneRead: an edge with nothing queued costs exactly
// one (empty) metadata read and nothing else.
func TestSpuriousEdgesCostOneRead(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, Config{PollInterval: time.Hour}, true)
		r.open(t)
		before, metas := r.f.total(), r.f.count(kindMetaRead)
		for range 5 {
			r.f.raise()
			time.Sleep(100 * time.Microsecond)
		}
		if got := r.f.count(kindMetaRead) - metas; got != 5 {
			t.Errorf("%d metadata reads for 5 spurious edges", got)
		}
		if got := r.f.total() - before; got != 5 {
			t.Errorf("%d transfers for 5 spurious edges, want 5", got)
		}
		if s := r.d.Stats(); s != (Stats{}) {
			t.Errorf("counters moved: %+v", s)
		}
	})
}

// TestIdlePollCost: an idle worker makes one TSN_RX_FIFO_STATUS_L read
// per poll tick, the period doubling from PollInterval to
// IdlePollInterval, two TSN_SYSTEM_CONTROL reads per ResetCheckInterval
// (on the first tick after it) and fifteen reads of the drop counters
// and FD_TOTAL_RX_FRAME_CNT per ChipStatsInterval, and nothing else.
func TestIdlePollCost(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, Config{}, false)
		var status int
		r.open(t)
		before := r.f.total()
		r.f.setRule(func(k xferKind, _ int) fault {
			if k == kindRegRead {
				status++
			}
			return pass
		})
		time.Sleep(time.Second - 2*time.Millisecond) // to 1 ms before the tick at 1 s
		synctest.Wait()
		// Polls at 10, 30, 70, 150 ms (the period doubling from 10 ms)
		// and every 100 ms from 250 to 950 ms; reset checks on the
		// ticks at 10, 350, 650 and 950 ms (250 ms after the last);
		// drop counters (and RX frame count, three passes) at 10 ms.
		const want = 4 + 8 + 2*4 + 3*5
		if got := r.f.total() - before; got != want || status != want {
			t.Errorf("%d transfers (%d register reads) in the first second, want %d", got, status, want)
		}
		if s := r.d.Stats(); s != (Stats{}) {
			t.Errorf("counters moved: %+v", s)
		}
	})
}

// TestOrphanFoundByPoll: a frame whose metadata entry someone else took
// (here: before Open) is found by the idle poll and discarded.
func TestOrphanFoundByPoll(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, Config{}, false)
		r.inject(0, 100)
		miso := make([]byte, proto.RxMetaReadLen)
		if err := r.chip.Transact(proto.RxMetaRead(), miso); err != nil {
			t.Fatal(err)
		}
		r.open(t)
		time.Sleep(DefaultPollInterval + time.Millisecond)
		s := r.d.Stats()
		if s.RxOrphans != 1 || s.RxErrors != 1 || s.RxPackets != 0 {
			t.Errorf("stats %+v", rxOnly(s))
		}
		if st := r.chip.Register(regs.TSNRxFIFOStatus); st != 0 {
			t.Errorf("TSN_RX_FIFO_STATUS %#x after the poll", st)
		}
		r.inject(1, 100)
		time.Sleep(time.Millisecond)
		if got := r.seqs(); !equalSeqs(got, []uint32{1}) {
			t.Errorf("delivered %v", got)
		}
	})
}
