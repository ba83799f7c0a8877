package main

import (
	"bytes"
	"strings"
	"testing"

	"tsnsim/topology"
)

func TestRunFieldDriverBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"run", "--field-driver", "tx-slot,bogus"},
		{"run", "--field-driver", "tx-slot", "--tx-ring", "64"},
		{"run", "--backend", "tap", "--field-driver", "xmit-clock", "--xmit-clock", "none"},
		{"run", "--field-driver", "xmit-clock"},
		{"run", "--backend", "frames", "--field-driver", "xmit-clock"},
		{"run", "--field-driver", "lock-order"},
		{"run", "--clock-reads", "-1ms"},
	} {
		var out, errOut bytes.Buffer
		if status := run(args, &out, &errOut); status != exitUsage {
			t.Errorf("%q: status %d, want %d", args, status, exitUsage)
		}
		if errOut.Len() == 0 {
			t.Errorf("%q: no error message", args)
		}
	}
}

// TestRunFieldDriver: each field behaviour that shows without root fails
// the run and says why; the same run without the flag passes
// (TestRunFramesPasses; --clock-reads here). Frames handed up with their
// FCS are not as the peer sent them: the checker finds them UNACCOUNTED
// (exit 3); a deadlock is a failure with every frame accounted for.
func TestRunFieldDriver(t *testing.T) {
	for _, c := range []struct {
		args   []string
		status int
		want   []string
	}{
		{[]string{"--field-driver", "fcs"}, topology.ExitUnaccounted, []string{"300 not as sent", "frames handed up with their 4-byte FCS"}},
		{[]string{"--field-driver", "lock-order"}, exitFail, []string{
			"FAIL: deadlock on", "found by the lock watchdog (the run ends here)",
			"SPI worker waits for the register lock held by clock reader (get_sys_clock)", "driver field: deadlocks 1"}},
	} {
		var out, errOut bytes.Buffer
		args := append([]string{"run", "--backend", "frames", "--frames", "300"}, c.args...)
		if status := run(args, &out, &errOut); status != c.status {
			t.Errorf("%q: status %d, want %d\n%s", args, status, c.status, out.String())
		}
		for _, w := range c.want {
			if !strings.Contains(out.String(), w) {
				t.Errorf("%q: output lacks %q:\n%s", args, w, out.String())
			}
		}
		if c.status == exitFail && strings.Contains(out.String(), "UNACCOUNTED") {
			t.Errorf("%q: frames unaccounted for:\n%s", args, out.String())
		}
	}
	var out, errOut bytes.Buffer
	if status := run([]string{"run", "--backend", "frames", "--frames", "300", "--clock-reads", "1ms"}, &out, &errOut); status != 0 {
		t.Errorf("default driver with clock reads: status %d\n%s", status, out.String())
	}
	if !strings.Contains(out.String(), "driver field: clock reads ") {
		t.Errorf("no clock reads reported:\n%s", out.String())
	}
}
