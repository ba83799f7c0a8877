package integration

import (
	"context"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"tsnsim/chip/regs"
	"tsnsim/spibridge"
	"tsnsim/topology"
	"tsnsim/traffic"
)

// TestScenario3RegisterReadsDuringTX is chip.md section 6, scenario 3:
// register reads (the register tool's dump, SYSCOUNT reads) run
// concurrently with heavy bidirectional TX on the same buses and never
// deadlock. The vendor driver deadlocked on the lock order between its
// register lock and its TX-queue lock; the driver core takes no lock
// around register access, so every reader only queues for the bus.
// synctest reports a deadlock as a failure, and the test also bounds the
// emulated time everything takes.
func TestScenario3RegisterReadsDuringTX(t *testing.T) {
	forEachTransport(t, testScenario3RegisterReadsDuringTX)
}

func testScenario3RegisterReadsDuringTX(t *testing.T, transport transportHook) {
	synctest.Test(t, func(t *testing.T) {
		const n = 1500
		ss := streams(0)
		checkers := [2]*traffic.Checker{traffic.NewChecker(ss[1]), traffic.NewChecker(ss[0])}
		topo := newTopology(t, topology.Config{SPI: spibridge.DefaultTiming(), Transport: transport},
			[2]func([]byte) bool{checkers[0].Receive, checkers[1].Receive})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := topo.Start(ctx); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		sending := make(chan struct{})
		var senders, readers sync.WaitGroup
		for i := range 2 {
			senders.Go(func() {
				if _, err := traffic.Send(ctx, topo.Nodes[i].Driver, ss[i], n, 0, traffic.Requeue); err != nil {
					t.Errorf("node %d: send: %v", i, err)
				}
			})
		}
		var reads [2][2]int
		for i := range 2 {
			d := topo.Nodes[i].Driver
			// A register-tool dump loop and a clock reader per node.
			readers.Go(func() {
				for {
					for _, r := range regs.Map {
						if _, err := d.ReadRegister(ctx, r.Offset); err != nil {
							t.Errorf("node %d: read %s: %v", i, r.Name, err)
							return
						}
						reads[i][0]++
					}
					select {
					case <-sending:
						return
					default:
					}
				}
			})
			readers.Go(func() {
				var last uint64
				for {
					now, err := d.ReadSysCount(ctx)
					if err != nil {
						t.Errorf("node %d: SYSCOUNT: %v", i, err)
						return
					}
					if now < last {
						t.Errorf("node %d: SYSCOUNT went back from %d to %d", i, last, now)
					}
					last = now
					reads[i][1]++
					select {
					case <-sending:
						return
					case <-time.After(100 * time.Microsecond):
					}
				}
			})
		}
		senders.Wait()
		for i, c := range checkers {
			if !c.WaitFor(ctx, n, time.Second) {
				t.Errorf("node %d received %d of %d", i, c.Result().Received, n)
			}
		}
		close(sending)
		readers.Wait()
		elapsed := time.Since(start)
		t.Logf("%d frames each way and %v register/clock reads in %v of emulated time", n, reads, elapsed)
		if elapsed > 5*time.Second {
			t.Errorf("took %v of emulated time, want under 5s", elapsed)
		}
		for i := range 2 {
			if reads[i][0] < len(regs.Map) || reads[i][1] < 100 {
				t.Errorf("node %d: only %v reads ran alongside the traffic", i, reads[i])
			}
		}
		closeTopology(t, topo)
		for i, c := range checkers {
			assertAccounting(t, topo, 1-i, c.Result().Received)
		}
	})
}
