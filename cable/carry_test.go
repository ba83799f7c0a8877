package cable

import (
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"tsnsim/chip"
)

// TestCarriedLikeQueued: frames sent one after another, as a chip's
// transmitter sends them (each at its start of frame), arrive at the
// same emulated instants, with the same start-of-frame times and in the
// same order whether the sender's goroutine carries them or the
// direction's queue does (carries off, or a fault source set that does
// nothing); carried frames never touch the queue.
func TestCarriedLikeQueued(t *testing.T) {
	const n, size = 6, 200
	run := func(t *testing.T, carries, faulted bool) (sofs, at []time.Duration) {
		synctest.Test(t, func(t *testing.T) {
			a, b := &port{}, &port{}
			c := Connect(a, b, Config{LinkBitsPerSec: 100_000_000})
			defer c.Close()
			c.ab.carries = carries
			if faulted {
				if err := c.SetFaults(0, &frameScript{}); err != nil {
					t.Fatal(err)
				}
			}
			t0 := time.Now()
			gap := c.ab.wireTime(size + 8 + 12) // frame, preamble, inter-frame gap
			for k := range n {
				sof := t0.Add(time.Duration(k)*gap + 3*time.Microsecond*time.Duration(k/2)) // back to back, some with idle time between
				time.Sleep(time.Until(sof))
				a.wire.Send(frame(size, byte(k)), sof)
				if carries && !faulted && c.ab.queued.Load() != 0 {
					t.Errorf("frame %d queued", k)
				}
			}
			time.Sleep(time.Millisecond)
			b.mu.Lock()
			defer b.mu.Unlock()
			if len(b.got) != n {
				t.Fatalf("%d of %d frames arrived", len(b.got), n)
			}
			for k := range n {
				if b.got[k][0] != byte(k) {
					t.Errorf("frame %d arrived in place %d", b.got[k][0], k)
				}
				sofs = append(sofs, b.sofs[k].Sub(t0))
				at = append(at, b.at[k].Sub(t0))
			}
			if want := b.sofs[0].Add(c.ab.wireTime(size)); !b.at[0].Equal(want) {
				t.Errorf("first frame arrived at %v, want its start of frame plus its wire time, %v", b.at[0].Sub(t0), want.Sub(t0))
			}
		})
		return sofs, at
	}
	wantSofs, wantAt := run(t, false, false)
	for _, tc := range []struct {
		name             string
		carries, faulted bool
	}{{"carried", true, false}, {"queued after a fault source", true, true}} {
		t.Run(tc.name, func(t *testing.T) {
			sofs, at := run(t, tc.carries, tc.faulted)
			for k := range wantAt {
				if sofs[k] != wantSofs[k] || at[k] != wantAt[k] {
					t.Errorf("frame %d: sof %v, arrived %v; queued: %v, %v", k, sofs[k], at[k], wantSofs[k], wantAt[k])
				}
			}
		})
	}
}

// TestCloseWhileCarrying: a frame still on the wire when the cable
// closes is counted lost at close, not delivered, and Close waits for
// its carrier in virtual time too.
func TestCloseWhileCarrying(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, b := &port{}, &port{}
		c := Connect(a, b, Config{LinkBitsPerSec: 100_000_000})
		c.ab.carries = true
		var wg sync.WaitGroup
		wg.Go(func() { a.wire.Send(frame(1500, 0), time.Now()) }) // 120 us on the wire
		time.Sleep(10 * time.Microsecond)
		c.Close()
		wg.Wait()
		if ab, _ := c.Stats(); ab.LostAtClose != 1 || ab.Frames != 0 || len(b.got) != 0 {
			t.Errorf("%+v, %d delivered; want the frame lost at close", ab, len(b.got))
		}
	})
}

// TestSendsOnLine: only a chip's frames are carried; a socket end's go
// through the queue.
func TestSendsOnLine(t *testing.T) {
	ch := chip.New(chip.Config{})
	if !sendsOnLine(ch) || sendsOnLine(&port{}) {
		t.Error("sendsOnLine: want a chip only")
	}
	c := Connect(ch, &port{}, Config{})
	defer c.Close()
	if !c.ab.carries || c.ba.carries {
		t.Errorf("carries a->b %v, b->a %v; want the chip's direction only", c.ab.carries, c.ba.carries)
	}
}
