package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	"tsnsim/topology"
	"tsnsim/traffic"
)

// drainAfterStop bounds the wait for frames in flight once a run was
// interrupted or stalled (the idle timeout still applies when shorter).
const drainAfterStop = time.Second

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
	ctx := o.ctx
	if err := topo.Start(ctx); err != nil {
		return startFailed(topo, r, err, [2]uint64{checkers[0].Result().Received, checkers[1].Result().Received})
	}
	stopWatch := o.watch(topo, r)
	start := time.Now()
	var wg sync.WaitGroup
	var sent [2]traffic.SendResult
	var sendErrs [2]error
	for i := range 2 {
		wg.Go(func() {
			sent[i], sendErrs[i] = traffic.Send(ctx, topo.Nodes[i].Driver, ss[i], o.frames, 0, traffic.Requeue)
		})
	}
	wg.Wait()
	// Drain: wait for what the drivers took; after a stop, briefly.
	for i, c := range checkers {
		idle := o.idle
		if ctx.Err() != nil {
			idle = min(idle, drainAfterStop)
		}
		c.WaitFor(context.Background(), sent[1-i].Sent, idle)
	}
	stopWatch()
	drain(topo, r)
	closeTopology(topo, r)

	topo.WriteReport(r.out, time.Since(start))
	var delivered [2]uint64
	for i := range 2 {
		src, dst := topo.Nodes[i].Name, topo.Nodes[1-i].Name
		if sendErrs[i] != nil && ctx.Err() == nil {
			r.fail("%s: sending: %v", src, sendErrs[i])
		}
		res := checkers[1-i].Result()
		delivered[1-i] = res.Received + res.Foreign
		r.printf("%s->%s: %s\n", src, dst, transferLine(res, o.frames, sent[i].Sent, start))
		// Frames that did not arrive are the audit's losses; frames never
		// sent (a send error, not an interruption) are a failure.
		if ctx.Err() == nil && sendErrs[i] == nil && sent[i].Sent != o.frames {
			r.fail("%s: sent %d of %d frames", src, sent[i].Sent, o.frames)
		}
		if bad := res.Duplicates + res.Corrupt; bad > 0 {
			r.unaccounted(&topology.Imbalance{Direction: src + "->" + dst, Op: "==",
				Left: res.Received - res.Foreign, Right: res.Received - bad,
				Equation: fmt.Sprintf("host %s: %d frames received != %d distinct frames %s sent (%d duplicates, %d not as sent)",
					dst, res.Received, res.Received-bad, src, res.Duplicates, res.Corrupt)})
		}
		if res.Reordered > 0 {
			r.fail("%s->%s: %d frames arrived out of order (first: %s)", src, dst, res.Reordered, res.Errors[0])
		}
		if res.Foreign != 0 {
			r.fail("%s: %d frames of an unexpected kind", dst, res.Foreign)
		}
	}
	r.audit(topo, delivered)
	return nil
}

// transferLine describes one direction's transfer: frames arrived of
// asked and sent, and the throughput over the transfer's own span: from
// start (sending began) to the last frame's arrival, so the idle wait
// after it is not counted.
func transferLine(res traffic.CheckResult, asked, sent uint64, start time.Time) string {
	line := fmt.Sprintf("%d/%d frames arrived (%d sent), %d bytes", res.Received, asked, sent, res.Bytes)
	if span := res.Last.Sub(start); res.Received > 0 && span > 0 {
		line += fmt.Sprintf(" in %v: %.2f Mbit/s, %.0f frames/s", span.Round(time.Millisecond),
			float64(res.Bytes)*8/span.Seconds()/1e6, float64(res.Received)/span.Seconds())
	}
	if res.Gaps > 0 || res.MissingAtEnd(asked) > 0 {
		line += fmt.Sprintf("; %d lost in between, %d missing at the end", res.Gaps, res.MissingAtEnd(asked))
	}
	return line
}
