package main

import (
	"fmt"
	"net/netip"
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
	fs.BoolVar(&o.netns, "netns", false, "tap backend: put each node's TAP in its own network namespace, named like the interface (a namespace left by a tsnsim that was killed is removed at the next start)")
	fs.StringVar(&o.prefix, "tap-prefix", "tsn", "tap backend: interface (and namespace) names are PREFIX-a and PREFIX-b (one node: the one of --node)")
	fs.DurationVar(&o.duration, "duration", 0, "tap backend and --serve: stop after this long (0: run until SIGINT or SIGTERM)")
}

func (o *tapOptions) validate() error {
	switch {
	case o.duration < 0:
		return fmt.Errorf("--duration must not be negative")
	case o.prefix == "" || len(o.prefix)+2 > 15:
		return fmt.Errorf("--tap-prefix %q: want 1-13 bytes (interface names are at most 15)", o.prefix)
	}
	if err := tap.ValidName(o.prefix + "-a"); err != nil {
		return fmt.Errorf("--tap-prefix %q: %w", o.prefix, err)
	}
	return nil
}

// runTAP is the tap backend: one TAP device per node for the Linux stack,
// up until interrupted or for --duration; then everything it created is
// removed and the counters are reported.
func runTAP(o *runOptions, cfg topology.Config, r *outcome, log *zap.Logger) error {
	ctx := o.ctx
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
		return startFailed(topo, r, err, [2]uint64{devs[0].Stats().Written, devs[1].Stats().Written})
	}
	for i, d := range devs {
		if err := d.Attach(topo.Nodes[i].Driver); err != nil {
			closeTopology(topo, r)
			return err
		}
	}
	stopWatch := o.watch(topo, r)
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
	stopWatch()
	r.printf("stopping after %v\n", elapsed.Round(time.Millisecond))
	// Frames in flight are delivered first, with the links still up; then
	// the links go down, so the kernel sends nothing more and its
	// counters can be read and compared with the devices' own (a frame
	// the kernel had queued then reaches a peer whose link is down, and is
	// counted as refused by that host).
	drain(topo, r)
	var kernel [2]*tap.KernelStats
	for i, d := range devs {
		if err := d.Quiesce(2 * time.Second); err != nil {
			r.fail("%v", err)
		}
		if ks, err := d.KernelStats(); err != nil {
			r.fail("%v", err)
		} else {
			kernel[i] = &ks
		}
	}
	drain(topo, r)
	closeDevs() // no more frames offered; devices and namespaces removed
	closeTopology(topo, r)
	topo.WriteReport(r.out, elapsed)
	var delivered [2]uint64
	for i, d := range devs {
		s := d.Stats()
		reportTAP(r, d.Name(), s)
		delivered[i] = s.Written
		if kernel[i] != nil {
			auditKernel(r, d.Name(), topo.Nodes[i].Name, *kernel[i], s)
		}
	}
	r.audit(topo, delivered)
	return nil
}

// reportTAP prints a TAP's own counters and files the frames it gave up
// at close as lost. (Frames it could not write or refused after the link
// went down are the driver's RX dropped, counted there.)
func reportTAP(r *outcome, name string, s tap.Stats) {
	r.printf("tap %s: %d frames written to the stack, %d write errors, %d refused with the link down; "+
		"%d read, %d to the driver, %d dropped by it, %d abandoned at close\n",
		name, s.Written, s.WriteErrors, s.RefusedDown, s.Read, s.Offered, s.Dropped, s.Abandoned)
	r.lose(topology.Loss{Count: s.Abandoned, Where: fmt.Sprintf("abandoned at tap %s at close", name)})
}

// auditKernel prints a TAP's kernel counters in the layout of `ip -s
// link`, checks them against the device's own and files the kernel's
// drops as losses: what the stack sent out of the TAP was read by tsnsim
// (TX packets) or dropped in the TAP's queue (TX dropped). On RX, tun
// counts every frame tsnsim wrote in RX packets once it hands it to the
// stack; the stack's own drops after that (a frame of a protocol nobody
// listens for, such as PTP in a namespace without ptp4l, or a full
// backlog) add to RX dropped without leaving RX packets, as on a NIC.
// So: RX packets + the frames the kernel dropped before counting them =
// frames written, those dropped-before being at most RX dropped. They
// are losses; the stack's drops of frames it took are the host's, shown
// but not a loss of the emulated link.
func auditKernel(r *outcome, name, node string, k tap.KernelStats, s tap.Stats) {
	r.printf("tap %s kernel counters (netlink):\n", name)
	r.printf("    RX: bytes %d packets %d errors %d dropped %d\n", k.RxBytes, k.RxPackets, k.RxErrors, k.RxDropped)
	r.printf("    TX: bytes %d packets %d errors %d dropped %d\n", k.TxBytes, k.TxPackets, k.TxErrors, k.TxDropped)
	if k.TxPackets != s.Read {
		r.unaccounted(&topology.Imbalance{Direction: "kernel->" + node, Op: "==", Left: k.TxPackets, Right: s.Read,
			Equation: fmt.Sprintf("tap %s: kernel TX packets %d != %d frames tsnsim read", name, k.TxPackets, s.Read)})
	}
	var lostBefore uint64 // written, never counted as received
	switch {
	case k.RxPackets > s.Written:
		r.unaccounted(&topology.Imbalance{Direction: node + "->kernel", Op: "<=", Left: k.RxPackets, Right: s.Written,
			Equation: fmt.Sprintf("tap %s: kernel RX packets %d > %d frames tsnsim wrote", name, k.RxPackets, s.Written)})
	case s.Written-k.RxPackets > k.RxDropped:
		r.unaccounted(&topology.Imbalance{Direction: node + "->kernel", Op: "==", Left: k.RxPackets + k.RxDropped, Right: s.Written,
			Equation: fmt.Sprintf("tap %s: kernel RX packets %d + dropped %d < %d frames tsnsim wrote", name, k.RxPackets, k.RxDropped, s.Written)})
	default:
		lostBefore = s.Written - k.RxPackets
	}
	if after := k.RxDropped - min(k.RxDropped, lostBefore); after > 0 {
		r.printf("tap %s: the kernel's stack dropped %d of the frames it took (no listener for their protocol, or a full backlog): the host's drops, as on a NIC\n", name, after)
	}
	r.lose(topology.Loss{Count: k.TxDropped, Where: fmt.Sprintf("dropped in tap %s TX queue (kernel)", name)},
		topology.Loss{Count: lostBefore, Where: fmt.Sprintf("dropped by the kernel at tap %s RX", name)})
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
