package integration

import (
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"tsnsim/chip/clock"
	"tsnsim/chip/regs"
	"tsnsim/topology"
)

// Timeline of TestEachFaultKind: paced traffic both ways from 0; the
// faults act from faultStart (windows end at faultEnd); throughput must be
// back to its fault-free level within one second after faultEnd.
const (
	faultStart = 500 * time.Millisecond
	faultEnd   = 800 * time.Millisecond
)

// TestEachFaultKind injects each fault kind alone into a topology
// carrying paced traffic both ways, and checks that the number injected
// is exactly what the layer's own counters observed, that every frame is
// delivered or counted (the audit), and that throughput is back at its
// fault-free level within one second of emulated time after the fault.
func TestEachFaultKind(t *testing.T) {
	for _, c := range []struct {
		spec string
		key  string                          // the Counts key
		seen func(*topology.Topology) uint64 // the layer's own count of it
		want uint64                          // exact injected count; 0: at least one
		end  time.Duration                   // when the fault's effect ends (0: faultEnd)
		also string                          // another fault that makes this one bite
	}{
		{"spi.timeout-before@a:count=2", "spi.timeout-before@a", func(tp *topology.Topology) uint64 { return tp.Nodes[0].Bus.Stats().FaultTimeoutBefore }, 2, faultStart + time.Second, ""},
		{"spi.timeout-after@b:count=2", "spi.timeout-after@b", func(tp *topology.Topology) uint64 { return tp.Nodes[1].Bus.Stats().FaultTimeoutAfter }, 2, faultStart + time.Second, ""},
		{"spi.latency@a:latency=300us,jitter=200us,count=40", "spi.latency@a", func(tp *topology.Topology) uint64 { return tp.Nodes[0].Bus.Stats().FaultLatency }, 40, 0, ""},
		{"spi.flip@b:bits=1,count=10", "spi.flip@b", func(tp *topology.Topology) uint64 { return tp.Nodes[1].Bus.Stats().FaultFlips }, 10, 0, ""},
		{"spi.stuck@a:dur=100ms", "spi.stuck@a", func(tp *topology.Topology) uint64 { return tp.Nodes[0].Bus.Stats().FaultStuck }, 1, 0, ""},
		{"irq.lost@b:count=20", "irq.lost@b", func(tp *topology.Topology) uint64 { return tp.Nodes[1].Bus.Stats().IRQDropped }, 20, 0, ""},
		{"irq.spurious@a:rate=2000,dur=300ms", "irq.spurious@a", func(tp *topology.Topology) uint64 { return tp.Nodes[0].Bus.Stats().IRQSpurious }, 0, 0, ""},
		{"irq.stuck@b:dur=300ms", "irq.stuck@b", func(tp *topology.Topology) uint64 { return tp.Nodes[1].Bus.Stats().IRQDropped }, 0, 0, ""},
		{"cable.loss@a:count=7", "cable.loss@a", func(tp *topology.Topology) uint64 { ab, _ := tp.Cable.Stats(); return ab.LostInjected }, 7, 0, ""},
		{"cable.corrupt@b:bits=3,count=7", "cable.corrupt@b", func(tp *topology.Topology) uint64 {
			_, ba := tp.Cable.Stats()
			if fcs := tp.Nodes[0].Chip.Register(regs.FDFCSDropFrameCnt); fcs != ba.Corrupted {
				return 1 << 60 // the receiver's FCS check must catch every one
			}
			return ba.Corrupted
		}, 7, 0, ""},
		{"cable.delay:latency=2ms,jitter=1ms,count=30", "cable.delay@a", nil, 30, 0, ""},
		{"cable.unplug:dur=300ms", "cable.unplug@a", func(tp *topology.Topology) uint64 { ab, _ := tp.Cable.Stats(); return ab.LostUnplugged }, 0, 0, ""},
		{"chip.fifo-limit@b:rx_meta=2,dur=300ms", "chip.fifo-limit@b", func(tp *topology.Topology) uint64 {
			return someCounted(tp.Nodes[1].Chip.Register(regs.FDFIFOFullDropFrameCnt))
		}, 1, 0, "spi.stuck@b:start=600ms,dur=50ms"}, // frames pile up while b's bus is stuck
		{"chip.host-fifo-full@a:dur=300ms", "chip.host-fifo-full@a", func(tp *topology.Topology) uint64 {
			return someCounted(tp.Nodes[0].Chip.Register(regs.FSTotalBackPressureEventCnt))
		}, 1, 0, ""},
		{"chip.clock-step@a:step=1ms", "chip.clock-step@a", nil, 1, 0, ""},
		{"chip.clock-drift@b:ppm=500,dur=300ms", "chip.clock-drift@b", nil, 1, 0, ""},
	} {
		t.Run(c.spec, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				spec := c.spec + ",start=500ms"
				if !strings.Contains(c.spec, ":") {
					spec = c.spec + ":start=500ms"
				}
				end := c.end
				if end == 0 {
					end = faultEnd
				}
				specs := []string{spec}
				if c.also != "" {
					specs = append(specs, c.also)
				}
				res := faultRun{specs: specs, seed: 1, frames: 3500, interval: time.Millisecond, size: 200}.run(t)
				got := res.counts[c.key]
				switch {
				case c.want != 0 && got != c.want:
					t.Errorf("%s injected %d times, want %d (counts %v)", c.key, got, c.want, res.counts)
				case c.want == 0 && got == 0:
					t.Errorf("%s never injected (counts %v)", c.key, res.counts)
				}
				if c.seen != nil {
					if seen := c.seen(res.topo); seen != got {
						t.Errorf("%s: injected %d, the layer counted %d", c.key, got, seen)
					}
				}
				assertRecovered(t, res, end)
			})
		})
	}
}

// someCounted is 1 when a window fault's effect was counted at all (a
// window is injected once; the frames it hits are counted by the chip).
func someCounted(n uint64) uint64 { return min(n, 1) }

// assertRecovered checks that from one second after the fault's effect
// ended, each node receives at least 95% of its fault-free rate (measured
// before the fault) until the traffic ends.
func assertRecovered(t *testing.T, res faultResult, end time.Duration) {
	t.Helper()
	const before, to = 400 * time.Millisecond, 3400 * time.Millisecond
	from := end + time.Second
	for i := range 2 {
		base := float64(res.deliveredBetween(i, 100*time.Millisecond, 100*time.Millisecond+before)) / before.Seconds()
		after := float64(res.deliveredBetween(i, from, to)) / (to - from).Seconds()
		if after < 0.95*base {
			t.Errorf("node %d: %.0f frames/s from %v, fault-free %.0f frames/s", i, after, from, base)
		}
	}
}

// TestClockFaultsVisibleInSysCount: a clock step and a drift window show
// in SYSCOUNT relative to the untouched chip.
func TestClockFaultsVisibleInSysCount(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		res := faultRun{specs: []string{"chip.clock-step@a:step=1ms,start=100ms", "chip.clock-drift@b:ppm=1000,start=100ms,dur=200ms"},
			seed: 1, frames: 400, interval: time.Millisecond, size: 100}.run(t)
		a, b := res.topo.Nodes[0].Chip.Clock(), res.topo.Nodes[1].Chip.Clock()
		now := time.Now()
		// a is 1 ms ahead; b gained 200 ms * 1000 ppm = 200 us.
		want := int64((time.Millisecond - 200*time.Microsecond) / clock.DefaultPeriod)
		if got := int64(a.At(now)) - int64(b.At(now)); got < want-1 || got > want+1 {
			t.Errorf("SYSCOUNT a - b = %d ticks, want %d", got, want)
		}
	})
}
