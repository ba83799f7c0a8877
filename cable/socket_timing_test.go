package cable

import (
	"context"
	"path/filepath"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"tsnsim/chip"
)

// sockArrival is one frame reaching a stub chip: when, and the sof the
// cable reported.
type sockArrival struct {
	at, sof time.Time
	n       int
}

// sockChipStub stands for the local chip at the other end of the cable.
type sockChipStub struct{ ch chan sockArrival }

func (s *sockChipStub) ConnectPHY(chip.Wire) {}
func (s *sockChipStub) ReceivePHY(frame []byte, sof time.Time) {
	s.ch <- sockArrival{time.Now(), sof, len(frame)}
}

// TestSocketIngressPacing: frames read from the socket are placed on the
// local line's timeline (preamble, frame, inter-frame gap; never
// overlapping) and then cross the local cable, which adds propagation
// and serialisation: arrival times at the chip, in virtual time, are
// exactly those of chip.md's 100 Mbit/s figures.
func TestSocketIngressPacing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := SocketEndConfig{Mode: Dgram}
		cfg.setDefaults()
		p := &SocketPort{cfg: cfg, log: zap.NewNop(), wired: make(chan struct{}), changed: make(chan struct{})}
		stub := &sockChipStub{ch: make(chan sockArrival, 8)}
		c := Connect(stub, p, Config{})
		defer c.Close()

		const byteTime = 80 * time.Nanosecond // 100 Mbit/s
		t0 := time.Now()
		p.deliver(newRxBuffer(60))   // 64 bytes with FCS
		p.deliver(newRxBuffer(1000)) // 1004, queued behind the first
		time.Sleep(time.Millisecond)
		t1 := time.Now()
		p.deliver(newRxBuffer(42)) // padded to 60: 64 with FCS; line idle again
		time.Sleep(time.Millisecond)

		sof1 := t0.Add(8 * byteTime)
		sof2 := sof1.Add((64 + 12 + 8) * byteTime)
		sof3 := t1.Add(8 * byteTime)
		for i, want := range []sockArrival{
			{sof1.Add(DefaultPropagation + 64*byteTime), sof1.Add(DefaultPropagation), 64},
			{sof2.Add(DefaultPropagation + 1004*byteTime), sof2.Add(DefaultPropagation), 1004},
			{sof3.Add(DefaultPropagation + 64*byteTime), sof3.Add(DefaultPropagation), 64},
		} {
			got := <-stub.ch
			if !got.at.Equal(want.at) || !got.sof.Equal(want.sof) || got.n != want.n {
				t.Errorf("frame %d: arrived at t0%+v (sof t0%+v, %d bytes), want t0%+v (sof t0%+v, %d bytes)", i,
					got.at.Sub(t0), got.sof.Sub(t0), got.n, want.at.Sub(t0), want.sof.Sub(t0), want.n)
			}
		}
		if s := p.Stats(); s.RxFrames != 3 || s.RxBytes != 60+1000+42 || s.RxPadded != 1 {
			t.Errorf("stats %+v", s)
		}
	})
}

// TestStreamConnectBackoff: with no peer, stream-connect redials after
// 100, 200, 400 ms and then every 800 ms (ReconnectMin 100 ms,
// ReconnectMax 800 ms), in virtual time; Close stops it at once.
func TestStreamConnectBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg, err := ParseSocketEnd("stream-connect:unix:" + filepath.Join(t.TempDir(), "nobody.sock"))
		if err != nil {
			t.Fatal(err)
		}
		cfg.ReconnectMin, cfg.ReconnectMax = 100*time.Millisecond, 800*time.Millisecond
		p, err := OpenSocketEnd(context.Background(), cfg, zaptest.NewLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		// Dials at 0, 100, 300, 700, 1500, 2300 ms.
		for _, step := range []struct {
			at    time.Duration
			dials uint64
		}{{50, 1}, {150, 2}, {650, 3}, {750, 4}, {1450, 4}, {1550, 5}, {2250, 5}, {2350, 6}} {
			time.Sleep(start.Add(step.at * time.Millisecond).Sub(time.Now()))
			synctest.Wait()
			if got := p.Stats().DialErrors; got != step.dials {
				t.Fatalf("at %d ms: %d failed dials, want %d", step.at, got, step.dials)
			}
		}
		if err := p.Close(); err != nil {
			t.Fatal(err)
		}
		if !time.Now().Equal(start.Add(2350 * time.Millisecond)) {
			t.Fatalf("Close took %v of virtual time", time.Since(start)-2350*time.Millisecond)
		}
	})
}
