package integration

import (
	"fmt"
	"testing"
	"testing/synctest"
	"time"
)

// TestOpenUnderTimeouts starts a topology with SPI timeouts from t=0 at 20
// and 50 % of transfers (before, after), 20 seeds each, in virtual time:
// every start-up must succeed within the default Open budget, and the
// run after it must account for every frame. It logs the start-up time
// (both drivers' Open) per row: min, mean, max.
func TestOpenUnderTimeouts(t *testing.T) {
	const seeds = 20
	for _, kind := range []string{"timeout-before", "timeout-after"} {
		for _, p := range []float64{0.2, 0.5} {
			spec := fmt.Sprintf("spi.%s:p=%g", kind, p)
			t.Run(spec, func(t *testing.T) {
				var lo, hi, sum time.Duration
				for seed := int64(1); seed <= seeds; seed++ {
					var res faultResult
					synctest.Test(t, func(t *testing.T) {
						res = faultRun{specs: []string{spec}, seed: seed, frames: 10, interval: time.Millisecond, size: 100}.run(t)
					})
					if seed == 1 || res.startup < lo {
						lo = res.startup
					}
					hi = max(hi, res.startup)
					sum += res.startup
				}
				t.Logf("%s: start-up over %d seeds: min %v, mean %v, max %v", spec, seeds,
					lo.Round(time.Millisecond), (sum / seeds).Round(time.Millisecond), hi.Round(time.Millisecond))
			})
		}
	}
}
