package main

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/pflag"
	"go.uber.org/zap"

	"tsnsim/host/tap"
	"tsnsim/topology"
)

// tapOptions are the flags of the tap backend.
type tapOptions struct {
	netns    bool
	prefix   string
	duration time.Duration
}

func (o *tapOptions) addFlags(fs *pflag.FlagSet) {
	fs.BoolVar(&o.netns, "netns", false, "tap backend: put each node's TAP in its own network namespace, named like the interface")
	fs.StringVar(&o.prefix, "tap-prefix", "tsn", "tap backend: interface (and namespace) names are PREFIX-a and PREFIX-b")
	fs.DurationVar(&o.duration, "duration", 0, "tap backend: stop after this long (0: run until SIGINT or SIGTERM)")
}

func (o *tapOptions) validate() error {
	switch {
	case o.duration < 0:
		return fmt.Errorf("--duration must not be negative")
	case o.prefix == "" || len(o.prefix)+2 > 15:
		return fmt.Errorf("--tap-prefix %q: want 1-13 characters (interface names are at most 15)", o.prefix)
	}
	return nil
}

// runTAP is the tap backend: one TAP device per node for the Linux stack,
// up until interrupted or for --duration; then everything it created is
// removed and the counters are reported.
func runTAP(o *runOptions, cfg topology.Config, r *outcome, log *zap.Logger) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	addrs := nodeAddrs()
	var devs [2]*tap.Device
	closeDevs := func() {
		for _, d := range devs {
			if d != nil {
				if err := d.Close(); err != nil {
					r.fail("%v", err)
				}
			}
		}
	}
	for i := range 2 {
		name := fmt.Sprintf("%s-%c", o.prefix, 'a'+i)
		dc := tap.Config{Name: name, MAC: topology.NodeMAC(i), Logger: log}
		if o.netns {
			dc.Netns, dc.Addrs = name, addrs[i]
		}
		d, err := tap.New(dc)
		if err != nil {
			closeDevs()
			return err
		}
		devs[i] = d
	}
	defer closeDevs()

	topo, err := o.buildTopology(cfg, [2]func([]byte) bool{devs[0].Receive, devs[1].Receive})
	if err != nil {
		return err
	}
	if err := topo.Start(ctx); err != nil {
		closeTopology(topo, r)
		return err
	}
	for i, d := range devs {
		if err := d.Attach(topo.Nodes[i].Driver); err != nil {
			closeTopology(topo, r)
			return err
		}
	}
	ctx, cancelRun := context.WithCancel(ctx)
	defer cancelRun()
	watchDeadlock(ctx, cancelRun, topo, r)
	printTAPUsage(r, o, devs, addrs)
	start := time.Now()
	if o.duration > 0 {
		t := time.NewTimer(o.duration)
		select {
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
	} else {
		<-ctx.Done()
	}
	elapsed := time.Since(start)
	r.printf("stopping after %v\n", elapsed.Round(time.Millisecond))
	closeDevs() // no more frames offered; devices and namespaces removed
	closeTopology(topo, r)
	topo.WriteReport(r.out, elapsed)
	var delivered [2]uint64
	for i, d := range devs {
		s := d.Stats()
		r.printf("tap %s: %d frames written to the stack, %d write errors; %d read, %d to the driver, %d dropped by it, %d abandoned at close\n",
			d.Name(), s.Written, s.WriteErrors, s.Read, s.Offered, s.Dropped, s.Abandoned)
		delivered[i] = s.Written
	}
	r.audit(topo, delivered)
	return nil
}

func printTAPUsage(r *outcome, o *runOptions, devs [2]*tap.Device, addrs [2][]netip.Prefix) {
	r.printf("ready: %s and %s are up, cabled through two emulated LAN1QTSN nodes\n", devs[0].Name(), devs[1].Name())
	if !o.netns {
		r.printf("the interfaces have no addresses (both are in this namespace, so the kernel would route\n" +
			"between them locally); give each its own namespace or VRF, or rerun with --netns\n")
		r.printf("  tcpdump -i %s\n", devs[0].Name())
		return
	}
	for i, d := range devs {
		r.printf("  ip netns exec %s ping %v\n", d.Netns(), addrs[1-i][0].Addr())
		r.printf("  ip netns exec %s ping %v\n", d.Netns(), addrs[1-i][1].Addr())
		r.printf("  ip netns exec %s arping -i %s %v\n", d.Netns(), d.Name(), addrs[1-i][0].Addr())
	}
	r.printf("  ip netns exec %s iperf3 -s    and    ip netns exec %s iperf3 -c %v\n", devs[1].Netns(), devs[0].Netns(), addrs[1][0].Addr())
	r.printf("  ip netns exec %s tcpdump -ni %s\n", devs[0].Netns(), devs[0].Name())
	if o.duration == 0 {
		r.printf("stop with Ctrl-C (SIGINT) or SIGTERM; everything created is removed\n")
	}
}
