package integration

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"tsnsim/cable"
	"tsnsim/chip"
	"tsnsim/driver"
	"tsnsim/spibridge"
	"tsnsim/topology"
)

// pairedChunks is how many alternating chunks BenchmarkOneWayPaired
// splits b.N frames into, for each side.
const pairedChunks = 8

// BenchmarkOneWayPaired is BenchmarkOneWay's comparison made robust on a
// shared machine: the emulated path and the baseline (basePipe) run in
// the same process in alternating chunks of b.N/8 frames (emulated,
// baseline, emulated, ...), so both see the same machine load, and it
// reports the ratio of their throughputs (emulated/baseline, the bar of
// issue 13: >= 0.5 at 64 B, >= 0.7 at 1514 B), the CPU time each takes
// per frame (process user+system time over the chunk, GC included) and
// how many CPUs each kept busy (cores).
func BenchmarkOneWayPaired(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(fmt.Sprint(size), func(b *testing.B) { benchPaired(b, size) })
	}
}

func benchPaired(b *testing.B, size int) {
	var cur atomic.Pointer[windowedRun]
	topo := newTopology(b, topology.Config{
		Chip:  chip.Config{LinkBitsPerSec: -1},
		SPI:   spibridge.Timing{}, // unthrottled
		Cable: cable.Config{LinkBitsPerSec: -1, Propagation: -1},
	}, [2]func([]byte) bool{nil, func(f []byte) bool { return cur.Load().receive(f) }})
	if err := topo.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	defer closeBenchTopology(b, topo)
	drv := topo.Nodes[0].Driver
	p := newBasePipe(driver.DefaultTxRingSize, func(f []byte) bool { return cur.Load().receive(f) })
	defer p.close()
	isBusy := func(err error) bool { return errors.Is(err, driver.ErrBusy) || errors.Is(err, errBaseBusy) }

	chunk := max(b.N/pairedChunks, 1)
	var emu, base pairedSide
	b.SetBytes(int64(size))
	b.ReportAllocs()
	b.ResetTimer()
	for done := 0; done < b.N; done += chunk {
		n := min(chunk, b.N-done)
		emu.run(b, &cur, n, size, drv.Transmit, isBusy, drv.Wake())
		base.run(b, &cur, n, size, p.transmit, isBusy, p.wake)
	}
	b.StopTimer()
	ef, bf := emu.rate(), base.rate()
	b.ReportMetric(ef, "emu-frames/s")
	b.ReportMetric(bf, "base-frames/s")
	b.ReportMetric(ef/bf, "ratio")
	b.ReportMetric(emu.cpuPerFrame(), "emu-cpu-ns/frame")
	b.ReportMetric(base.cpuPerFrame(), "base-cpu-ns/frame")
	b.ReportMetric(emu.cores(), "emu-cores")
	b.ReportMetric(base.cores(), "base-cores")
}

// pairedSide accumulates one side's chunks.
type pairedSide struct {
	frames int
	wall   time.Duration
	cpu    time.Duration
}

func (s *pairedSide) run(b *testing.B, cur *atomic.Pointer[windowedRun], n, size int,
	transmit func([]byte) error, isBusy func(error) bool, wake <-chan struct{}) {
	r := newWindowedRun(n, size)
	cur.Store(r)
	c0 := processCPU(b)
	s.wall += r.send(b, transmit, isBusy, wake)
	s.cpu += processCPU(b) - c0
	s.frames += n
}

func (s *pairedSide) rate() float64 { return float64(s.frames) / s.wall.Seconds() }

func (s *pairedSide) cpuPerFrame() float64 { return float64(s.cpu.Nanoseconds()) / float64(s.frames) }

// cores is how many CPUs the side kept busy on average: its CPU time over
// its wall time. About 1 means its goroutines ran one at a time (the
// runtime hands a woken goroutine to the waker's processor), so its
// throughput is 1/(CPU per frame) and the ratio is the ratio of the CPU
// each spends per frame.
func (s *pairedSide) cores() float64 { return s.cpu.Seconds() / s.wall.Seconds() }

// processCPU is the process's user plus system CPU time so far.
func processCPU(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
