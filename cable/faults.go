package cable

import (
	"fmt"
	"math/rand/v2"
	"time"
)

// Faults decides the fate of each frame entering one direction of a
// cable. The fault package implements it; a nil Faults (the default)
// costs one atomic load per frame.
type Faults interface {
	// Frame is called once per frame sent into the direction, with the
	// frame's length (incl. FCS), from the sending chip's transmitter. It
	// must not block.
	Frame(n int) FrameFault
}

// FrameFault is what happens to one frame. The zero value delivers it
// unchanged.
type FrameFault struct {
	// Unplugged loses the frame: the cable is unplugged (LostUnplugged).
	Unplugged bool
	// Drop loses the frame in the medium (LostInjected).
	Drop bool
	// FlipBits inverts that many distinct bits of the frame (FCS
	// included) at positions drawn from a PCG seeded with FlipSeed; the
	// frame is delivered (Corrupted) and the receiver's FCS check drops
	// it. Capped at the frame's bit count.
	FlipBits int
	FlipSeed uint64
	// Delay is added to the frame's propagation. Order is kept: frames
	// behind a delayed one arrive after it.
	Delay time.Duration
}

// SetFaults sets the fault source of the direction carrying frames sent
// by port from (0: the first port given to Connect, 1: the second); nil
// removes it. Safe while frames flow.
func (c *Cable) SetFaults(from int, f Faults) error {
	var d *direction
	switch from {
	case 0:
		d = c.ab
	case 1:
		d = c.ba
	default:
		return fmt.Errorf("cable: no port %d (0 or 1)", from)
	}
	if f == nil {
		d.faults.Store(nil)
		return nil
	}
	d.faulted.Store(true)
	d.faults.Store(&f)
	return nil
}

// applyFaults decides about f; false means the frame is lost (and
// counted).
func (d *direction) applyFaults(src Faults, f *flight) bool {
	ff := src.Frame(len(f.frame))
	switch {
	case ff.Unplugged:
		d.count(func(s *Stats) { s.LostUnplugged++ })
		return false
	case ff.Drop:
		d.count(func(s *Stats) { s.LostInjected++ })
		return false
	}
	if ff.FlipBits > 0 && len(f.frame) > 0 {
		flipBits(f.frame, ff.FlipBits, ff.FlipSeed)
		f.corrupt = true
	}
	f.extra = max(ff.Delay, 0)
	return true
}

// flipBits inverts n distinct bits of b at positions drawn from PCG(seed)
// (n capped at the bit count).
func flipBits(b []byte, n int, seed uint64) {
	total := 8 * len(b)
	n = min(n, total)
	r := rand.New(rand.NewPCG(seed, 0xca_b1e))
	if 4*n >= total {
		for _, p := range r.Perm(total)[:n] {
			b[p/8] ^= 1 << (p % 8)
		}
		return
	}
	seen := make(map[int]bool, n)
	for len(seen) < n {
		if p := r.IntN(total); !seen[p] {
			seen[p] = true
			b[p/8] ^= 1 << (p % 8)
		}
	}
}
