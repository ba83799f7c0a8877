package main

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/spf13/pflag"

	"tsnsim/host/netstack"
	"tsnsim/topology"
	"tsnsim/workload"
)

// stackOptions are the flags of the netstack workload.
type stackOptions struct {
	pingCount    int
	pingInterval time.Duration
	pingSize     int
	pingTimeout  time.Duration
	tcpBytes     int64
	addrs        [2][]netip.Prefix
}

func (o *stackOptions) addFlags(fs *pflag.FlagSet) {
	fs.IntVar(&o.pingCount, "ping-count", 100, "netstack backend: ICMP echo requests each way")
	fs.DurationVar(&o.pingInterval, "ping-interval", 10*time.Millisecond, "netstack backend: interval between echo requests (the field report used 0.5s)")
	fs.IntVar(&o.pingSize, "ping-size", 56, "netstack backend: echo payload bytes (0-1472)")
	fs.DurationVar(&o.pingTimeout, "ping-timeout", time.Second, "netstack backend: wait this long for each echo reply")
	fs.Int64Var(&o.tcpBytes, "tcp-bytes", 2<<20, "netstack backend: TCP bulk bytes each way (0 skips the transfer)")
}

func (o *stackOptions) validate() error {
	switch {
	case o.pingCount < 0 || o.pingCount > 65535:
		return fmt.Errorf("--ping-count %d: want 0-65535", o.pingCount)
	case o.pingInterval < 0:
		return fmt.Errorf("--ping-interval must not be negative")
	case o.pingSize < 0 || o.pingSize > 1472:
		return fmt.Errorf("--ping-size %d: want 0-1472", o.pingSize)
	case o.pingTimeout <= 0:
		return fmt.Errorf("--ping-timeout must be positive")
	case o.tcpBytes < 0:
		return fmt.Errorf("--tcp-bytes must not be negative")
	}
	o.addrs = nodeAddrs()
	return nil
}

// nodeAddrs are the addresses of node i: 10.0.0.(i+1)/24 and
// fd00::(i+1)/64.
func nodeAddrs() [2][]netip.Prefix {
	var a [2][]netip.Prefix
	for i := range 2 {
		a[i] = []netip.Prefix{
			netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 0, 0, byte(i + 1)}), 24),
			netip.PrefixFrom(netip.AddrFrom16([16]byte{0: 0xfd, 15: byte(i + 1)}), 64),
		}
	}
	return a
}

// runStack is the netstack backend: each node an embedded TCP/IP stack;
// ARP both ways, ping both ways at once, TCP bulk both ways at once.
func runStack(o *runOptions, cfg topology.Config, r *outcome) error {
	var stacks [2]*netstack.Stack
	for i := range 2 {
		st, err := netstack.New(netstack.Config{Name: cfg.Names[i], MAC: topology.NodeMAC(i), Addrs: o.addrs[i], Logger: cfg.Logger})
		if err != nil {
			return err
		}
		defer st.Close()
		stacks[i] = st
	}
	topo, err := o.buildTopology(cfg, [2]func([]byte) bool{stacks[0].Receive, stacks[1].Receive})
	if err != nil {
		return err
	}
	ctx := o.ctx
	if err := topo.Start(ctx); err != nil {
		return startFailed(topo, r, err, [2]uint64{stacks[0].Stats().Received, stacks[1].Stats().Received})
	}
	for i, st := range stacks {
		if err := st.Attach(topo.Nodes[i].Driver); err != nil {
			closeTopology(topo, r)
			return err
		}
	}
	stopWatch := o.watch(topo, r)
	peer := func(i, family int) netip.Addr { return o.addrs[1-i][family].Addr() }
	name := func(i int) string { return topo.Nodes[i].Name }
	start := time.Now()

	// ARP, then IPv4 pings, IPv6 pings and TCP, each both ways at once.
	both(func(i int) {
		t0 := time.Now()
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		mac, err := stacks[i].ResolveLink(rctx, peer(i, 0))
		if err != nil {
			if ctx.Err() == nil {
				r.fail("ARP %s->%s: %v", name(i), name(1-i), err)
			}
			return
		}
		r.printf("arp %s: %v is at %v (resolved in %v)\n", name(i), peer(i, 0), mac, time.Since(t0).Round(time.Microsecond))
		if mac.String() != topology.NodeMAC(1-i).String() {
			r.fail("ARP %s: %v resolved to %v, want %v", name(i), peer(i, 0), mac, topology.NodeMAC(1-i))
		}
	})
	var pings, pings6 [2]workload.PingResult
	both(func(i int) {
		pings[i] = workload.PingContext(ctx, stacks[i], peer(i, 0), o.pingCount, o.pingSize, o.pingInterval, o.pingTimeout)
	})
	both(func(i int) {
		pings6[i] = workload.PingContext(ctx, stacks[i], peer(i, 1), min(o.pingCount, 10), o.pingSize, o.pingInterval, o.pingTimeout)
	})
	var tcps [2]workload.TCPResult
	if o.tcpBytes > 0 && ctx.Err() == nil {
		both(func(i int) {
			tcps[i] = workload.TCPBulk(ctx, stacks[i], stacks[1-i], peer(i, 0), uint16(5001+i), o.tcpBytes, uint64(i+1))
		})
	}
	elapsed := time.Since(start)
	stopWatch()
	drain(topo, r) // the last ACKs and replies, with the stacks still there to take them
	for _, st := range stacks {
		st.Close() // no more frames offered to the drivers
	}
	drain(topo, r)
	closeTopology(topo, r)
	interrupted := ctx.Err() != nil

	for i := range 2 {
		for _, p := range []struct {
			label string
			res   workload.PingResult
			to    netip.Addr
		}{{"ping", pings[i], peer(i, 0)}, {"ping6", pings6[i], peer(i, 1)}} {
			r.printf("%s %s->%s %v: %v\n", p.label, name(i), name(1-i), p.to, p.res)
			if p.res.Received != p.res.Sent && !interrupted {
				r.fail("%s %s->%s: %d of %d echo replies (first error: %v)", p.label, name(i), name(1-i), p.res.Received, p.res.Sent, p.res.FirstErr)
			}
		}
	}
	for i, t := range tcps {
		if o.tcpBytes == 0 || (interrupted && t == (workload.TCPResult{})) {
			break
		}
		rate := ""
		if t.Elapsed > 0 {
			rate = fmt.Sprintf(": %.2f Mbit/s", float64(t.Bytes)*8/t.Elapsed.Seconds()/1e6)
		}
		switch {
		case t.Err != nil && interrupted:
			r.printf("tcp %s->%s: %d of %d bytes in %v%s, content verified, then interrupted\n", name(i), name(1-i),
				t.Bytes, o.tcpBytes, t.Elapsed.Round(time.Millisecond), rate)
		case t.Err != nil:
			r.fail("TCP %s->%s: %d of %d bytes: %v", name(i), name(1-i), t.Bytes, o.tcpBytes, t.Err)
		default:
			r.printf("tcp %s->%s: %d bytes in %v%s, content verified\n", name(i), name(1-i),
				t.Bytes, t.Elapsed.Round(time.Millisecond), rate)
		}
	}
	topo.WriteReport(r.out, elapsed)
	var delivered [2]uint64
	for i, st := range stacks {
		s := st.Stats()
		r.printf("netstack %s: %d frames in, %d out, %d dropped by the driver, %d dropped at a full transmit queue\n",
			name(i), s.Received, s.Sent, s.SendDropped, s.QueueDropped)
		delivered[i] = s.Received
		r.lose(topology.Loss{Count: s.QueueDropped, Where: fmt.Sprintf("dropped at netstack %s's transmit queue (full)", name(i))})
	}
	r.audit(topo, delivered)
	return nil
}

// both runs f(0) and f(1) concurrently and waits for both.
func both(f func(i int)) {
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Go(func() { f(i) })
	}
	wg.Wait()
}
