package integration

import (
	"context"
	"encoding/binary"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"tsnsim/driver"
	"tsnsim/fault"
	"tsnsim/spibridge"
	"tsnsim/topology"
)

// pingResult is what one node saw in a bidirectional ping run.
type pingResult struct {
	requests, replies uint64 // requests it sent, replies it got back
	lost              uint64 // frames refused with ErrBusy and given up
}

// pingBothWays reproduces chip.md section 6, scenario 1: both nodes send
// echo requests every interval and answer the other's requests at once,
// over the full SPI timing model. Like the field driver, a frame refused
// with NETDEV_TX_BUSY is lost.
func pingBothWays(t *testing.T, ring int, spi spibridge.Timing, transport transportHook, count int, interval time.Duration, size int, faults ...string) [2]pingResult {
	t.Helper()
	var res [2]pingResult
	var replies, lost [2]atomic.Uint64
	var topo *topology.Topology
	echo := func(i int) func([]byte) bool {
		return func(f []byte) bool {
			switch f[14] {
			case 1: // request: answer with a reply of the same size
				reply := append([]byte(nil), f...)
				copy(reply[0:6], f[6:12])
				copy(reply[6:12], topology.NodeMAC(i))
				reply[14] = 2
				if err := topo.Nodes[i].Driver.Transmit(reply); errors.Is(err, driver.ErrBusy) {
					lost[i].Add(1)
				}
			case 2:
				replies[i].Add(1)
			}
			return true
		}
	}
	var inj *fault.Injector
	if len(faults) > 0 {
		inj = fault.New(1, time.Now(), nil)
		defer inj.Close()
		for _, f := range faults {
			spec, err := fault.ParseSpec(f)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := inj.Add(spec); err != nil {
				t.Fatal(err)
			}
		}
	}
	topo = newTopology(t, topology.Config{SPI: spi, Driver: driver.Config{TxRingSize: ring}, Transport: transport, Faults: inj},
		[2]func([]byte) bool{echo(0), echo(1)})
	ctx := context.Background()
	if err := topo.Start(ctx); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Go(func() {
			// The two hosts' ping timers are independent: node 1's runs
			// 1.37% slower, so over the run the phases of the two
			// streams sweep through each other.
			tick := time.NewTicker(interval + time.Duration(i)*interval*137/10000)
			defer tick.Stop()
			for seq := range count {
				f := make([]byte, size)
				copy(f[0:6], topology.NodeMAC(1-i))
				copy(f[6:12], topology.NodeMAC(i))
				binary.BigEndian.PutUint16(f[12:], 0x88B5)
				f[14] = 1
				binary.BigEndian.PutUint32(f[15:], uint32(seq))
				switch err := topo.Nodes[i].Driver.Transmit(f); {
				case err == nil:
					res[i].requests++
				case errors.Is(err, driver.ErrBusy):
					lost[i].Add(1)
				default:
					t.Error(err)
				}
				<-tick.C
			}
		})
	}
	wg.Wait()
	time.Sleep(100 * time.Millisecond) // let the last replies come back
	closeTopology(t, topo)
	for i := range 2 {
		res[i].replies, res[i].lost = replies[i].Load(), lost[i].Load()
		s := topo.Nodes[i].Driver.Stats()
		if s.TxBusy != res[i].lost {
			t.Errorf("node %d: driver counted %d tx_busy, senders saw %d", i, s.TxBusy, res[i].lost)
		}
		if got := s.TxAccounted(); got != s.TxOffered {
			t.Errorf("node %d: offered %d, accounted %d", i, s.TxOffered, got)
		}
	}
	return res
}

// TestScenario1TxRing: with a 1-entry TX ring, bidirectional ping loses
// frames to NETDEV_TX_BUSY; with the default 64-entry ring, the same
// offered load loses none.
func TestScenario1TxRing(t *testing.T) {
	forEachTransport(t, testScenario1TxRing)
}

func testScenario1TxRing(t *testing.T, transport transportHook) {
	const count, interval, size = 1000, time.Millisecond, 200
	synctest.Test(t, func(t *testing.T) {
		r := pingBothWays(t, 1, spibridge.DefaultTiming(), transport, count, interval, size)
		t.Logf("ring 1: %+v", r)
		for i, n := range r {
			if n.lost == 0 || n.replies >= count {
				t.Errorf("ring 1, node %d: expected loss, got %+v", i, n)
			}
		}
	})
	synctest.Test(t, func(t *testing.T) {
		r := pingBothWays(t, driver.DefaultTxRingSize, spibridge.DefaultTiming(), transport, count, interval, size)
		t.Logf("ring 64: %+v", r)
		for i, n := range r {
			if n.lost != 0 || n.requests != count || n.replies != count {
				t.Errorf("ring 64, node %d: expected no loss, got %+v", i, n)
			}
		}
	})
}

// TestScenario1UnderSPILatency: scenario 1 again with SPI latency spikes
// on both buses (10% of transfers held 100-300 us longer): the 1-entry
// ring still loses, the 64-entry ring still loses nothing.
func TestScenario1UnderSPILatency(t *testing.T) {
	const count, interval, size = 1000, time.Millisecond, 200
	latency := "spi.latency:latency=100us,jitter=200us,p=0.1"
	synctest.Test(t, func(t *testing.T) {
		r := pingBothWays(t, 1, spibridge.DefaultTiming(), nil, count, interval, size, latency)
		t.Logf("ring 1 under latency: %+v", r)
		for i, n := range r {
			if n.lost == 0 {
				t.Errorf("ring 1, node %d: expected loss, got %+v", i, n)
			}
		}
	})
	synctest.Test(t, func(t *testing.T) {
		r := pingBothWays(t, driver.DefaultTxRingSize, spibridge.DefaultTiming(), nil, count, interval, size, latency)
		t.Logf("ring 64 under latency: %+v", r)
		for i, n := range r {
			if n.lost != 0 || n.requests != count || n.replies != count {
				t.Errorf("ring 64, node %d: expected no loss, got %+v", i, n)
			}
		}
	})
}
