package main

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/spf13/pflag"
	"go.uber.org/zap"

	"tsnsim/driver"
	"tsnsim/host/netstack"
	"tsnsim/host/tap"
	"tsnsim/topology"
	"tsnsim/workload"
)

// nodeOptions are the flags of one node facing a peer that is not in
// this process (one --attach, or --spidev): a QEMU guest, passt, another
// host or board at the far end of the cable.
type nodeOptions struct {
	serve     bool
	nodeAddrs []string
	peerAddrs []string

	// Set by validateNode.
	local []netip.Prefix
	peers []netip.Addr
}

func (o *nodeOptions) addFlags(fs *pflag.FlagSet) {
	fs.BoolVar(&o.serve, "serve", false, "with one --attach or --spidev and the netstack backend: keep the node up until SIGINT/SIGTERM (or --duration), answering ARP and ping and serving TCP and UDP echo (port 7) and discard (9) and a TCP source (19, chargen) for the peer")
	fs.StringArrayVar(&o.nodeAddrs, "node-addr", nil, "with one --attach or --spidev: this node's address with its prefix length, repeatable (default 10.0.0.1/24 and fd00::1/64 for node a, 10.0.0.2/24 and fd00::2/64 for node b)")
	fs.StringArrayVar(&o.peerAddrs, "peer-addr", nil, "with one --attach or --spidev: the peer's address, repeatable; it must be on a --node-addr subnet (default the other node's IPv4 address: 10.0.0.2 for node a, 10.0.0.1 for node b)")
}

// validateNode checks the flags of a single node and sets its addresses.
func (o *runOptions) validateNode() error {
	if !o.single() {
		if o.serve || len(o.nodeAddrs) > 0 || len(o.peerAddrs) > 0 {
			return fmt.Errorf("--serve, --node-addr and --peer-addr are for one node (a single --attach, or --spidev)")
		}
		return nil
	}
	switch {
	case o.serve && o.backend != backendNetstack:
		return fmt.Errorf("--serve is for the netstack backend; with --backend tap the node is up until SIGINT/SIGTERM or --duration anyway")
	case o.duration < 0:
		return fmt.Errorf("--duration must not be negative")
	case o.duration > 0 && o.backend == backendNetstack && !o.serve:
		return fmt.Errorf("--duration needs --serve (without it the node pings its peer and stops)")
	}
	i := int(o.node[0] - 'a')
	def := nodeAddrs()
	o.local = nil
	if len(o.nodeAddrs) == 0 {
		o.local = def[i]
	}
	for _, s := range o.nodeAddrs {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return fmt.Errorf("--node-addr %q: want ADDRESS/PREFIXLEN, e.g. 192.168.7.1/24: %v", s, err)
		}
		if a := p.Addr(); a.IsUnspecified() || a.IsMulticast() || a.IsLoopback() || a.Zone() != "" || p.Bits() == p.Addr().BitLen() {
			return fmt.Errorf("--node-addr %q: want a unicast host address on a subnet (prefix length below %d)", s, p.Addr().BitLen())
		}
		o.local = append(o.local, p)
	}
	o.peers = nil
	if len(o.peerAddrs) == 0 {
		o.peers = []netip.Addr{def[1-i][0].Addr()}
	}
	for _, s := range o.peerAddrs {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return fmt.Errorf("--peer-addr %q: %v", s, err)
		}
		o.peers = append(o.peers, a)
	}
	for _, a := range o.peers {
		onLink := false
		for _, p := range o.local {
			if p.Addr() == a {
				return fmt.Errorf("--peer-addr %v is this node's own address", a)
			}
			onLink = onLink || p.Masked().Contains(a)
		}
		if !onLink {
			return fmt.Errorf("--peer-addr %v is not on a subnet of the node (%s): the node has on-link routes only; "+
				"give --node-addr on the peer's subnet", a, subnets(o.local))
		}
	}
	return nil
}

// subnets lists the subnets of addrs.
func subnets(addrs []netip.Prefix) string {
	var s []string
	for _, p := range addrs {
		s = append(s, p.Masked().String())
	}
	return strings.Join(s, ", ")
}

// prefixes lists addrs.
func prefixes(addrs []netip.Prefix) string {
	var s []string
	for _, p := range addrs {
		s = append(s, p.String())
	}
	return strings.Join(s, ", ")
}

// hasV6 reports whether addrs hold an IPv6 address.
func hasV6(addrs []netip.Prefix) bool {
	for _, p := range addrs {
		if p.Addr().Is6() && !p.Addr().Is4In6() {
			return true
		}
	}
	return false
}

// singleNode is one node running here against a peer elsewhere.
type singleNode struct {
	o    *runOptions
	r    *outcome
	log  *zap.Logger
	name string
	mac  net.HardwareAddr
	d    *driver.Driver

	// recv is the host side's receive function, set before the driver
	// opens; the driver calls it from its SPI worker.
	recv func([]byte) bool
}

// runSingle runs one node against a peer that is not in this process:
// real silicon cabled to another board, or one chip of a chip server
// whose cable ends at a QEMU guest, passt or another host. With the
// netstack backend it resolves and pings the peer and stops, or with
// --serve stays up serving it; with the tap backend it is the host's
// Linux stack on a TAP until interrupted.
func runSingle(o *runOptions, cfg topology.Config, r *outcome) error {
	i := int(o.node[0] - 'a')
	raw, err := o.openSingle(cfg.Logger)
	if err != nil {
		return err
	}
	defer raw.Close()
	n := &singleNode{o: o, r: r, log: cfg.Logger, name: cfg.Names[i]}
	dc := cfg.Driver
	dc.Name, dc.Logger = n.name, cfg.Logger
	dc.Receive = func(f []byte) bool { return n.recv(f) }
	n.d = driver.New(o.traced(n.name, raw), dc)
	ctx, cancel := context.WithTimeout(o.ctx, o.openBudget)
	n.mac, err = readMAC(ctx, n.d)
	cancel()
	if err != nil {
		return err
	}
	r.printf("node %s: chip at %s, TSN_MAC_ADDR %v\n", n.name, o.where(), n.mac)
	r.printf("node %s: addresses %s (subnets %s); peer %v\n", n.name, prefixes(o.local), subnets(o.local), joinAddrs(o.peers))
	if o.backend == backendTAP {
		return n.runTAP()
	}
	return n.runStack()
}

func joinAddrs(as []netip.Addr) string {
	var s []string
	for _, a := range as {
		s = append(s, a.String())
	}
	return strings.Join(s, ", ")
}

// open opens the driver with recv as the host side; if that fails it
// stops the driver again (Open may have started its worker).
func (n *singleNode) open(recv func([]byte) bool) error {
	n.recv = recv
	err := n.d.Open(n.o.ctx) // bounded by --open-budget
	if err != nil {
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		n.d.Stop(sctx) //nolint:errcheck // the open error is the one to report
	}
	return err
}

// stop stops the driver, checks its TX accounting and files its losses.
// One node: the chips and the cable are not all in view, so only the
// driver's and the host's own counters can name losses.
func (n *singleNode) stop() driver.Stats {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := n.d.Stop(ctx); err != nil {
		n.r.fail("%v", err)
	}
	s := n.d.Stats()
	n.r.printf("driver %s: %+v\n", n.name, s)
	if s.TxAccounted() != s.TxOffered {
		n.r.unaccounted(&topology.Imbalance{Direction: n.name + "->peer", Op: "==", Left: s.TxAccounted(), Right: s.TxOffered,
			Equation: fmt.Sprintf("driver %s: %d accounted != %d offered", n.name, s.TxAccounted(), s.TxOffered)})
	}
	n.r.lose(topology.DriverLosses(n.name, s)...)
	return s
}

// runStack is the netstack backend of one node.
func (n *singleNode) runStack() error {
	o, r := n.o, n.r
	st, err := netstack.New(netstack.Config{Name: n.name, MAC: n.mac, Addrs: o.local, Logger: n.log})
	if err != nil {
		return err
	}
	defer st.Close()
	if err := n.open(st.Receive); err != nil {
		return err
	}
	if err := st.Attach(n.d); err != nil {
		n.stop()
		return err
	}
	stopWatch := watchProgress(o.ctx, o.cancel, []*driver.Driver{n.d}, []string{n.name}, o.stallTimeout())
	start := time.Now()
	var svc *workload.Services
	if o.serve {
		svc, err = n.serve(st)
	} else {
		n.pingPeers(st)
	}
	elapsed := time.Since(start)
	stopWatch()
	if svc != nil {
		svc.Close()
	}
	st.Close() // no more frames offered to the driver
	r.printf("stopping after %v\n", elapsed.Round(time.Millisecond))
	s := n.stop()
	ns := st.Stats()
	r.printf("netstack %s: %d frames in, %d out, %d dropped by the driver, %d dropped at a full transmit queue\n",
		n.name, ns.Received, ns.Sent, ns.SendDropped, ns.QueueDropped)
	if ns.Received != s.RxPackets {
		r.unaccounted(&topology.Imbalance{Direction: "peer->" + n.name, Op: "==", Left: ns.Received, Right: s.RxPackets,
			Equation: fmt.Sprintf("host %s: received %d != %d delivered by the driver", n.name, ns.Received, s.RxPackets)})
	}
	r.lose(topology.Loss{Count: ns.QueueDropped, Where: fmt.Sprintf("dropped at netstack %s's transmit queue (full)", n.name)})
	if svc != nil {
		for _, ss := range svc.Stats() {
			r.printf("service %-11s: %d %s, %d refused, %d bytes in, %d bytes out, %d errors\n", ss.Name, ss.Conns,
				map[bool]string{true: "datagrams", false: "connections"}[strings.HasPrefix(ss.Name, "udp")],
				ss.Refused, ss.BytesIn, ss.BytesOut, ss.Errors)
		}
	}
	return err
}

// pingPeers resolves each peer and pings it (--ping-count etc.).
func (n *singleNode) pingPeers(st *netstack.Stack) {
	r, ctx := n.r, n.o.ctx
	for _, peer := range n.o.peers {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		pmac, err := st.ResolveLink(rctx, peer)
		cancel()
		if err != nil && ctx.Err() != nil {
			return // interrupted or stalled: run reports why
		}
		if err != nil {
			r.fail("ARP/NDP %v: no answer in 5s (%v). Is the far end of the cable connected (chip serve logs "+
				"\"peer connected\"), and does it have address %v? (--peer-addr, --node-addr)", peer, err, peer)
			continue
		}
		r.printf("arp: %v is at %v\n", peer, pmac)
		res := workload.PingContext(ctx, st, peer, n.o.pingCount, n.o.pingSize, n.o.pingInterval, n.o.pingTimeout)
		r.printf("ping %v: %v\n", peer, res)
		if res.Received != res.Sent && ctx.Err() == nil {
			r.fail("ping %v: %d of %d echo replies (first error: %v)", peer, res.Received, res.Sent, res.FirstErr)
		}
	}
}

// serve runs the services until a signal or --duration, printing a line
// when a peer first answers ARP/NDP and one for every TCP connection that
// ends.
func (n *singleNode) serve(st *netstack.Stack) (*workload.Services, error) {
	r := n.r
	svc, err := workload.Serve(st, hasV6(n.o.local), func(l string) { r.printf("%s\n", l) })
	if err != nil {
		return nil, err
	}
	a := n.o.local[0].Addr()
	r.printf("serving on %s: ARP and ping; TCP and UDP echo (port %d) and discard (%d); TCP source (%d, chargen)\n",
		joinAddrs(addrsOf(n.o.local)), workload.EchoPort, workload.DiscardPort, workload.SourcePort)
	r.printf("  from the peer: ping %v;  nc %v %d < FILE (discard);  nc %v %d | head -c 4M > /dev/null (source)\n",
		a, a, workload.DiscardPort, a, workload.SourcePort)
	ctx, stop := n.o.upContext()
	defer stop()
	var wg sync.WaitGroup
	for _, peer := range n.o.peers {
		wg.Go(func() { n.watchPeer(ctx, st, peer) })
	}
	r.printf("ready: node %s is up; %s\n", n.name, stopHint(n.o.duration))
	<-ctx.Done()
	wg.Wait()
	return svc, nil
}

func addrsOf(ps []netip.Prefix) []netip.Addr {
	var as []netip.Addr
	for _, p := range ps {
		as = append(as, p.Addr())
	}
	return as
}

// watchPeer reports when peer first answers ARP/NDP, or that it never
// did. A served node does not need its peer, so neither is a failure.
func (n *singleNode) watchPeer(ctx context.Context, st *netstack.Stack, peer netip.Addr) {
	start := time.Now()
	mac, err := st.ResolveLink(ctx, peer)
	if err != nil {
		n.r.printf("peer %v never answered ARP/NDP while the node was up (is the far end of the cable connected?)\n", peer)
		return
	}
	n.r.printf("peer %v is at %v (answered after %v)\n", peer, mac, time.Since(start).Round(time.Millisecond))
}

// upContext is how long a served or TAP node stays up: until the run's
// context ends (SIGINT, SIGTERM or a stall), or for --duration if set.
func (o *runOptions) upContext() (context.Context, context.CancelFunc) {
	if o.duration <= 0 {
		return context.WithCancel(o.ctx)
	}
	return context.WithTimeout(o.ctx, o.duration)
}

func stopHint(d time.Duration) string {
	if d > 0 {
		return fmt.Sprintf("stops after %v, or at Ctrl-C (SIGINT) or SIGTERM", d)
	}
	return "stop it with Ctrl-C (SIGINT) or SIGTERM"
}

// runTAP is the tap backend of one node: the host's Linux stack on a TAP
// bound to the chip, in a namespace of its own with --netns, up until a
// signal or --duration.
func (n *singleNode) runTAP() error {
	o, r := n.o, n.r
	name := fmt.Sprintf("%s-%s", o.prefix, o.node)
	cfg := tap.Config{Name: name, MAC: n.mac, Addrs: o.local, Logger: n.log}
	if o.netns {
		cfg.Netns = name
	}
	dev, err := tap.New(cfg)
	if err != nil {
		return err
	}
	closeDev := func() {
		if err := dev.Close(); err != nil {
			r.fail("%v", err)
		}
	}
	if err := n.open(dev.Receive); err != nil {
		closeDev()
		return err
	}
	if err := dev.Attach(n.d); err != nil {
		closeDev()
		n.stop()
		return err
	}
	ctx, stop := o.upContext()
	defer stop()
	stopWatch := watchProgress(o.ctx, o.cancel, []*driver.Driver{n.d}, []string{n.name}, o.stallTimeout())
	exec := ""
	if dev.Netns() != "" {
		exec = "ip netns exec " + dev.Netns() + " "
	}
	peer := n.o.peers[0]
	r.printf("ready: %s is up with %s%s, bound to node %s's emulated chip\n", name, prefixes(o.local),
		map[bool]string{true: " in namespace " + dev.Netns(), false: " in this namespace"}[dev.Netns() != ""], n.name)
	r.printf("  %sping %v\n", exec, peer)
	r.printf("  %siperf3 -c %v      (with iperf3 -s on the peer)\n", exec, peer)
	r.printf("  %stcpdump -ni %s\n", exec, name)
	r.printf("%s; the interface%s removed then\n", stopHint(o.duration),
		map[bool]string{true: " and its namespace are", false: " is"}[dev.Netns() != ""])
	start := time.Now()
	<-ctx.Done()
	stopWatch()
	r.printf("stopping after %v\n", time.Since(start).Round(time.Millisecond))
	// The link goes down first, so the kernel sends nothing more and its
	// counters can be compared with the device's (see runTAP).
	var kernel *tap.KernelStats
	if err := dev.Quiesce(2 * time.Second); err != nil {
		r.fail("%v", err)
	}
	if ks, err := dev.KernelStats(); err != nil {
		r.fail("%v", err)
	} else {
		kernel = &ks
	}
	closeDev() // no more frames offered; interface and namespace removed
	s := n.stop()
	ts := dev.Stats()
	reportTAP(r, name, ts)
	if kernel != nil {
		auditKernel(r, name, n.name, *kernel, ts)
	}
	if ts.Written != s.RxPackets {
		r.unaccounted(&topology.Imbalance{Direction: "peer->" + name, Op: "==", Left: ts.Written, Right: s.RxPackets,
			Equation: fmt.Sprintf("tap %s: wrote %d frames to the stack, the driver delivered %d", name, ts.Written, s.RxPackets)})
	}
	if ts.Offered+ts.Dropped != s.TxOffered-s.TxBusy {
		r.unaccounted(&topology.Imbalance{Direction: name + "->peer", Op: "==", Left: ts.Offered + ts.Dropped, Right: s.TxOffered - s.TxBusy,
			Equation: fmt.Sprintf("tap %s: offered %d frames (%d taken, %d dropped), the driver saw %d (less %d busy)",
				name, ts.Offered+ts.Dropped, ts.Offered, ts.Dropped, s.TxOffered, s.TxBusy)})
	}
	return nil
}
