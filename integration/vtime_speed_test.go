package integration

import (
	"context"
	"os"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"golang.org/x/sys/unix"

	"tsnsim/spibridge"
	"tsnsim/topology"
	"tsnsim/traffic"
	"tsnsim/workload"
)

// speedEnv turns the virtual-time speed measurements on: they take tens
// of seconds of CPU and assert nothing about speed (the machine may be
// shared), so the ordinary suite skips them. Run them with
//
//	TSNSIM_SPEED=1 go test ./integration -run VirtualTimeSpeed -v
//
// and, for "one core", add TSNSIM_SPEED_PROCS=1 (GOMAXPROCS for the run).
const speedEnv = "TSNSIM_SPEED"

// speedClock is what a virtual-time run costs in reality: the wall
// (CLOCK_MONOTONIC, read through the kernel because time.Now is virtual
// inside a bubble) and the process's CPU time.
type speedClock struct{ wall, cpu time.Duration }

func readSpeedClock(tb testing.TB) speedClock {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		tb.Fatal(err)
	}
	return speedClock{wall: time.Duration(ts.Nano()), cpu: processCPU(tb)}
}

// reportSpeed logs the speed of a virtual-time run that covered emulated
// seconds, from c0 to now, in a line a script can read.
func reportSpeed(t *testing.T, name string, emulated time.Duration, c0 speedClock, extra string) {
	c1 := readSpeedClock(t)
	wall, cpu := c1.wall-c0.wall, c1.cpu-c0.cpu
	t.Logf("SPEED %s: emulated %.3fs, wall %.3fs, cpu %.3fs, GOMAXPROCS %d: %.1f emulated s per wall s, %.1f per CPU s%s",
		name, emulated.Seconds(), wall.Seconds(), cpu.Seconds(), runtime.GOMAXPROCS(0),
		emulated.Seconds()/wall.Seconds(), emulated.Seconds()/cpu.Seconds(), extra)
}

func speedSetup(t *testing.T) {
	if os.Getenv(speedEnv) == "" {
		t.Skipf("speed measurement; set %s=1 to run it", speedEnv)
	}
	if p, err := strconv.Atoi(os.Getenv(speedEnv + "_PROCS")); err == nil && p > 0 {
		old := runtime.GOMAXPROCS(p)
		t.Cleanup(func() { runtime.GOMAXPROCS(old) })
	}
}

// TestVirtualTimeSpeedFrames: the standard bidirectional load (mixed
// 60-1514 B frames both ways, SPI model on at 15 MHz, link at 100
// Mbit/s, senders requeueing on a full ring) in virtual time, reporting
// emulated seconds per wall second and per CPU second. Every frame must
// arrive and be accounted for.
func TestVirtualTimeSpeedFrames(t *testing.T) {
	speedSetup(t)
	const n = 20000 // frames each way: about 19 s of emulated time
	var emulated time.Duration
	c0 := readSpeedClock(t)
	synctest.Test(t, func(t *testing.T) {
		ss := streams(0)
		checkers := [2]*traffic.Checker{traffic.NewChecker(ss[1]), traffic.NewChecker(ss[0])}
		topo := newTopology(t, topology.Config{SPI: spibridge.DefaultTiming()},
			[2]func([]byte) bool{checkers[0].Receive, checkers[1].Receive})
		ctx := context.Background()
		if err := topo.Start(ctx); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		var wg sync.WaitGroup
		for i := range 2 {
			wg.Go(func() {
				if res, err := traffic.Send(ctx, topo.Nodes[i].Driver, ss[i], n, 0, traffic.Requeue); err != nil || res.Sent != n {
					t.Errorf("node %d: sent %d of %d: %v", i, res.Sent, n, err)
				}
			})
		}
		wg.Wait()
		for i, c := range checkers {
			if !c.WaitFor(ctx, n, time.Second) {
				t.Errorf("node %d received %d of %d", i, c.Result().Received, n)
			}
		}
		emulated = time.Since(start)
		closeTopology(t, topo)
		for i, c := range checkers {
			assertAccounting(t, topo, 1-i, c.Result().Received)
		}
	})
	reportSpeed(t, "frames", emulated, c0, "")
}

// TestVirtualTimeSpeedTCP: the embedded stacks with TCP both ways at
// once over the same model (15 MHz SPI, 100 Mbit/s link), in virtual
// time, reporting emulated seconds per wall second and per CPU second.
//
// Not measurable yet: gVisor's netstack does not run under synctest with
// this Go. Its goroutines park through gvisor.dev/gvisor/pkg/sync.Gopark
// (package sleep, the TCP processors), and Go 1.26's synctest counts a
// goroutine as durably blocked only in a few waits: a sleep, and a
// channel operation or select on channels created in the bubble
// (waitReasonSynctestSelect and its kind), never the plain "select" wait
// that Gopark gives. So the bubble never advances its clock and the first
// time.Sleep (the driver's Open) never returns. A newer gVisor does not
// help: v0.0.0-20260905035102-160fafc42237, the latest on the module
// proxy on 2026-12-01, has Go 1.26's wait-reason numbers and parks the
// same way (tried: the test hangs in tcp.(*processor).start). The test
// skips, saying so, until gVisor's waits are ones synctest can see.
func TestVirtualTimeSpeedTCP(t *testing.T) {
	speedSetup(t)
	t.Skip("not measurable yet: gVisor's netstack parks with wait reasons synctest does not count as durable (Go 1.26), so virtual time never advances; see the comment")
	const size = 8 << 20 // bytes each way: about 6 s of emulated time
	var emulated time.Duration
	var tcps [2]workload.TCPResult
	c0 := readSpeedClock(t)
	synctest.Test(t, func(t *testing.T) {
		topo, stacks := stackPair(t, spibridge.DefaultTiming(), nil)
		ctx := context.Background()
		start := time.Now()
		parallel(func(i int) {
			tcps[i] = workload.TCPBulk(ctx, stacks[i], stacks[1-i], stackAddr(1-i, 0), uint16(5001+i), size, uint64(i+1))
		})
		emulated = time.Since(start)
		stopStacks(t, topo, stacks)
		for i, r := range tcps {
			if r.Err != nil || r.Bytes != size {
				t.Errorf("TCP from node %d: %d of %d bytes: %v", i, r.Bytes, size, r.Err)
			}
			assertAccounting(t, topo, i, stacks[1-i].Stats().Received)
		}
	})
	extra := ""
	for i, r := range tcps {
		extra += ", TCP from node " + strconv.Itoa(i) + " " + strconv.FormatFloat(float64(r.Bytes)*8/r.Elapsed.Seconds()/1e6, 'f', 1, 64) + " Mbit/s emulated"
	}
	reportSpeed(t, "tcp", emulated, c0, extra)
}
