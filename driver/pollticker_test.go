package driver

import (
	"testing"
	"testing/synctest"
	"time"
)

// TestPollTickerMatchesTicker: in virtual time, pollTicker.ready reports
// a tick exactly when a plain ticker started at the same instant has one
// pending, whether the looks come often, exactly on the ticks, or
// periods late (skipped ticks), and whether the tick is taken by ready
// or by a receive on the channel (took).
func TestPollTickerMatchesTicker(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const period = 10 * time.Millisecond
		start := time.Now()
		p := newPollTicker(period, period)
		defer p.stop()
		ref := time.NewTicker(period)
		defer ref.Stop()
		steps := []time.Duration{
			3 * time.Millisecond, 7 * time.Millisecond, 0, 10 * time.Millisecond, time.Millisecond,
			25 * time.Millisecond, 0, 4 * time.Millisecond, 1, 5*time.Millisecond - 1, 10 * time.Millisecond,
			35 * time.Millisecond, 9 * time.Millisecond, 999 * time.Microsecond, time.Microsecond, 0,
		}
		ticks := 0
		for i, d := range steps {
			time.Sleep(d)
			want := ready(ref.C)
			var got bool
			if i%5 == 4 {
				// Taken by a receive, as the worker's select does.
				select {
				case v := <-p.t.C:
					p.took(v)
					got = true
				default:
				}
			} else {
				got = p.ready()
			}
			if got != want {
				t.Fatalf("step %d (after %v, at %v): pollTicker %v, ticker %v", i, d, time.Since(start), got, want)
			}
			if got {
				ticks++
			}
		}
		if ticks < 6 {
			t.Errorf("only %d ticks seen: the steps do not exercise the ticker", ticks)
		}
	})
}
