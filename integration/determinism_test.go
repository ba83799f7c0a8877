package integration

import (
	"bytes"
	"runtime"
	"testing"
	"testing/synctest"
	"time"

	"tsnsim/spitrace"
)

// mixedPlan is a mix of faults at every layer, all random draws.
var mixedPlan = []string{
	"spi.timeout-before:p=0.002,start=100ms",
	"spi.timeout-after:p=0.002,start=100ms",
	"spi.latency:latency=50us,jitter=200us,p=0.05",
	"spi.flip:bits=2,p=0.01",
	"irq.lost:p=0.2",
	"irq.spurious:rate=200,p=0.5",
	"cable.loss:p=0.01",
	"cable.corrupt:bits=1,p=0.01",
	"cable.delay:latency=20us,jitter=100us,p=0.1",
	"cable.unplug@b:start=700ms,dur=50ms",
	"chip.clock-drift@a:ppm=50,start=0s,dur=1s",
}

// TestSameSeedSameTrace: the same seed and plan give a byte-identical
// SPI trace file, faults and all; another seed gives another trace.
//
// The guarantee holds in virtual time on one scheduler thread: with
// several, two goroutines woken at the same emulated instant (a sender
// and a driver's SPI worker) run in either order, and the worker may find
// a frame on its ring or not. GOMAXPROCS(1) makes the scheduler's order,
// and so the whole run, repeatable. The race detector randomises the
// scheduler on purpose, so under -race the test skips; .ci/run runs it
// without.
func TestSameSeedSameTrace(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector randomises goroutine scheduling; run without -race (.ci/run does)")
	}
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	trace := func(seed int64) []byte {
		var buf bytes.Buffer
		synctest.Test(t, func(t *testing.T) {
			w := spitrace.NewWriter(&buf, time.Now())
			faultRun{specs: mixedPlan, seed: seed, frames: 800, interval: time.Millisecond, trace: w}.run(t)
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
		})
		return buf.Bytes()
	}
	first, second, other := trace(42), trace(42), trace(43)
	if len(first) == 0 || !bytes.Contains(first, []byte(`"fault":"spi.timeout`)) {
		t.Fatalf("trace of %d bytes has no injected timeout", len(first))
	}
	if !bytes.Equal(first, second) {
		a, b := bytes.Split(first, []byte("\n")), bytes.Split(second, []byte("\n"))
		for i := range min(len(a), len(b)) {
			if !bytes.Equal(a[i], b[i]) {
				t.Fatalf("traces differ at line %d of %d/%d:\n%s\n%s", i+1, len(a), len(b), a[i], b[i])
			}
		}
		t.Fatalf("traces differ in length: %d and %d lines", len(a), len(b))
	}
	if bytes.Equal(first, other) {
		t.Error("seeds 42 and 43 gave the same trace")
	}
	t.Logf("%d bytes, %d transactions, identical", len(first), bytes.Count(first, []byte("\n")))
}
