package integration

import (
	"runtime"
	"testing"
	"testing/synctest"
	"time"
)

// soakPlan mixes faults at every layer at rates a link survives for
// minutes: roughly one SPI timeout every few seconds per node, lost and
// spurious edges, MISO and cable bit errors, cable loss, delay, an unplug
// and a stuck bus.
var soakPlan = []string{
	"spi.timeout-before:p=0.00005",
	"spi.timeout-after:p=0.00005",
	"spi.latency:latency=50us,jitter=500us,p=0.01",
	"spi.flip:bits=1,p=0.0005",
	"irq.lost:p=0.05",
	"irq.spurious:rate=50,p=0.5",
	"cable.loss:p=0.001",
	"cable.corrupt:bits=2,p=0.001",
	"cable.delay:latency=20us,jitter=200us,p=0.05",
	"cable.unplug@a:start=5m,dur=2s",
	"spi.stuck@b:start=7m,dur=300ms",
	"chip.clock-drift@a:ppm=30,start=1m,dur=5m",
}

// TestSoakMixedFaults runs continuous bidirectional traffic for over ten
// minutes of emulated time under a mixed fault plan at every layer: the
// frame accounting holds in both directions, the heap does not grow
// between minute 2 and minute 10, and synctest proves no goroutine is
// left behind.
func TestSoakMixedFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("ten minutes of emulated time; skipped with -short")
	}
	synctest.Test(t, func(t *testing.T) {
		var heap [2]uint64
		sampled := make(chan struct{})
		go func() {
			defer close(sampled)
			for i, at := range []time.Duration{2 * time.Minute, 8 * time.Minute} {
				time.Sleep(at)
				var m runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&m)
				heap[i] = m.HeapAlloc
			}
		}()
		// One frame every 5 ms each way: 625 s. Under the race detector
		// (go test -race ./... must finish within Go's 10-minute limit on
		// a busy machine) one every 20 ms: the same ten minutes of faults
		// with a quarter of the frames.
		frames, interval := uint64(125_000), 5*time.Millisecond
		if raceEnabled {
			frames, interval = frames/4, 4*interval
		}
		res := faultRun{specs: soakPlan,
			seed: 7, frames: frames, interval: interval, size: 0}.run(t)
		<-sampled
		t.Logf("%v emulated; received %d and %d of %d; heap %d KiB at 2 min, %d KiB at 10 min; faults %v",
			res.elapsed.Round(time.Second), res.received[0].Received, res.received[1].Received, frames,
			heap[0]>>10, heap[1]>>10, res.counts)
		if res.elapsed < 10*time.Minute {
			t.Errorf("ran %v of emulated time, want at least 10 minutes", res.elapsed)
		}
		// The test's own record of arrival times grows by 16 bytes a
		// frame; allow that plus 4 MiB.
		if growth := int64(heap[1]) - int64(heap[0]); growth > 4<<20+int64(2*frames*8) {
			t.Errorf("heap grew by %d KiB from minute 2 to minute 10", growth>>10)
		}
		for i := range 2 {
			if res.received[i].Received < frames*9/10 {
				t.Errorf("node %d received %d of %d", i, res.received[i].Received, frames)
			}
		}
	})
}
