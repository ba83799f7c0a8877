package spibridge

import (
	"context"
	"errors"
	"net"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"tsnsim/chip"
	"tsnsim/chip/proto"
	"tsnsim/chip/regs"
	"tsnsim/rtimer"
)

// In virtual time a transfer queued behind another starts on the bus
// when the first one ends: its trace event carries the queueing in
// Duration and the bus start apart, and no lateness.
func TestTimelineQueuedTransfer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := chip.New(chip.Config{Name: "a", MAC: net.HardwareAddr{0x02, 0, 0, 0, 0, 0x01}})
		defer c.Close()
		rec := &memRecorder{}
		tr := NewTraced(NewInProcess(c, DefaultTiming(), nil), "a", rec)
		defer tr.Close()
		t0 := time.Now()
		var wg sync.WaitGroup
		for range 2 {
			wg.Go(func() {
				mosi := proto.RegRead(regs.TSNMACAddr)
				if err := tr.Transfer(context.Background(), mosi, make([]byte, len(mosi))); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		hold := DefaultTiming().Duration(8)
		if len(rec.events) != 2 {
			t.Fatalf("%d events", len(rec.events))
		}
		first, second := rec.events[0], rec.events[1]
		if !first.Start.Equal(t0) || !first.BusStart.Equal(t0) || first.Duration != hold || first.Late != 0 {
			t.Errorf("first transfer %+v: want queued and started at 0, %v long, not late", first, hold)
		}
		if !second.Start.Equal(t0) || second.BusStart.Sub(t0) != hold || second.Duration != 2*hold || second.Late != 0 {
			t.Errorf("second transfer %+v: want queued at 0, started at %v, %v after queueing", second, hold, 2*hold)
		}
	})
}

// In real time with the precise timer, every traced transfer occupies
// the modelled bus for exactly the model's time, transfers never overlap
// on the bus, none returns before its modelled end (Late >= 0), and the
// bus's accounting agrees. Timing precision itself is not asserted here
// (the machine may be busy); rtimer's benchmark and the README measure it.
func TestTimelineRealTimePrecise(t *testing.T) {
	rt, err := rtimer.Start()
	if errors.Is(err, rtimer.ErrUnsupported) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	c := chip.New(chip.Config{Name: "a", MAC: net.HardwareAddr{0x02, 0, 0, 0, 0, 0x01}})
	c.Start()
	defer c.Close()
	tm := DefaultTiming()
	tm.Timer = rt
	bus := NewInProcess(c, tm, nil)
	rec := &memRecorder{}
	tr := NewTraced(bus, "a", rec)
	defer tr.Close()
	var wg sync.WaitGroup
	for g := range 3 {
		wg.Go(func() {
			for i := range 50 {
				mosi := proto.RegRead(regs.TSNSysCount)
				if (g+i)%3 == 0 {
					mosi = proto.RxMetaRead()
				}
				if err := tr.Transfer(context.Background(), mosi, make([]byte, len(mosi))); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	var busy time.Duration
	var prevEnd time.Time
	for i, ev := range sortedByBusStart(rec.events) {
		occ := ev.Start.Add(ev.Duration).Sub(ev.BusStart)
		if want := tm.Duration(ev.Len); occ != want {
			t.Errorf("transfer %d (%d bytes) occupied the bus %v, model %v", i, ev.Len, occ, want)
		}
		if ev.BusStart.Before(ev.Start) || ev.BusStart.Before(prevEnd) || ev.Late < 0 {
			t.Errorf("transfer %d: queued %v, bus start %v before the previous end %v or its queueing, late %v",
				i, ev.Start, ev.BusStart, prevEnd, ev.Late)
		}
		prevEnd = ev.Start.Add(ev.Duration)
		busy += occ
	}
	if st := bus.Stats(); st.Busy != busy || st.Transfers != 150 {
		t.Errorf("bus stats: %d transfers, busy %v; trace: 150, %v", st.Transfers, st.Busy, busy)
	}
	if st := rt.Stats(); st.Fired == 0 {
		t.Error("the bus did not sleep through the precise timer")
	}
}

func sortedByBusStart(evs []TraceEvent) []TraceEvent {
	out := slices.Clone(evs)
	slices.SortFunc(out, func(a, b TraceEvent) int { return a.BusStart.Compare(b.BusStart) })
	return out
}
