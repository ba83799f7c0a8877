package clock

import (
	"testing"
	"testing/synctest"
	"time"
)

// TestStep: a step moves SYSCOUNT by its worth of ticks at once, forward
// or backward (clamped at 0), and the counter runs on at its rate.
func TestStep(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := New(time.Now(), 0, 0)
		time.Sleep(time.Second)
		c.Step(time.Millisecond)
		if got, want := c.Now(), uint64(125_000_000+125_000); got != want {
			t.Errorf("after +1ms step: %d, want %d", got, want)
		}
		time.Sleep(time.Second)
		if got, want := c.Now(), uint64(250_000_000+125_000); got != want {
			t.Errorf("1s later: %d, want %d", got, want)
		}
		c.Step(-500 * time.Millisecond)
		if got, want := c.Now(), uint64(187_500_000+125_000); got != want {
			t.Errorf("after -500ms step: %d, want %d", got, want)
		}
		if at := c.TimeOf(c.Now() + 10); time.Until(at) != 80*time.Nanosecond {
			t.Errorf("TimeOf(now+10 ticks) is %v away, want 80ns", time.Until(at))
		}
		c.Step(-time.Hour)
		if got := c.Now(); got != 0 {
			t.Errorf("after stepping below 0: %d, want 0", got)
		}
	})
}

// TestSetDriftPPM: changing the drift keeps SYSCOUNT continuous and
// changes its rate from then on; DriftPPM reports it.
func TestSetDriftPPM(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := New(time.Now(), 0, 0)
		time.Sleep(time.Second)
		c.SetDriftPPM(100)
		if got := c.Now(); got != 125_000_000 {
			t.Errorf("at the change: %d, want 125000000 (no jump)", got)
		}
		if c.DriftPPM() != 100 {
			t.Errorf("DriftPPM() = %v", c.DriftPPM())
		}
		time.Sleep(time.Second)
		if got, want := c.Now(), uint64(125_000_000+125_012_500); got != want {
			t.Errorf("1s at +100ppm: %d, want %d", got, want)
		}
		at := c.TimeOf(c.Now() + 1_000_000)
		if got := c.At(at); got < c.Now()+1_000_000 || c.At(at.Add(-time.Nanosecond)) >= c.Now()+1_000_000 {
			t.Errorf("TimeOf under drift: At(%v) = %d", at, got)
		}
		c.SetDriftPPM(0)
		before := c.Now()
		time.Sleep(time.Second)
		if got := c.Now() - before; got != 125_000_000 {
			t.Errorf("1s after restoring 0 ppm: advanced %d, want 125000000", got)
		}
	})
}
