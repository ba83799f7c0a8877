package integration

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"tsnsim/chip"
	"tsnsim/host/netstack"
	"tsnsim/spibridge"
	"tsnsim/topology"
	"tsnsim/workload"
)

// stackAddr is node i's IPv4 (family 0) or IPv6 (family 1) address.
func stackAddr(i, family int) netip.Addr {
	if family == 0 {
		return netip.AddrFrom4([4]byte{10, 0, 0, byte(i + 1)})
	}
	return netip.AddrFrom16([16]byte{0: 0xfd, 15: byte(i + 1)})
}

// stackPair starts a topology with an embedded stack on each node.
func stackPair(tb testing.TB, spi spibridge.Timing, transport transportHook) (*topology.Topology, [2]*netstack.Stack) {
	tb.Helper()
	var stacks [2]*netstack.Stack
	for i := range 2 {
		st, err := netstack.New(netstack.Config{MAC: topology.NodeMAC(i), Addrs: []netip.Prefix{
			netip.PrefixFrom(stackAddr(i, 0), 24), netip.PrefixFrom(stackAddr(i, 1), 64)}})
		if err != nil {
			tb.Fatal(err)
		}
		stacks[i] = st
	}
	topo := newTopology(tb, topology.Config{SPI: spi, Transport: transport},
		[2]func([]byte) bool{stacks[0].Receive, stacks[1].Receive})
	if err := topo.Start(context.Background()); err != nil {
		tb.Fatal(err)
	}
	for i, st := range stacks {
		if err := st.Attach(topo.Nodes[i].Driver); err != nil {
			tb.Fatal(err)
		}
	}
	return topo, stacks
}

// stopStacks closes the stacks (no more frames offered) and then the
// topology.
func stopStacks(tb testing.TB, topo *topology.Topology, stacks [2]*netstack.Stack) {
	tb.Helper()
	for _, st := range stacks {
		st.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := topo.Close(ctx); err != nil {
		tb.Error(err)
	}
}

// TestNetstackTraffic: over two embedded stacks, ARP resolves both ways,
// pings both ways at once get replies (IPv4 at 1 ms intervals, IPv6),
// 4 MiB of TCP each way at once arrive byte-exact, and every frame is
// accounted for. The bulk part runs with the SPI model off so that it
// takes seconds, not minutes; the ping part runs on the same link.
//
// It runs in real time (gVisor's stack does not run in a synctest
// bubble), so it asserts what holds on a busy machine: a starved driver
// worker may let a chip's RX FIFO overflow, losing an echo or a TCP
// segment (counted by the chip; TCP retransmits), so it asserts eventual
// delivery and exact accounting, not zero loss. Zero loss under load is
// asserted in virtual time (TestBidirectional and the fault tests).
func TestNetstackTraffic(t *testing.T) {
	t.Run("inprocess", func(t *testing.T) { testNetstackTraffic(t, nil) })
	t.Run("socket-unix", func(t *testing.T) { testNetstackTraffic(t, socketUnix(t.TempDir())) })
}

func testNetstackTraffic(t *testing.T, transport transportHook) {
	topo, stacks := stackPair(t, spibridge.Timing{}, transport)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	parallel(func(i int) {
		mac, err := stacks[i].ResolveLink(ctx, stackAddr(1-i, 0))
		if err != nil || mac.String() != topology.NodeMAC(1-i).String() {
			t.Errorf("node %d: ARP for %v: %v, %v", i, stackAddr(1-i, 0), mac, err)
		}
	})
	var pings, pings6 [2]workload.PingResult
	parallel(func(i int) {
		pings[i] = workload.Ping(stacks[i], stackAddr(1-i, 0), 200, 56, time.Millisecond, time.Second)
	})
	parallel(func(i int) {
		pings6[i] = workload.Ping(stacks[i], stackAddr(1-i, 1), 20, 56, time.Millisecond, time.Second)
	})
	for i := range 2 {
		for _, p := range []workload.PingResult{pings[i], pings6[i]} {
			if p.Received == 0 || p.Sent == 0 {
				t.Errorf("node %d: %v (first error %v)", i, p, p.FirstErr)
			}
		}
		t.Logf("node %d ping: %v; ping6: %v", i, pings[i], pings6[i])
	}

	const size = 4 << 20
	var tcps [2]workload.TCPResult
	parallel(func(i int) {
		tcps[i] = workload.TCPBulk(ctx, stacks[i], stacks[1-i], stackAddr(1-i, 0), uint16(5001+i), size, uint64(i+1))
	})
	for i, r := range tcps {
		if r.Err != nil || r.Bytes != size {
			t.Errorf("TCP from node %d: %d of %d bytes: %v", i, r.Bytes, size, r.Err)
		} else {
			t.Logf("TCP from node %d: %d bytes in %v, %.1f Mbit/s", i, r.Bytes, r.Elapsed, float64(r.Bytes)*8/r.Elapsed.Seconds()/1e6)
		}
	}
	stopStacks(t, topo, stacks)
	for i := range 2 {
		assertAccounting(t, topo, i, stacks[1-i].Stats().Received)
	}
}

// parallel runs f(0) and f(1) at once and waits for both.
func parallel(f func(i int)) {
	done := make(chan struct{}, 2)
	for i := range 2 {
		go func() { f(i); done <- struct{}{} }()
	}
	<-done
	<-done
}

// BenchmarkNetstack measures, from node a to node b over the embedded
// stacks, the ping round-trip time and the TCP throughput, with the SPI
// model off and on (15 MHz). With the model on, TCP is reported next to
// the analytical bound: full 1514-byte frames A->B plus one 60-byte ACK
// every second segment B->A (delayed ACK), each bus carrying its own
// share (see tcpBound).
func BenchmarkNetstack(b *testing.B) {
	for _, m := range []struct {
		name string
		spi  spibridge.Timing
	}{{"unthrottled", spibridge.Timing{}}, {"spi15MHz", spibridge.DefaultTiming()}} {
		b.Run("ping/"+m.name, func(b *testing.B) {
			topo, stacks := stackPair(b, m.spi, nil)
			defer stopStacks(b, topo, stacks)
			// Resolve and warm up before timing.
			if r := workload.Ping(stacks[0], stackAddr(1, 0), 5, 56, 0, time.Second); r.Received != r.Sent {
				b.Fatalf("warm-up: %v", r)
			}
			b.ResetTimer()
			r := workload.Ping(stacks[0], stackAddr(1, 0), b.N, 56, 0, time.Second)
			b.StopTimer()
			if r.Received != r.Sent {
				b.Fatalf("%v (first error %v)", r, r.FirstErr)
			}
			b.ReportMetric(float64(r.Sum.Microseconds())/float64(r.Received), "rtt-us")
			b.ReportMetric(float64(r.Min.Microseconds()), "min-rtt-us")
		})
		b.Run("tcp/"+m.name, func(b *testing.B) {
			topo, stacks := stackPair(b, m.spi, nil)
			defer stopStacks(b, topo, stacks)
			n := int64(b.N) * 64 << 10
			b.SetBytes(64 << 10)
			b.ResetTimer()
			r := workload.TCPBulk(context.Background(), stacks[0], stacks[1], stackAddr(1, 0), 5001, n, 1)
			b.StopTimer()
			if r.Err != nil {
				b.Fatal(r.Err)
			}
			mbps := float64(r.Bytes) * 8 / r.Elapsed.Seconds() / 1e6
			b.ReportMetric(mbps, "Mbit/s")
			if m.spi.Throttled() {
				bound := tcpBound(m.spi)
				b.ReportMetric(bound, "bound-Mbit/s")
				b.ReportMetric(mbps/bound, "ratio")
			}
		})
	}
}

// tcpBound is the analytical TCP goodput limit of chip.md section 5 for
// one-way bulk data: per 1448-byte segment (1514-byte frame), bus A
// writes the frame and reads half an ACK (60-byte frame); bus B reads
// the frame and writes half an ACK; goodput = 1448*8 / max(busA, busB).
func tcpBound(t spibridge.Timing) float64 {
	const mss, data, ack = 1448, 1514, 60
	_, dataA, dataB, _ := oneWayBound(data, t, chip.DefaultLinkBitsPerSec)
	_, ackB, ackA, _ := oneWayBound(ack, t, chip.DefaultLinkBitsPerSec)
	busA := dataA + ackA/2
	busB := dataB + ackB/2
	return mss * 8 / max(busA, busB).Seconds() / 1e6
}
