package integration

import (
	"testing"
	"testing/synctest"
	"time"

	"tsnsim/driver"
)

// TestScenario2XmitClock is chip.md section 6, scenario 2: the field
// driver read SYSCOUNT over SPI in its transmit path. Every transmit then
// queues for the one bus behind the SPI worker's frame transfers, and
// the bus carries three register reads per frame more. The driver core's
// design (XmitClockNone) never touches SPI from Transmit. Same fast
// bidirectional load of small frames (an ARP/ping storm) both ways.
func TestScenario2XmitClock(t *testing.T) {
	type outcome struct {
		reads, errs         uint64
		wait, maxWait       time.Duration
		timeouts, delivered uint64
		elapsed             time.Duration
	}
	measure := func(xmit driver.XmitClock, faults ...string) outcome {
		var o outcome
		synctest.Test(t, func(t *testing.T) {
			res := faultRun{specs: faults, seed: 1, frames: 3000, interval: 250 * time.Microsecond, size: 60, xmit: xmit}.run(t)
			for i, n := range res.topo.Nodes {
				s := n.Driver.Stats()
				o.reads += s.XmitClockReads
				o.errs += s.XmitClockErrors
				o.wait += s.XmitClockWait
				o.maxWait = max(o.maxWait, s.XmitClockMaxWait)
				o.timeouts += n.Bus.Stats().Timeouts
				o.delivered += res.received[1-i].Received
			}
			o.elapsed = res.elapsed
		})
		return o
	}
	none, spi := measure(driver.XmitClockNone), measure(driver.XmitClockSPI)
	t.Logf("xmit-clock none: %+v", none)
	t.Logf("xmit-clock spi:  %+v", spi)
	if none.reads != 0 || none.wait != 0 {
		t.Errorf("the driver core's design read the clock in transmit: %+v", none)
	}
	if spi.reads != 6000 || spi.maxWait == 0 {
		t.Errorf("xmit-clock spi: want 6000 reads that waited for the bus, got %+v", spi)
	}
	if spi.elapsed <= none.elapsed {
		t.Errorf("the same load took %v with clock reads in transmit and %v without", spi.elapsed, none.elapsed)
	}
	if none.delivered != 6000 {
		t.Errorf("xmit-clock none delivered %d of 6000", none.delivered)
	}

	// One slow transfer (a 700 ms latency spike on node a's bus, as a
	// descheduled SPI thread would make) times out by itself; with clock
	// reads in Transmit, the transmits queued behind it wait for it (and
	// time out too, -110, when the wait crosses their own timeout, as on
	// the board), and the stack's transmit path stalls.
	spike := "spi.latency@a:latency=700ms,count=1,start=200ms"
	none, spi = measure(driver.XmitClockNone, spike), measure(driver.XmitClockSPI, spike)
	t.Logf("spike, xmit-clock none: %+v", none)
	t.Logf("spike, xmit-clock spi:  %+v", spi)
	if none.timeouts != 1 || none.errs != 0 {
		t.Errorf("xmit-clock none: want only the slow transfer to time out: %+v", none)
	}
	// A transmit queued behind the slow transfer waits for it: about
	// the 500 ms timeout. Whether that wait crosses its own timeout
	// (-110) depends on microseconds of queueing order (the worker's
	// periodic register reads shift it), so the wait is what is checked.
	if spi.maxWait < 450*time.Millisecond || (spi.errs == 0) != (spi.timeouts == none.timeouts) {
		t.Errorf("xmit-clock spi: no transmit waited behind the slow transfer: %+v", spi)
	}
}
