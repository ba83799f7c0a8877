package integration

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// sweepRows are the rows of TestFaultSweep: every fault kind of issue 9
// item 1 at every rate, each alone, then all mixed.
var sweepRows = []struct {
	name  string
	specs []string
}{
	{"timeout-before 1%", []string{"spi.timeout-before:p=0.01"}},
	{"timeout-before 5%", []string{"spi.timeout-before:p=0.05"}},
	{"timeout-before 10%", []string{"spi.timeout-before:p=0.1"}},
	{"timeout-before 20%", []string{"spi.timeout-before:p=0.2"}},
	{"timeout-before 50%", []string{"spi.timeout-before:p=0.5"}},
	{"timeout-after 1%", []string{"spi.timeout-after:p=0.01"}},
	{"timeout-after 5%", []string{"spi.timeout-after:p=0.05"}},
	{"timeout-after 10%", []string{"spi.timeout-after:p=0.1"}},
	{"timeout-after 20%", []string{"spi.timeout-after:p=0.2"}},
	{"timeout-after 50%", []string{"spi.timeout-after:p=0.5"}},
	{"timeout mixed 1%", []string{"spi.timeout-before:p=0.005", "spi.timeout-after:p=0.005"}},
	{"timeout mixed 5%", []string{"spi.timeout-before:p=0.025", "spi.timeout-after:p=0.025"}},
	{"timeout mixed 10%", []string{"spi.timeout-before:p=0.05", "spi.timeout-after:p=0.05"}},
	{"timeout mixed 20%", []string{"spi.timeout-before:p=0.1", "spi.timeout-after:p=0.1"}},
	{"timeout mixed 50%", []string{"spi.timeout-before:p=0.25", "spi.timeout-after:p=0.25"}},
	{"flip 0.1%", []string{"spi.flip:p=0.001"}},
	{"flip 1%", []string{"spi.flip:p=0.01"}},
	{"flip 5%", []string{"spi.flip:p=0.05"}},
	{"flip 1% bits=3", []string{"spi.flip:p=0.01,bits=3"}},
	{"irq lost 20%", []string{"irq.lost:p=0.2"}},
	{"irq spurious", []string{"irq.spurious:rate=2000"}},
	{"irq stuck", []string{"irq.stuck:start=100ms,dur=200ms"}},
	{"cable loss 5%", []string{"cable.loss:p=0.05"}},
	{"cable corrupt 5%", []string{"cable.corrupt:p=0.05,bits=3"}},
	{"cable unplug", []string{"cable.unplug:start=100ms,dur=100ms"}},
	{"all mixed", []string{"spi.timeout-before:p=0.05", "spi.timeout-after:p=0.05", "spi.flip:p=0.01",
		"irq.lost:p=0.1", "irq.spurious:rate=500", "cable.loss:p=0.02", "cable.corrupt:p=0.02,bits=2",
		"spi.stuck:start=200ms,dur=30ms", "cable.unplug:start=250ms,dur=30ms"}},
}

// sweepSeeds is the number of seeds per row: TSNSIM_SWEEP_SEEDS, default
// 20 (CI); the full sweep (README) runs 200.
func sweepSeeds(t *testing.T) int {
	if v := os.Getenv("TSNSIM_SWEEP_SEEDS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("TSNSIM_SWEEP_SEEDS=%q: want a positive number", v)
		}
		return n
	}
	return 20
}

// sweepFrames is the frames each way of one sweep run:
// TSNSIM_SWEEP_FRAMES, default 300, or 100 under the race detector (it
// makes the sweep several times slower, and CI runs the suite with it).
func sweepFrames(t *testing.T) uint64 {
	if v := os.Getenv("TSNSIM_SWEEP_FRAMES"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil || n < 1 {
			t.Fatalf("TSNSIM_SWEEP_FRAMES=%q: want a positive number", v)
		}
		return n
	}
	if raceEnabled {
		return 100
	}
	return 300
}

// TestFaultSweep runs each row of sweepRows over many seeds in virtual
// time, bidirectional paced traffic (sweepFrames frames of 500 B each
// way at one per ms), and requires for every seed:
// both drivers open, every frame delivered once or counted in exactly
// one counter (the audit), no frame delivered twice, out of order or
// corrupted (the checker). It logs per row the seeds run and the seeds
// that failed, and the first failures. Rows run in parallel (they are
// independent bubbles).
func TestFaultSweep(t *testing.T) {
	seeds, frames := sweepSeeds(t), sweepFrames(t)
	var mu sync.Mutex
	table := map[string]string{}
	t.Cleanup(func() {
		var b strings.Builder
		fmt.Fprintf(&b, "fault sweep: %d seeds per row, %d frames each way\n", seeds, frames)
		fmt.Fprintf(&b, "%-22s %6s %6s\n", "row", "seeds", "failed")
		for _, r := range sweepRows {
			if line, ok := table[r.name]; ok {
				fmt.Fprintf(&b, "%-22s %s\n", r.name, line)
			}
		}
		t.Log(b.String())
	})
	for _, row := range sweepRows {
		t.Run(row.name, func(t *testing.T) {
			t.Parallel()
			failed := 0
			for seed := int64(1); seed <= int64(seeds); seed++ {
				var errs []error
				synctest.Test(t, func(t *testing.T) {
					_, errs = faultRun{specs: row.specs, seed: seed, frames: frames,
						interval: time.Millisecond, size: 500}.runErrs(t)
				})
				if len(errs) > 0 {
					failed++
					if failed <= 3 {
						t.Errorf("seed %d: %d violations, first: %v", seed, len(errs), errs[0])
					}
				}
			}
			t.Logf("%s: %d seeds, %d failed", row.name, seeds, failed)
			mu.Lock()
			table[row.name] = fmt.Sprintf("%6d %6d", seeds, failed)
			mu.Unlock()
		})
	}
}
