package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"tsnsim/topology"
)

// outcome collects the printed report and the verdict of a run. Its
// methods are safe for concurrent use.
type outcome struct {
	mu      sync.Mutex
	out     io.Writer
	verdict topology.Verdict
	ptp     *ptpSession // --ptp: PTP frames the ports took count as delivered
}

func (r *outcome) printf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	fmt.Fprintf(r.out, format, args...)
}

// fail records a failure of the run (not a frame loss: an error, an
// incomplete workload) and prints it.
func (r *outcome) fail(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	r.mu.Lock()
	r.verdict.Failures = append(r.verdict.Failures, msg)
	r.mu.Unlock()
	r.printf("FAIL: %s\n", msg)
}

// failFirst is fail for the reason the run ended early (a stall): the
// verdict names it first, before what failed because of it.
func (r *outcome) failFirst(err error) {
	r.mu.Lock()
	r.verdict.Failures = append([]string{err.Error()}, r.verdict.Failures...)
	r.mu.Unlock()
	r.printf("FAIL: %v\n", err)
}

// unaccounted records an imbalance found outside topology.Audit (a
// checker that saw a frame twice, or one the peer never sent) and prints
// it.
func (r *outcome) unaccounted(im *topology.Imbalance) {
	r.mu.Lock()
	r.verdict.Imbalances = append(r.verdict.Imbalances, im)
	r.mu.Unlock()
	r.printf("UNACCOUNTED: %v\n", im)
}

// lose records frames lost outside the topology (a host queue), each
// counted there.
func (r *outcome) lose(ls ...topology.Loss) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.verdict.AddLosses(ls...)
}

// audit checks every counter equation of both directions and collects
// where the frames went that were not delivered; delivered[i] is what
// node i's host took from its driver. It prints one line per direction.
func (r *outcome) audit(topo *topology.Topology, delivered [2]uint64) {
	fieldVerdict(topo, r)
	for i := range 2 {
		delivered[1-i] += r.ptp.delivered(1 - i)
		src, dst := topo.Nodes[i].Name, topo.Nodes[1-i].Name
		for _, err := range topo.Audit(i, delivered[1-i]) {
			var im *topology.Imbalance
			if errors.As(err, &im) {
				r.unaccounted(im)
			} else {
				r.fail("audit: %v", err)
			}
		}
		losses := topo.Losses(i)
		r.lose(losses...)
		line := fmt.Sprintf("audit %s->%s: %d offered to driver %s, %d delivered to host %s", src, dst,
			topo.Nodes[i].Driver.Stats().TxOffered, src, delivered[1-i], dst)
		var lost uint64
		for _, l := range losses {
			lost += l.Count
		}
		if lost == 0 {
			r.printf("%s, nothing lost\n", line)
			continue
		}
		r.printf("%s, %d lost:", line, lost)
		for _, l := range losses {
			r.printf(" %v;", l)
		}
		r.printf("\n")
	}
}

// finish prints the verdict line, the last line of every report, and
// returns the exit status.
func (r *outcome) finish() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	fmt.Fprintln(r.out, r.verdict.Line())
	return r.verdict.ExitStatus()
}

// stopped reports why ctx ended for a run: nil while it runs or when it
// was interrupted by a signal (a graceful stop the user asked for), the
// cause otherwise (a stall).
func stopped(ctx context.Context) error {
	if ctx.Err() == nil {
		return nil
	}
	cause := context.Cause(ctx)
	var in *interrupted
	if errors.As(cause, &in) {
		return nil
	}
	return cause
}

// hasFailed reports whether anything failed, was lost or was
// unaccounted (for commands that end without a verdict line, e.g. chip
// serve).
func (r *outcome) hasFailed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.verdict.ExitStatus() != topology.ExitClean
}
