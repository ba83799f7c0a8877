package main

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/spf13/pflag"

	"tsnsim/driver"
	"tsnsim/topology"
)

// fieldOptions are the flags that reproduce the field failures of
// chip.md section 6 (docs/field-failures.md).
type fieldOptions struct {
	fieldDriver string
	clockReads  time.Duration

	field driver.Field
	fs    *pflag.FlagSet // to tell flags given from defaults
}

func (o *fieldOptions) addFlags(fs *pflag.FlagSet) {
	o.fs = fs
	fs.StringVar(&o.fieldDriver, "field-driver", "none", "drive the chips the way the vendor's field driver did, to reproduce chip.md section 6 (docs/field-failures.md): a comma-separated list of "+
		strings.Join(driver.FieldNames(), ", ")+", or all. "+
		"tx-slot: one TX slot, frames offered while it is taken are reported sent and dropped (counted: TX slot drops); "+
		"xmit-clock (--backend tap): SYSCOUNT read over SPI in transmit (softirq context): BUG: scheduling while atomic, then -110 timeouts and a TX stall; "+
		"lock-order (--backend frames or tap): register reads during TX deadlock, the lock watchdog ends the run with who waits on whom; "+
		"fcs: received frames go up with their 4-byte FCS")
	fs.DurationVar(&o.clockReads, "clock-reads", 0, "read each node's SYSCOUNT through the driver's register path this often during the run, as a PTP daemon reads the PHC (0: off; --field-driver lock-order defaults it to 1ms)")
}

func (o *fieldOptions) validate(backend string) error {
	f, err := driver.ParseField(o.fieldDriver)
	if err != nil {
		return fmt.Errorf("--field-driver: %v", err)
	}
	o.field = f
	switch {
	case f.Has(driver.FieldXmitClock) && backend != backendTAP:
		// Every transmit then waits 0.5 s per lost completion: the
		// built-in workloads, which send a fixed amount, would take
		// many minutes.
		return fmt.Errorf("--field-driver xmit-clock stalls the link for seconds at a time: drive it with real tools over --backend tap --netns (docs/field-failures.md)")
	case f.Has(driver.FieldLockOrder) && backend == backendNetstack:
		// The built-in pings cannot be cut short when the watchdog ends
		// the run.
		return fmt.Errorf("--field-driver lock-order: use --backend frames or --backend tap (the netstack workload cannot be cut short when the watchdog ends the run)")
	case o.clockReads < 0:
		return fmt.Errorf("--clock-reads must not be negative")
	case f.Has(driver.FieldTxSlot) && o.fs.Changed("tx-ring"):
		return fmt.Errorf("--field-driver tx-slot is the field driver's one TX slot: it cannot be combined with --tx-ring")
	case f.Has(driver.FieldXmitClock) && o.fs.Changed("xmit-clock") && o.fs.Lookup("xmit-clock").Value.String() != "spi":
		return fmt.Errorf("--field-driver xmit-clock reads SYSCOUNT over SPI in transmit: it cannot be combined with --xmit-clock none")
	}
	if f.Has(driver.FieldLockOrder) && !o.fs.Changed("clock-reads") {
		o.clockReads = time.Millisecond
	}
	return nil
}

// apply sets the driver configuration of the flags.
func (o *fieldOptions) apply(cfg *topology.Config) {
	cfg.Driver.Field = o.field
	cfg.Driver.FieldTiming = cfg.SPI
	cfg.Driver.ClockReads = o.clockReads
}

// deadlocked is the cause of a run's context when a driver's lock
// watchdog found a deadlock (--field-driver lock-order).
type deadlocked struct{ node, report string }

func (e *deadlocked) Error() string {
	return fmt.Sprintf("deadlock on %s, found by the lock watchdog (the run ends here): %s", e.node, e.report)
}

// watchDeadlock ends a run when the lock watchdog of either driver
// reports a deadlock: it brings both interfaces down (that releases the
// tasks blocked on the locks: a transmit returns ErrDown, so the run can
// end and be audited) and cancels the run (cause *deadlocked). stop ends
// the watch.
func watchDeadlock(ctx context.Context, cancel context.CancelCauseFunc, topo *topology.Topology, r *outcome) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		var report, node string
		select {
		case report = <-topo.Nodes[0].Driver.Deadlock():
			node = topo.Nodes[0].Name
		case report = <-topo.Nodes[1].Driver.Deadlock():
			node = topo.Nodes[1].Name
		case <-ctx.Done():
			return
		case <-done:
			return
		}
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		for _, n := range topo.Nodes {
			if err := n.Driver.Stop(sctx); err != nil {
				r.fail("%s: stop after deadlock: %v", n.Name, err)
			}
		}
		cancel(&deadlocked{node: node, report: report})
	})
	return func() {
		close(done)
		wg.Wait()
	}
}

// fieldVerdict fails the run for what the field driver broke that the
// audit balances: blocking transfers in atomic context and the timeouts
// they caused, frames handed up with their FCS. (Frames its TX slot
// reported sent and dropped are a loss: topology.Losses names them.)
func fieldVerdict(topo *topology.Topology, r *outcome) {
	for _, n := range topo.Nodes {
		s := n.Driver.Stats()
		if n.Driver.Field().Has(driver.FieldFCS) && s.RxPackets > 0 {
			r.fail("%s: %d frames handed up with their 4-byte FCS (%d RX bytes, FCS included)", n.Name, s.RxPackets, s.RxBytes)
		}
		if s.AtomicSleepBugs > 0 {
			r.fail("%s: BUG: scheduling while atomic %d times (SPI from the transmit path); %d SPI transfers timed out (-110), TX stalled up to %v",
				n.Name, s.AtomicSleepBugs, s.LostCompletions, s.TxMaxStall.Round(time.Millisecond))
		}
	}
}
