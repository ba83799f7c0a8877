package integration

import (
	"context"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"tsnsim/spibridge"
	"tsnsim/topology"
	"tsnsim/traffic"
)

// TestBidirectionalMixedSizes runs thousands of frames of mixed sizes
// both ways at once through the full SPI and link timing model: every
// frame arrives once, byte-identical, in order, and every counter adds up.
func TestBidirectionalMixedSizes(t *testing.T) {
	forEachTransport(t, testBidirectionalMixedSizes)
}

func testBidirectionalMixedSizes(t *testing.T, transport transportHook) {
	synctest.Test(t, func(t *testing.T) {
		const n = 3000
		ss := streams(0)
		checkers := [2]*traffic.Checker{traffic.NewChecker(ss[1]), traffic.NewChecker(ss[0])}
		topo := newTopology(t, topology.Config{SPI: spibridge.DefaultTiming(), Transport: transport},
			[2]func([]byte) bool{checkers[0].Receive, checkers[1].Receive})
		ctx := context.Background()
		if err := topo.Start(ctx); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		var wg sync.WaitGroup
		for i := range 2 {
			wg.Go(func() {
				res, err := traffic.Send(ctx, topo.Nodes[i].Driver, ss[i], n, 0, traffic.Requeue)
				if err != nil || res.Sent != n {
					t.Errorf("node %d: sent %d of %d: %v", i, res.Sent, n, err)
				}
			})
		}
		wg.Wait()
		for i, c := range checkers {
			if !c.WaitFor(ctx, n, time.Second) {
				t.Errorf("node %d received %d of %d", i, c.Result().Received, n)
			}
		}
		t.Logf("%d frames each way in %v of emulated time", n, time.Since(start))
		closeTopology(t, topo)
		for i, c := range checkers {
			r := c.Result()
			if r.Received != n || r.Gaps != 0 || len(r.Errors) > 0 || r.Foreign != 0 {
				t.Errorf("node %d: %+v", i, r)
			}
			assertAccounting(t, topo, 1-i, r.Received)
		}
	})
}
