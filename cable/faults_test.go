package cable

import (
	"bytes"
	"math/bits"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"tsnsim/chip"
)

// port is a PHY port that records what it receives.
type port struct {
	wire chip.Wire
	mu   sync.Mutex
	got  [][]byte
	sofs []time.Time
	at   []time.Time
}

func (p *port) ConnectPHY(w chip.Wire) { p.wire = w }

func (p *port) ReceivePHY(frame []byte, sof time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.got = append(p.got, bytes.Clone(frame))
	p.sofs = append(p.sofs, sof)
	p.at = append(p.at, time.Now())
}

// frameScript hands out frame faults in order, then none.
type frameScript struct {
	mu     sync.Mutex
	faults []FrameFault
}

func (s *frameScript) Frame(n int) FrameFault {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.faults) == 0 {
		return FrameFault{}
	}
	f := s.faults[0]
	s.faults = s.faults[1:]
	return f
}

var _ Faults = (*frameScript)(nil)

func frame(n int, seed byte) []byte {
	f := make([]byte, n)
	for i := range f {
		f[i] = seed + byte(i)
	}
	return f
}

// TestCableFaults: unplugged and lost frames are counted and never
// arrive; a corrupted frame arrives with exactly the flipped bits; a
// delayed frame arrives late and holds back the next one (no reordering);
// the direction's invariant holds; the other direction is untouched.
func TestCableFaults(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, b := &port{}, &port{}
		c := Connect(a, b, Config{})
		src := &frameScript{faults: []FrameFault{
			{Unplugged: true}, {Drop: true}, {FlipBits: 3, FlipSeed: 7}, {Delay: time.Millisecond}, {},
		}}
		if err := c.SetFaults(0, src); err != nil {
			t.Fatal(err)
		}
		if err := c.SetFaults(2, src); err == nil {
			t.Error("SetFaults(2) accepted")
		}
		sent := make([][]byte, 5)
		wire := 100 * 8 * time.Second / DefaultLinkBitsPerSec // 8 us
		start := time.Now()
		for i := range sent {
			sent[i] = frame(100, byte(i*16))
			a.wire.Send(bytes.Clone(sent[i]), time.Now())
			time.Sleep(20 * time.Microsecond)
		}
		b.wire.Send(frame(100, 0xEE), time.Now())
		time.Sleep(10 * time.Millisecond)
		c.Close()

		ab, ba := c.Stats()
		if want := (Stats{Frames: 3, Bytes: 300, LostInjected: 1, LostUnplugged: 1, Corrupted: 1}); ab != want {
			t.Errorf("a->b stats %+v, want %+v", ab, want)
		}
		if ab.Frames+ab.LostInjected+ab.LostUnplugged+ab.LostAtClose != 5 {
			t.Errorf("a->b invariant broken: %+v for 5 frames", ab)
		}
		if ba != (Stats{Frames: 1, Bytes: 100}) {
			t.Errorf("b->a stats %+v", ba)
		}
		if len(b.got) != 3 {
			t.Fatalf("b received %d frames, want 3", len(b.got))
		}
		flipped := 0
		for i := range b.got[0] {
			flipped += bits.OnesCount8(b.got[0][i] ^ sent[2][i])
		}
		if flipped != 3 {
			t.Errorf("corrupted frame differs in %d bits, want 3", flipped)
		}
		if !bytes.Equal(b.got[1], sent[3]) || !bytes.Equal(b.got[2], sent[4]) {
			t.Error("delayed frames reordered or changed")
		}
		prop := DefaultPropagation
		sof3 := start.Add(60 * time.Microsecond)
		if want := sof3.Add(prop + time.Millisecond); !b.sofs[1].Equal(want) || !b.at[1].Equal(want.Add(wire)) {
			t.Errorf("delayed frame: sof %v, delivered %v; want %v, %v", b.sofs[1].Sub(start), b.at[1].Sub(start),
				want.Sub(start), want.Add(wire).Sub(start))
		}
		if want := b.sofs[1].Add(wire); !b.sofs[2].Equal(want) {
			t.Errorf("frame behind the delayed one: sof %v, want %v (right after it)", b.sofs[2].Sub(start), want.Sub(start))
		}
	})
}

// TestCableFaultsRemoved: SetFaults(nil) stops the faults.
func TestCableFaultsRemoved(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, b := &port{}, &port{}
		c := Connect(a, b, Config{})
		defer c.Close()
		c.SetFaults(0, &frameScript{faults: []FrameFault{{Drop: true}, {Drop: true}}})
		a.wire.Send(frame(64, 1), time.Now())
		c.SetFaults(0, nil)
		a.wire.Send(frame(64, 2), time.Now())
		time.Sleep(time.Millisecond)
		if ab, _ := c.Stats(); ab.LostInjected != 1 || ab.Frames != 1 {
			t.Errorf("stats %+v, want 1 lost, 1 delivered", ab)
		}
	})
}
