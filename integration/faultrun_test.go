package integration

import (
	"context"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"tsnsim/chip"
	"tsnsim/driver"
	"tsnsim/fault"
	"tsnsim/spibridge"
	"tsnsim/spitrace"
	"tsnsim/topology"
	"tsnsim/traffic"
)

// faultRun is a bidirectional paced-traffic run under faults, in
// virtual time (call it inside synctest.Test).
type faultRun struct {
	specs    []string      // faults in the flag syntax
	seed     int64         // injector seed
	frames   uint64        // frames each way
	interval time.Duration // between frames of one sender (0: as fast as taken)
	size     int           // frame size (0: mixed)
	ring     int           // driver TX ring (0: default)
	xmit     driver.XmitClock
	trace    *spitrace.Writer
	logger   *zap.Logger // nil: none
}

// faultResult is what a faultRun observed.
type faultResult struct {
	topo     *topology.Topology
	counts   map[string]uint64
	received [2]traffic.CheckResult // what node i received
	arrivals [2][]time.Duration     // when node i received each frame, from the start
	elapsed  time.Duration
	startup  time.Duration // Topology.Start: both drivers' Open
}

// run builds a topology with the faults, sends r.frames each way at
// once, waits until nothing more arrives, closes everything and checks
// the frame accounting of both directions, failing t on any violation.
func (r faultRun) run(t *testing.T) faultResult {
	t.Helper()
	res, errs := r.runErrs(t)
	for _, err := range errs {
		t.Error(err)
	}
	if res.topo == nil {
		t.FailNow()
	}
	return res
}

// runErrs is run returning the violations instead of failing t (the
// fault sweep counts them per seed). res.topo is nil when the topology
// could not be built or started.
func (r faultRun) runErrs(t *testing.T) (faultResult, []error) {
	t.Helper()
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	epoch := time.Now()
	inj := fault.New(r.seed, epoch, nil)
	defer inj.Close()
	for _, s := range r.specs {
		spec, err := fault.ParseSpec(s)
		if err != nil {
			return faultResult{}, []error{err}
		}
		if _, err := inj.Add(spec); err != nil {
			return faultResult{}, []error{err}
		}
	}
	ss := streams(r.size)
	checkers := [2]*traffic.Checker{traffic.NewChecker(ss[1]), traffic.NewChecker(ss[0])}
	var mu sync.Mutex
	var res faultResult
	receive := func(i int) func([]byte) bool {
		return func(f []byte) bool {
			mu.Lock()
			res.arrivals[i] = append(res.arrivals[i], time.Since(epoch))
			mu.Unlock()
			return checkers[i].Receive(f)
		}
	}
	cfg := topology.Config{SPI: spibridge.DefaultTiming(), Chip: chip.Config{Epoch: epoch}, Faults: inj}
	cfg.Logger = r.logger
	cfg.Driver.TxRingSize = r.ring
	cfg.Driver.XmitClock = r.xmit
	if r.trace != nil {
		cfg.Transport = func(i int, bus *spibridge.InProcess) (spibridge.Transport, io.Closer, error) {
			return spibridge.NewTraced(bus, string(rune('a'+i)), r.trace), nil, nil
		}
	}
	topo, err := topology.New(cfg, [2]func([]byte) bool{receive(0), receive(1)})
	if err != nil {
		return faultResult{}, []error{err}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	closeTopo := func() {
		cctx, ccancel := context.WithTimeout(context.Background(), time.Minute)
		defer ccancel()
		if err := topo.Close(cctx); err != nil {
			fail("close: %v", err)
		}
	}
	start := time.Now()
	if err := topo.Start(ctx); err != nil {
		inj.Close()
		closeTopo()
		return faultResult{}, append(errs, fmt.Errorf("start: %w", err))
	}
	res.topo = topo
	res.startup = time.Since(start)
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Go(func() {
			if _, err := traffic.Send(ctx, topo.Nodes[i].Driver, ss[i], r.frames, r.interval, traffic.Requeue); err != nil {
				mu.Lock()
				fail("node %d: send: %v", i, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	for _, c := range checkers {
		c.WaitFor(ctx, r.frames, 2*time.Second)
	}
	res.elapsed = time.Since(epoch)
	res.counts = inj.Counts()
	inj.Close()
	closeTopo()
	for i, c := range checkers {
		res.received[i] = c.Result()
		if len(res.received[i].Errors) > 0 || res.received[i].Foreign != 0 {
			fail("node %d received: %+v", i, res.received[i])
		}
		errs = append(errs, topo.Audit(1-i, res.received[i].Received)...)
	}
	return res, errs
}

// deliveredBetween counts the frames node i received in [from, to).
func (res faultResult) deliveredBetween(i int, from, to time.Duration) int {
	n := 0
	for _, a := range res.arrivals[i] {
		if a >= from && a < to {
			n++
		}
	}
	return n
}
