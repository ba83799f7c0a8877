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
	// descheduled SPI thread would make) times out by itself at its
	// 500 ms deadline. With clock reads in Transmit, the transmits queued
	// behind it wait for the bus that long, but, as spi_sync on Linux,
	// the wait is not timed: they do not time out, the stack's transmit
	// path stalls for the spike instead. (The board's -110 storm came from
	// calling spi_sync in atomic context, which this test does not model.)
	spike := "spi.latency@a:latency=700ms,count=1,start=200ms"
	none, spi = measure(driver.XmitClockNone, spike), measure(driver.XmitClockSPI, spike)
	t.Logf("spike, xmit-clock none: %+v", none)
	t.Logf("spike, xmit-clock spi:  %+v", spi)
	if none.timeouts != 1 || none.errs != 0 {
		t.Errorf("xmit-clock none: want only the slow transfer to time out: %+v", none)
	}
	if spi.timeouts != 1 || spi.errs != 0 {
		t.Errorf("xmit-clock spi: want only the slow transfer to time out (waiting for the bus is not timed): %+v", spi)
	}
	if spi.maxWait < 400*time.Millisecond {
		t.Errorf("xmit-clock spi: transmits did not wait behind the slow transfer: %+v", spi)
	}
}
