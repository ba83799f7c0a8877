package integration

import (
	"context"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"tsnsim/chip"
	"tsnsim/chip/regs"
	"tsnsim/fault"
	"tsnsim/spibridge"
	"tsnsim/topology"
	"tsnsim/traffic"
)

// TestMixedFaultPlan wires an injector into a whole topology
// (topology.Config.Faults) and runs traffic both ways with
// cable loss, corruption and delay, SPI latency and spurious interrupts:
// every frame is delivered, lost or corrupted exactly as counted, and
// every goroutine stops (synctest would report a leak).
func TestMixedFaultPlan(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const n = 400
		epoch := time.Now()
		ss := [2]traffic.Stream{
			{Src: topology.NodeMAC(0), Dst: topology.NodeMAC(1), Seed: 1, Size: 200},
			{Src: topology.NodeMAC(1), Dst: topology.NodeMAC(0), Seed: 2, Size: 200},
		}
		checkers := [2]*traffic.Checker{traffic.NewChecker(ss[1]), traffic.NewChecker(ss[0])}
		inj := fault.New(7, epoch, nil)
		topo := newTopology(t, topology.Config{SPI: spibridge.DefaultTiming(), Chip: chip.Config{Epoch: epoch}, Faults: inj},
			[2]func([]byte) bool{checkers[0].Receive, checkers[1].Receive})
		plan, err := fault.ParsePlan([]byte(`{"seed": 7, "faults": [
			{"layer": "cable", "kind": "loss", "node": "a", "probability": 0.05},
			{"layer": "cable", "kind": "corrupt", "node": "b", "probability": 0.05, "bits": 3},
			{"layer": "cable", "kind": "delay", "latency": "20us", "jitter": "50us", "probability": 0.2},
			{"layer": "spi", "kind": "latency", "latency": "10us", "jitter": "30us", "probability": 0.1},
			{"layer": "irq", "kind": "spurious", "rate": 2000, "probability": 0.5}]}`))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := inj.AddAll(plan.Faults); err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		if err := topo.Start(ctx); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for i := range 2 {
			wg.Go(func() {
				if res, err := traffic.Send(ctx, topo.Nodes[i].Driver, ss[i], n, 0, traffic.Requeue); err != nil || res.Sent != n {
					t.Errorf("node %d sent %d: %v", i, res.Sent, err)
				}
			})
		}
		wg.Wait()
		for _, c := range checkers {
			c.WaitFor(ctx, n, 100*time.Millisecond)
		}
		inj.Close()
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if err := topo.Close(cctx); err != nil {
			t.Fatal(err)
		}
		ab, ba := topo.Cable.Stats()
		c := inj.Counts()
		for i, cs := range [2]struct {
			frames, lost, corrupt, fcs uint64
		}{
			{ab.Frames, ab.LostInjected, ab.Corrupted, topo.Nodes[1].Chip.Register(regs.FDFCSDropFrameCnt)},
			{ba.Frames, ba.LostInjected, ba.Corrupted, topo.Nodes[0].Chip.Register(regs.FDFCSDropFrameCnt)},
		} {
			r := checkers[1-i].Result()
			if len(r.Errors) > 0 || r.Foreign != 0 {
				t.Errorf("%d->%d: %+v", i, 1-i, r)
			}
			if r.Received+cs.lost+cs.corrupt != n || cs.frames+cs.lost != n || cs.fcs != cs.corrupt {
				t.Errorf("%d->%d: received %d, lost %d, corrupted %d (FCS drops %d) of %d", i, 1-i, r.Received, cs.lost, cs.corrupt, cs.fcs, n)
			}
		}
		if ab.LostInjected != c["cable.loss@a"] || ab.LostInjected == 0 || ba.Corrupted != c["cable.corrupt@b"] || ba.Corrupted == 0 {
			t.Errorf("cable %+v / %+v, counts %v", ab, ba, c)
		}
		for _, nd := range topo.Nodes {
			s := nd.Bus.Stats()
			if s.FaultLatency != c["spi.latency@"+nd.Name] || s.IRQSpurious != c["irq.spurious@"+nd.Name] || s.IRQSpurious == 0 {
				t.Errorf("node %s: bus %+v, counts %v", nd.Name, s, c)
			}
		}
		t.Logf("counts %v", c)
	})
}
