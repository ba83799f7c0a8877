package integration

import (
	"fmt"
	"os"
	"testing"
	"testing/synctest"
	"time"
)

// TestGoodputUnderTimeouts prints the goodput per direction under SPI
// timeouts (half timeout-before, half timeout-after) at 0, 1, 5 and 20 %
// of transfers: 2000 frames of 500 B each way offered at one per ms, in
// virtual time, seed 1; goodput is the bytes received over the span from
// the first to the last arrival. A figure for the notes, not a check (set
// TSNSIM_FIGURES=1 to run it).
func TestGoodputUnderTimeouts(t *testing.T) {
	if os.Getenv("TSNSIM_FIGURES") == "" {
		t.Skip("set TSNSIM_FIGURES=1 to print the goodput figures")
	}
	for _, p := range []float64{0, 0.01, 0.05, 0.2} {
		var specs []string
		if p > 0 {
			specs = []string{fmt.Sprintf("spi.timeout-before:p=%g", p/2), fmt.Sprintf("spi.timeout-after:p=%g", p/2)}
		}
		synctest.Test(t, func(t *testing.T) {
			res := faultRun{specs: specs, seed: 1, frames: 2000, interval: time.Millisecond, size: 500}.run(t)
			line := fmt.Sprintf("SPI timeouts %4.1f%%:", 100*p)
			for i := range 2 {
				arr := res.arrivals[1-i]
				if len(arr) < 2 {
					line += fmt.Sprintf("  %s->%s: %d frames", string(rune('a'+i)), string(rune('b'-i)), len(arr))
					continue
				}
				span := arr[len(arr)-1] - arr[0]
				mbit := float64(res.received[1-i].Bytes) * 8 / span.Seconds() / 1e6
				line += fmt.Sprintf("  %s->%s: %d/2000 frames, %.2f Mbit/s over %v", string(rune('a'+i)), string(rune('b'-i)),
					res.received[1-i].Received, mbit, span.Round(time.Millisecond))
			}
			t.Log(line)
		})
	}
}
