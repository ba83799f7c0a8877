package topology

import (
	"errors"
	"fmt"
	"testing"
)

// TestVerdict: the verdict line and exit status of each class, and how
// imbalances, losses and failures combine.
func TestVerdict(t *testing.T) {
	im := &Imbalance{Direction: "a->b", Op: "==", Left: 643, Right: 642,
		Equation: "chip b: 643 frames accepted + 0 queued before != 633 read by the driver + 9 queued"}
	for _, tc := range []struct {
		name   string
		v      func() *Verdict
		line   string
		status int
	}{
		{"clean", func() *Verdict { return &Verdict{} }, "CLEAN", ExitClean},
		{"loss", func() *Verdict {
			v := &Verdict{}
			v.AddLosses(Loss{657, "dropped at chip b RX FIFO (full)"}, Loss{0, "nowhere"},
				Loss{4000, "dropped in tap qv-a TX queue (kernel)"}, Loss{610, "dropped in tap qv-a TX queue (kernel)"})
			return v
		}, "LOSS: 657 dropped at chip b RX FIFO (full), 4610 dropped in tap qv-a TX queue (kernel)", ExitLoss},
		{"failure", func() *Verdict {
			v := &Verdict{}
			v.Add(errors.New("open a: budget exhausted"))
			v.Add(errors.New("second"))
			return v
		}, "LOSS: no frame counted lost; run failed: open a: budget exhausted (+1 more, listed above)", ExitLoss},
		{"unaccounted", func() *Verdict {
			v := &Verdict{}
			v.AddLosses(Loss{3, "lost on the cable a->b (injected)"})
			v.Add(fmt.Errorf("not an imbalance"))
			v.Add(im)
			v.Add(&Imbalance{Direction: "b->a", Op: "<=", Left: 5, Right: 2, Equation: "x"})
			return v
		}, "UNACCOUNTED: a->b: chip b: 643 frames accepted + 0 queued before != 633 read by the driver + 9 queued off by 1; 1 more equations off (listed above)", ExitUnaccounted},
	} {
		v := tc.v()
		if got := v.Line(); got != tc.line {
			t.Errorf("%s: line %q, want %q", tc.name, got, tc.line)
		}
		if got := v.ExitStatus(); got != tc.status {
			t.Errorf("%s: status %d, want %d", tc.name, got, tc.status)
		}
	}
	if got, want := im.Error(), "a->b: "+im.Equation+" (off by 1)"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}
