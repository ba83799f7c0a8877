package main

import (
	"context"
	"sync"
	"time"

	"tsnsim/topology"
	"tsnsim/traffic"
)

// runFrames is the frames backend: numbered test frames each way at
// once, checked for loss, order and content.
func runFrames(o *runOptions, cfg topology.Config, r *outcome) error {
	ss := [2]traffic.Stream{
		{Src: topology.NodeMAC(0), Dst: topology.NodeMAC(1), Seed: 1, Size: o.frameSize},
		{Src: topology.NodeMAC(1), Dst: topology.NodeMAC(0), Seed: 2, Size: o.frameSize},
	}
	// checkers[i] checks what node i receives: the stream node 1-i sends.
	checkers := [2]*traffic.Checker{traffic.NewChecker(ss[1]), traffic.NewChecker(ss[0])}
	topo, err := o.buildTopology(cfg, [2]func([]byte) bool{checkers[0].Receive, checkers[1].Receive})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := topo.Start(ctx); err != nil {
		closeTopology(topo, r)
		return err
	}
	watchDeadlock(ctx, cancel, topo, r)
	start := time.Now()
	var wg sync.WaitGroup
	var sendErrs [2]error
	for i := range 2 {
		wg.Go(func() {
			_, sendErrs[i] = traffic.Send(ctx, topo.Nodes[i].Driver, ss[i], o.frames, 0, traffic.Requeue)
		})
	}
	wg.Wait()
	for _, c := range checkers {
		c.WaitFor(ctx, o.frames, o.idle)
	}
	elapsed := time.Since(start)
	closeTopology(topo, r)

	topo.WriteReport(r.out, elapsed)
	var delivered [2]uint64
	for i := range 2 {
		src, dst := topo.Nodes[i].Name, topo.Nodes[1-i].Name
		if sendErrs[i] != nil {
			r.fail("%s: sending: %v", src, sendErrs[i])
		}
		res := checkers[1-i].Result()
		delivered[1-i] = res.Received + res.Foreign
		r.printf("%s->%s: %d/%d frames, %d bytes in %v: %.2f Mbit/s, %.0f frames/s\n",
			src, dst, res.Received, o.frames, res.Bytes, elapsed.Round(time.Millisecond),
			float64(res.Bytes)*8/elapsed.Seconds()/1e6, float64(res.Received)/elapsed.Seconds())
		if res.Received != o.frames || res.Gaps != 0 {
			r.fail("%s->%s: %d of %d frames arrived (%d skipped)", src, dst, res.Received, o.frames, res.Gaps)
		}
		for _, e := range res.Errors {
			r.fail("%s->%s: %s", src, dst, e)
		}
		if res.Foreign != 0 {
			r.fail("%s: %d frames of an unexpected kind", dst, res.Foreign)
		}
	}
	r.audit(topo, delivered)
	return nil
}
