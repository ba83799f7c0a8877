package integration

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"tsnsim/cable"
	"tsnsim/chip"
	"tsnsim/chip/proto"
	"tsnsim/chip/regs"
	"tsnsim/driver"
	"tsnsim/spibridge"
	"tsnsim/topology"
	"tsnsim/traffic"
)

// benchWindow is how many frames a one-way sender keeps in flight (sent,
// not yet received). Nothing flows back from B's RX FIFO to A, so an
// unthrottled sender with no window overruns it; 32 maximum-size frames
// (32 x 95 words) fit the default 4096-word RX frame FIFO and are below
// the 64-entry TX ring, so the window is the only limit.
const benchWindow = 32

// benchSizes are the frame sizes of the benchmarks (Ethernet header and
// payload, without FCS).
var benchSizes = []int{64, 1514}

// benchIdle is how long a benchmark waits with no frame arriving before
// it gives up on the missing ones.
const benchIdle = 5 * time.Second

// windowedRun is one run of BenchmarkOneWay: n frames of one size,
// numbered in bytes 14..21, at most benchWindow in flight.
type windowedRun struct {
	n, size  int
	window   chan struct{} // one token per frame in flight
	next     uint64        // expected sequence number (receiver only)
	received atomic.Int64
	bad      atomic.Int64  // out of order or wrong length
	done     chan struct{} // closed when frame n arrived
}

func newWindowedRun(n, size int) *windowedRun {
	return &windowedRun{n: n, size: size, window: make(chan struct{}, benchWindow), done: make(chan struct{})}
}

// receive is the receive callback: check, count, open the window.
func (r *windowedRun) receive(f []byte) bool {
	if len(f) != r.size || binary.BigEndian.Uint64(f[14:]) != r.next {
		r.bad.Add(1)
	}
	r.next++
	<-r.window
	if r.received.Add(1) == int64(r.n) {
		close(r.done)
	}
	return true
}

// send offers the n frames through transmit, waiting on wake when it
// reports busy (isBusy), then waits for all of them to arrive. It returns
// the time from the first send to the last arrival.
func (r *windowedRun) send(b *testing.B, transmit func([]byte) error, isBusy func(error) bool, wake <-chan struct{}) time.Duration {
	b.Helper()
	frame := traffic.Stream{Src: topology.NodeMAC(0), Dst: topology.NodeMAC(1), Seed: 1, Size: r.size}.Frame(0)
	start := time.Now()
	for seq := range uint64(r.n) {
		r.window <- struct{}{}
		binary.BigEndian.PutUint64(frame[14:], seq) // Transmit does not retain frame
		for {
			err := transmit(frame)
			if err == nil {
				break
			}
			if !isBusy(err) {
				b.Fatalf("frame %d: %v", seq, err)
			}
			select {
			case <-wake:
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	for {
		got := r.received.Load()
		select {
		case <-r.done:
			elapsed := time.Since(start)
			if bad := r.bad.Load(); bad != 0 {
				b.Fatalf("%d of %d frames out of order or of the wrong length", bad, r.n)
			}
			return elapsed
		case <-time.After(benchIdle):
			if r.received.Load() == got {
				b.Fatalf("received %d of %d frames (none for %v)", got, r.n, benchIdle)
			}
		}
	}
}

// reportRate reports frames/s and Mbit/s (frame bytes without FCS) of
// frames frames of size bytes moved in elapsed.
func reportRate(b *testing.B, frames, size int, elapsed time.Duration) float64 {
	fps := float64(frames) / elapsed.Seconds()
	b.ReportMetric(fps, "frames/s")
	b.ReportMetric(fps*float64(size)*8/1e6, "Mbit/s")
	return fps
}

// BenchmarkOneWay measures the emulator's own cost: frames A->B with the
// SPI and link timing models off, against a baseline that moves the same
// frames through the same goroutine hand-offs and copies with no model
// (basePipe). Both use the same sender window and receive callback.
func BenchmarkOneWay(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(fmt.Sprintf("emulated/%d", size), func(b *testing.B) { benchEmulatedOneWay(b, size) })
	}
	for _, size := range benchSizes {
		b.Run(fmt.Sprintf("baseline/%d", size), func(b *testing.B) { benchBaselineOneWay(b, size) })
	}
}

func benchEmulatedOneWay(b *testing.B, size int) {
	r := newWindowedRun(b.N, size)
	topo := newTopology(b, topology.Config{
		Chip:  chip.Config{LinkBitsPerSec: -1},
		SPI:   spibridge.Timing{}, // unthrottled
		Cable: cable.Config{LinkBitsPerSec: -1, Propagation: -1},
	}, [2]func([]byte) bool{nil, r.receive})
	if err := topo.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	defer closeBenchTopology(b, topo)
	drv := topo.Nodes[0].Driver
	b.SetBytes(int64(size))
	b.ReportAllocs()
	b.ResetTimer()
	elapsed := r.send(b, drv.Transmit, func(err error) bool { return errors.Is(err, driver.ErrBusy) }, drv.Wake())
	b.StopTimer()
	reportRate(b, b.N, size, elapsed)
	// SPI transfers per frame on B: 2 when every metadata read finds a
	// frame, more when the worker polls an empty FIFO.
	b.ReportMetric(float64(topo.Nodes[1].Bus.Stats().Transfers)/float64(b.N), "rx-xfers/frame")
}

func benchBaselineOneWay(b *testing.B, size int) {
	r := newWindowedRun(b.N, size)
	p := newBasePipe(driver.DefaultTxRingSize, r.receive)
	defer p.close()
	b.SetBytes(int64(size))
	b.ReportAllocs()
	b.ResetTimer()
	elapsed := r.send(b, p.transmit, func(err error) bool { return errors.Is(err, errBaseBusy) }, p.wake)
	b.StopTimer()
	reportRate(b, b.N, size, elapsed)
}

// closeBenchTopology closes topo and fails the benchmark on error.
func closeBenchTopology(b *testing.B, topo *topology.Topology) {
	b.Helper()
	b.StopTimer()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := topo.Close(ctx); err != nil {
		b.Errorf("close: %v", err)
	}
}

// oneWayBound is the analytical throughput bound of one-way traffic A->B
// of frames of size bytes (without FCS) under SPI timing t and link speed
// linkBps (chip.md section 5), in frames/s, with the per-frame cost of
// each resource. Per frame:
//
//   - bus A carries one TX write: header 3 + tx_metadata 32 + N + FCS 4
//     = 39+N bytes, N the frame padded to 60 bytes, taking
//     8(39+N)/ClockHz + Overhead;
//   - bus B carries the RX metadata read (14 bytes) and the RX frame read
//     (header+turnaround 4 + N + FCS 4 bytes), each with its own
//     Overhead: 8(14)/ClockHz + 8(8+N)/ClockHz + 2 Overhead;
//   - the link carries preamble 8 + N + FCS 4 + inter-frame gap 12 bytes
//     at linkBps (never the bottleneck at 15 MHz SPI vs 100 Mbit/s).
//
// The three run in parallel, so the bound is 1/max(busA, busB, link).
func oneWayBound(size int, t spibridge.Timing, linkBps int64) (fps float64, busA, busB, link time.Duration) {
	n := max(size, proto.MinFrameLen)
	busA = t.Duration(proto.TxWriteHeader + n + proto.FCSLen)
	busB = t.Duration(proto.RxMetaReadLen) + t.Duration(proto.ReadDataStart+n+proto.FCSLen)
	wire := chip.PreambleLen + n + proto.FCSLen + regs.DefaultInterFrameGap
	link = time.Duration(int64(wire) * 8 * int64(time.Second) / linkBps)
	return 1 / max(busA, busB, link).Seconds(), busA, busB, link
}

// TestOneWayBound pins the bound to the figures of chip.md section 5.
func TestOneWayBound(t *testing.T) {
	fps, a, bb, l := oneWayBound(64, spibridge.DefaultTiming(), chip.DefaultLinkBitsPerSec)
	// bus A: 103 bytes = 54.933us + 20us; bus B: 14 bytes = 7.466us, 72
	// bytes = 38.4us, + 40us; link: 88 bytes = 7.04us.
	if a != 74933*time.Nanosecond || bb != 85866*time.Nanosecond || l != 7040*time.Nanosecond {
		t.Errorf("64: busA %v, busB %v, link %v", a, bb, l)
	}
	if fps < 11645 || fps > 11647 {
		t.Errorf("64: bound %.1f frames/s", fps)
	}
}

// BenchmarkModelOn measures one-way A->B throughput with the SPI model on
// (15 MHz, 20 us overhead) and the link at 100 Mbit/s, in real time: the
// sender offers frames as fast as the driver takes them (traffic.Requeue)
// and nothing throttles it to B's pace, so B's RX FIFOs may overflow;
// lost frames are reported, not failed. It reports the rate at which B's
// host received frames against the analytical bound (oneWayBound).
func BenchmarkModelOn(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(fmt.Sprint(size), func(b *testing.B) { benchModelOn(b, size) })
	}
}

func benchModelOn(b *testing.B, size int) {
	timing := spibridge.DefaultTiming()
	var received atomic.Int64
	var last atomic.Int64 // UnixNano of the last arrival
	receive := func(f []byte) bool {
		last.Store(time.Now().UnixNano())
		received.Add(1)
		return true
	}
	topo := newTopology(b, topology.Config{
		Chip: chip.Config{LinkBitsPerSec: chip.DefaultLinkBitsPerSec},
		SPI:  timing,
	}, [2]func([]byte) bool{nil, receive})
	ctx := context.Background()
	if err := topo.Start(ctx); err != nil {
		b.Fatal(err)
	}
	defer closeBenchTopology(b, topo)
	s := traffic.Stream{Src: topology.NodeMAC(0), Dst: topology.NodeMAC(1), Seed: 1, Size: size}
	b.SetBytes(int64(size))
	b.ResetTimer()
	start := time.Now()
	res, err := traffic.Send(ctx, topo.Nodes[0].Driver, s, uint64(b.N), 0, traffic.Requeue)
	if err != nil || res.Sent != uint64(b.N) {
		b.Fatalf("sent %d of %d: %v", res.Sent, b.N, err)
	}
	// Wait until every frame arrived or was dropped by chip B, or until
	// nothing moves any more.
	dst := topo.Nodes[1].Chip
	for idle := time.Now(); ; {
		got := received.Load()
		if got+int64(dst.Register(regs.FDTotalDropFrameCnt)) >= int64(b.N) {
			break
		}
		time.Sleep(time.Millisecond)
		if received.Load() != got {
			idle = time.Now()
		} else if time.Since(idle) > time.Second {
			break
		}
	}
	b.StopTimer()
	got := received.Load()
	if got == 0 {
		b.Fatalf("no frame of %d arrived", b.N)
	}
	elapsed := time.Unix(0, last.Load()).Sub(start)
	fps := reportRate(b, int(got), size, elapsed)
	bound, _, _, _ := oneWayBound(size, timing, chip.DefaultLinkBitsPerSec)
	b.ReportMetric(bound, "bound-frames/s")
	b.ReportMetric(bound*float64(size)*8/1e6, "bound-Mbit/s")
	b.ReportMetric(fps/bound, "ratio")
	b.ReportMetric(100*float64(int64(b.N)-got)/float64(b.N), "lost-%")
	// Emulated bus time per wall time: 1 means the bus model ran at its
	// full rate; below 1, real time lost to timer wake-ups or the worker.
	busA, busB := topo.Nodes[0].Bus.Stats(), topo.Nodes[1].Bus.Stats()
	b.ReportMetric(busA.Busy.Seconds()/elapsed.Seconds(), "busA-util")
	b.ReportMetric(busB.Busy.Seconds()/elapsed.Seconds(), "busB-util")
	b.ReportMetric(float64(busB.Transfers)/float64(max(got, 1)), "rx-xfers/frame")
}
