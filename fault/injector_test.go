package fault

import (
	"context"
	"errors"
	"math/bits"
	"reflect"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"tsnsim/cable"
	"tsnsim/chip"
	"tsnsim/chip/proto"
	"tsnsim/chip/regs"
	"tsnsim/spibridge"
)

func mustSpec(t testing.TB, flag string) Spec {
	t.Helper()
	s, err := ParseSpec(flag)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mustAdd(t testing.TB, inj *Injector, flag string) int {
	t.Helper()
	id, err := inj.Add(mustSpec(t, flag))
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// node is one chip on its SPI bus with the injector's hooks set, as the
// topology wires them.
type node struct {
	chip *chip.Chip
	bus  *spibridge.InProcess
}

func newNode(t *testing.T, inj *Injector, name string, epoch time.Time) node {
	t.Helper()
	c := chip.New(chip.Config{Name: name, Epoch: epoch})
	b := spibridge.NewInProcess(c, spibridge.DefaultTiming(), nil)
	b.SetFaults(inj.SPI(name))
	if err := b.SetIRQFaults(inj.IRQ(name)); err != nil {
		t.Fatal(err)
	}
	if err := inj.AttachChip(name, c); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return node{c, b}
}

func (n node) transfer(mosi []byte) ([]byte, error) {
	miso := make([]byte, len(mosi))
	err := n.bus.Transfer(context.Background(), mosi, miso)
	return miso, err
}

func kindOf(err error) string {
	var fk interface{ FaultKind() string }
	if errors.As(err, &fk) {
		return fk.FaultKind()
	}
	return ""
}

func txFrameWrite(t *testing.T, n int) []byte {
	t.Helper()
	b, err := proto.TxFrameWrite(proto.SendNow(n+proto.FCSLen, proto.PriorityBestEffort), make([]byte, n))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestSPITimeoutCount: count=7 with p=1 injects exactly 7 timeouts, seen
// by the caller, in BusStats and in Counts; a fault for node b does not
// touch node a.
func TestSPITimeoutCount(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		inj := New(1, time.Now(), nil)
		defer inj.Close()
		a := newNode(t, inj, "a", time.Now())
		mustAdd(t, inj, "spi.timeout-before@a:count=7")
		mustAdd(t, inj, "spi.timeout-before@b")
		failed := 0
		for range 20 {
			_, err := a.transfer(proto.RegRead(regs.TSNSystemInfo))
			switch {
			case err == nil:
			case errors.Is(err, syscall.ETIMEDOUT) && kindOf(err) == "spi.timeout-before":
				failed++
			default:
				t.Fatal(err)
			}
		}
		if failed != 7 {
			t.Errorf("%d transfers failed, want 7", failed)
		}
		if s := a.bus.Stats(); s.Timeouts != 7 || s.FaultTimeoutBefore != 7 || s.Transfers != 13 {
			t.Errorf("bus stats %+v, want 7 injected timeouts, 13 transfers", s)
		}
		if got := inj.Counts(); !reflect.DeepEqual(got, map[string]uint64{"spi.timeout-before@a": 7}) {
			t.Errorf("Counts() = %v", got)
		}
	})
}

// TestSPITimeoutAfterQueuesFrame: the host gets ETIMEDOUT for a TX write
// that the chip queued; a timeout-before write never reaches the chip.
func TestSPITimeoutAfterQueuesFrame(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		inj := New(1, time.Now(), nil)
		defer inj.Close()
		a := newNode(t, inj, "a", time.Now())
		after := mustAdd(t, inj, "spi.timeout-after@a:op=write,count=1")
		if _, err := a.transfer(proto.RegRead(regs.TSNSystemInfo)); err != nil {
			t.Fatalf("read with an op=write fault: %v", err)
		}
		_, err := a.transfer(txFrameWrite(t, 60))
		if !errors.Is(err, syscall.ETIMEDOUT) || kindOf(err) != "spi.timeout-after" {
			t.Fatalf("TX write: %v, want injected spi.timeout-after wrapping ETIMEDOUT", err)
		}
		if got := a.chip.Register(regs.FSTotalRxFrameCnt); got != 1 || a.chip.Stats().HostFIFO.Len != 1 {
			t.Errorf("chip took %d frames (%d queued), want the timed-out one queued", got, a.chip.Stats().HostFIFO.Len)
		}
		inj.Remove(after)
		mustAdd(t, inj, "spi.timeout-before@a:op=write,count=1")
		_, err = a.transfer(txFrameWrite(t, 60))
		if kindOf(err) != "spi.timeout-before" {
			t.Fatalf("TX write: %v, want spi.timeout-before", err)
		}
		if got := a.chip.Register(regs.FSTotalRxFrameCnt); got != 1 {
			t.Errorf("FS_TOTAL_RX_FRAME_CNT = %d after a timeout-before write, want still 1", got)
		}
		if s := a.bus.Stats(); s.FaultTimeoutAfter != 1 || s.FaultTimeoutBefore != 1 {
			t.Errorf("bus stats %+v", s)
		}
	})
}

// TestSPIStuckWindow: spi.stuck from 1 s for 2 s: the first transfer in
// the window finds the bus stuck and fails at its deadline; one queued
// behind waits for the bus untimed (Linux's rule), starts when the first
// gives up, finds the bus still stuck and fails 500 ms after it started;
// the bus works again when the window ends.
func TestSPIStuckWindow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		epoch := time.Now()
		inj := New(1, epoch, nil)
		defer inj.Close()
		a := newNode(t, inj, "a", epoch)
		mustAdd(t, inj, "spi.stuck@a:start=1s,dur=2s")
		read := proto.RegRead(regs.TSNSystemInfo)
		time.Sleep(500 * time.Millisecond)
		if _, err := a.transfer(read); err != nil {
			t.Fatalf("before the window: %v", err)
		}
		time.Sleep(700 * time.Millisecond) // 1.2 s
		done := make(chan error)
		go func() {
			_, err := a.transfer(read)
			done <- err
		}()
		time.Sleep(100 * time.Millisecond) // 1.3 s
		issued := time.Now()
		_, err := a.transfer(proto.RegWrite(regs.TSNSystemControl+4, 1))
		if !errors.Is(err, syscall.ETIMEDOUT) || kindOf(err) != "spi.stuck" || time.Since(issued) != 900*time.Millisecond {
			t.Errorf("queued transfer: %v after %v, want spi.stuck after 900ms (400ms queued, then its 500ms timeout)", err, time.Since(issued))
		}
		if err := <-done; kindOf(err) != "spi.stuck" {
			t.Errorf("transfer that found the bus stuck: %v, want spi.stuck", err)
		}
		time.Sleep(3*time.Second - time.Since(epoch) - 10*time.Millisecond) // 2.99 s
		if _, err := a.transfer(read); err != nil || time.Since(epoch) <= 3*time.Second {
			t.Errorf("at the end of the window: %v, done at %v", err, time.Since(epoch))
		}
		if got := inj.Counts()["spi.stuck@a"]; got != 1 {
			t.Errorf("spi.stuck@a counted %d, want 1", got)
		}
		// Transfers that found the bus stuck: the two that timed out and
		// the one that waited for the window's end.
		if s := a.bus.Stats(); s.FaultStuck != 3 || s.Timeouts != 2 {
			t.Errorf("bus stats %+v, want 3 that found it stuck, 2 timeouts", s)
		}
	})
}

// TestSPIFlipAndLatency: flips change exactly the configured bits of read
// data and never touch writes; latency delays exactly the transfers
// counted, by latency + jitter.
func TestSPIFlipAndLatency(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		inj := New(3, time.Now(), nil)
		defer inj.Close()
		a := newNode(t, inj, "a", time.Now())
		flip := mustAdd(t, inj, "spi.flip@a:bits=5")
		want := uint32(a.chip.Register(regs.TSNSystemInfo) >> 32)
		for range 10 {
			miso, err := a.transfer(proto.RegRead(regs.TSNSystemInfo))
			if err != nil {
				t.Fatal(err)
			}
			if d := bits.OnesCount32(proto.RegReadValue(miso) ^ want); d != 5 {
				t.Errorf("%d bits differ, want 5", d)
			}
		}
		if _, err := a.transfer(proto.RegWrite(regs.TSNSystemControl+4, 0)); err != nil {
			t.Fatal(err)
		}
		if got := inj.Counts()["spi.flip@a"]; got != 10 {
			t.Errorf("spi.flip@a = %d, want 10 (reads only)", got)
		}
		if s := a.bus.Stats(); s.FaultFlips != 10 || s.FlippedBits != 50 {
			t.Errorf("bus stats %+v", s)
		}
		inj.Remove(flip)

		mustAdd(t, inj, "spi.latency@a:latency=100us,jitter=50us,p=0.5")
		hold := 20*time.Microsecond + time.Duration(8*8)*time.Second/15_000_000
		delayed := 0
		for range 200 {
			start := time.Now()
			if _, err := a.transfer(proto.RegRead(regs.TSNSystemInfo)); err != nil {
				t.Fatal(err)
			}
			switch d := time.Since(start) - hold; {
			case d == 0:
			case d >= 100*time.Microsecond && d <= 150*time.Microsecond:
				delayed++
			default:
				t.Fatalf("transfer delayed by %v", d)
			}
		}
		if got := inj.Counts()["spi.latency@a"]; got != uint64(delayed) || delayed < 60 || delayed > 140 {
			t.Errorf("%d transfers delayed, counted %d, want equal and about 100", delayed, got)
		}
		if s := a.bus.Stats(); s.FaultLatency != uint64(delayed) {
			t.Errorf("bus counted %d delayed, want %d", s.FaultLatency, delayed)
		}
	})
}

// edges raises n interrupt edges of chip-like device d, letting the bus
// forward each, and returns how many the host saw.
func edges(d *irqDev, line <-chan struct{}, n int, gap time.Duration) int {
	seen := 0
	for range n {
		d.irq <- struct{}{}
		synctest.Wait()
		select {
		case <-line:
			seen++
		default:
		}
		time.Sleep(gap)
	}
	return seen
}

// irqDev is a device whose interrupt edges the test raises.
type irqDev struct{ irq chan struct{} }

func (d *irqDev) Transact(mosi, miso []byte) error { return nil }
func (d *irqDev) IRQ() <-chan struct{}             { return d.irq }

// TestIRQFaults: lost edges with a count, lost edges by probability,
// spurious edges at a rate, and a stuck line, each counted exactly as
// the bus saw them.
func TestIRQFaults(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		epoch := time.Now()
		inj := New(5, epoch, nil)
		defer inj.Close()
		dev := &irqDev{irq: make(chan struct{}, 1)}
		bus := spibridge.NewInProcess(dev, spibridge.DefaultTiming(), nil)
		defer bus.Close()
		if err := bus.SetIRQFaults(inj.IRQ("a")); err != nil {
			t.Fatal(err)
		}
		line := bus.Interrupt()

		id := mustAdd(t, inj, "irq.lost@a:count=3")
		if seen := edges(dev, line, 10, time.Millisecond); seen != 7 {
			t.Errorf("count=3: host saw %d of 10 edges, want 7", seen)
		}
		inj.Remove(id)
		id = mustAdd(t, inj, "irq.lost:p=0.3")
		seen := edges(dev, line, 200, time.Millisecond)
		lost := inj.Counts()["irq.lost@a"] - 3
		if uint64(seen)+lost != 200 || lost < 30 || lost > 90 {
			t.Errorf("p=0.3: %d seen, %d counted lost, of 200", seen, lost)
		}
		inj.Remove(id)
		if s := bus.Stats(); s.IRQEdges != 210 || s.IRQDropped != 3+lost {
			t.Errorf("bus stats %+v", s)
		}

		// Spurious: candidates every 10 ms in [now+10ms, now+1s).
		now := time.Since(epoch)
		inj.Add(Spec{Layer: LayerIRQ, Kind: "spurious", Node: "a", Rate: 100, Start: now, Duration: time.Second})
		spurious := 0
		for range 200 {
			time.Sleep(10 * time.Millisecond)
			synctest.Wait()
			select {
			case <-line:
				spurious++
			default:
			}
		}
		if got := inj.Counts()["irq.spurious@a"]; got != 99 || spurious != 99 || bus.Stats().IRQSpurious != 99 {
			t.Errorf("spurious: counted %d, host saw %d, bus %d; want 99", got, spurious, bus.Stats().IRQSpurious)
		}

		// Stuck from +1 s for 1 s, with spurious candidates all along:
		// nothing reaches the host in the window.
		now = time.Since(epoch)
		inj.Add(Spec{Layer: LayerIRQ, Kind: "stuck", Start: now + time.Second, Duration: time.Second})
		inj.Add(Spec{Layer: LayerIRQ, Kind: "spurious", Rate: 10, Start: now})
		before := inj.Counts()["irq.spurious@a"]
		time.Sleep(1500 * time.Millisecond) // inside the window
		for len(line) > 0 {
			<-line
		}
		synctest.Wait()
		if n := edges(dev, line, 3, 100*time.Millisecond); n != 0 {
			t.Errorf("host saw %d edges while the line was stuck", n)
		}
		// Candidates at +0.1 .. +1.8 s: the 9 before the window (+1 s)
		// are injected, the ones inside are suppressed.
		if got := inj.Counts()["irq.spurious@a"] - before; got != 9 {
			t.Errorf("%d spurious edges, want the 9 before the stuck window", got)
		}
		if got := inj.Counts()["irq.stuck@a"]; got != 3 {
			t.Errorf("irq.stuck@a = %d, want the 3 swallowed edges", got)
		}
	})
}

// TestCableFaults: loss, corruption and unplugging over a real cable into
// a real chip: every count matches the cable's counters, corrupted frames
// are FCS drops at the receiver, and the per-direction invariant holds.
func TestCableFaults(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		epoch := time.Now()
		inj := New(9, epoch, nil)
		defer inj.Close()
		a := &sender{}
		b := chip.New(chip.Config{Name: "b", Epoch: epoch})
		cab := cable.Connect(a, b, cable.Config{})
		cab.SetFaults(0, inj.Cable("a"))
		cab.SetFaults(1, inj.Cable("b"))
		mustAdd(t, inj, "cable.loss@a:p=0.2")
		mustAdd(t, inj, "cable.corrupt@a:p=0.1,bits=2")
		mustAdd(t, inj, "cable.unplug:start=1s,dur=500ms")
		mustAdd(t, inj, "cable.delay@a:latency=10us,jitter=5us,p=0.3,count=20")
		const sent = 1000
		for i := range sent {
			f := make([]byte, 60)
			f[0], f[1] = byte(i), byte(i>>8)
			a.wire.Send(proto.AppendFCS(f), time.Now())
			time.Sleep(2 * time.Millisecond)
		}
		time.Sleep(10 * time.Millisecond)
		cab.Close()
		ab, _ := cab.Stats()
		c := inj.Counts()
		if ab.Frames+ab.LostInjected+ab.LostUnplugged+ab.LostAtClose != sent {
			t.Errorf("invariant: %+v for %d frames", ab, sent)
		}
		if ab.LostInjected != c["cable.loss@a"] || ab.LostUnplugged != c["cable.unplug@a"] || ab.Corrupted != c["cable.corrupt@a"] {
			t.Errorf("cable %+v, counts %v", ab, c)
		}
		if ab.LostUnplugged != 250 {
			t.Errorf("%d frames lost unplugged, want the 250 sent in the 500 ms window", ab.LostUnplugged)
		}
		if c["cable.delay@a"] != 20 {
			t.Errorf("cable.delay@a = %d, want count 20", c["cable.delay@a"])
		}
		if got := b.Register(regs.FDFCSDropFrameCnt); got != ab.Corrupted || got == 0 {
			t.Errorf("FD_FCS_DROP_FRAME_CNT %d, want the %d corrupted frames", got, ab.Corrupted)
		}
		if got := b.Register(regs.FDTotalRxFrameCnt); got != ab.Frames {
			t.Errorf("FD_TOTAL_RX_FRAME_CNT %d, want %d", got, ab.Frames)
		}
	})
}

// sender is a PHY port that only sends.
type sender struct{ wire chip.Wire }

func (s *sender) ConnectPHY(w chip.Wire)                 { s.wire = w }
func (s *sender) ReceivePHY(frame []byte, sof time.Time) {}

// TestChipFIFOWindow: an RX metadata cap from 1 s for 1 s drops exactly
// the frames arriving in the window, and the limit comes back after it.
func TestChipFIFOWindow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		epoch := time.Now()
		inj := New(1, epoch, nil)
		defer inj.Close()
		a := newNode(t, inj, "a", epoch)
		mustAdd(t, inj, "chip.fifo-limit@a:rx_meta=2,start=1s,dur=1s")
		time.Sleep(50 * time.Millisecond)
		for range 30 {
			a.chip.ReceivePHY(proto.AppendFCS(make([]byte, 60)), time.Now())
			time.Sleep(100 * time.Millisecond)
		}
		if got := a.chip.Register(regs.FDFIFOFullDropFrameCnt); got != 10 {
			t.Errorf("FD_FIFO_FULL_DROP_FRAME_CNT = %d, want the 10 frames of the window", got)
		}
		if st := a.chip.Stats().RxMetaFIFO; st.Len != 20 || st.Limit != chip.DefaultRxMetaFIFOSize {
			t.Errorf("RX meta FIFO %+v, want 20 queued, limit restored", st)
		}
		if got := inj.Counts()["chip.fifo-limit@a"]; got != 1 {
			t.Errorf("chip.fifo-limit@a = %d, want 1", got)
		}
	})
}

// TestChipHostFIFOFull: TX writes during the window are back-pressure;
// removing an open-ended fault restores the FIFO.
func TestChipHostFIFOFull(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		epoch := time.Now()
		inj := New(1, epoch, nil)
		defer inj.Close()
		a := newNode(t, inj, "a", epoch)
		mustAdd(t, inj, "chip.host-fifo-full@a:start=1s,dur=1s")
		write := func() {
			if _, err := a.transfer(txFrameWrite(t, 60)); err != nil {
				t.Fatal(err)
			}
		}
		for _, at := range []time.Duration{500 * time.Millisecond, 1500 * time.Millisecond, 2500 * time.Millisecond} {
			time.Sleep(at - time.Since(epoch))
			write()
		}
		if bp, ok := a.chip.Register(regs.FSTotalBackPressureEventCnt), a.chip.Register(regs.FSTotalRxFrameCnt); bp != 1 || ok != 2 {
			t.Errorf("back-pressure %d, accepted %d; want 1 and 2", bp, ok)
		}
		id := mustAdd(t, inj, "chip.host-fifo-full@a")
		write()
		inj.Remove(id)
		write()
		if bp, ok := a.chip.Register(regs.FSTotalBackPressureEventCnt), a.chip.Register(regs.FSTotalRxFrameCnt); bp != 2 || ok != 3 {
			t.Errorf("back-pressure %d, accepted %d; want 2 and 3", bp, ok)
		}
		if got := inj.Counts()["chip.host-fifo-full@a"]; got != 2 {
			t.Errorf("chip.host-fifo-full@a = %d, want 2", got)
		}
	})
}

// TestChipClock: a step and a drift window are visible in SYSCOUNT, only
// on the targeted chip, and SYSCOUNT stays continuous when the drift
// ends.
func TestChipClock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		epoch := time.Now()
		inj := New(1, epoch, nil)
		defer inj.Close()
		a, b := newNode(t, inj, "a", epoch), newNode(t, inj, "b", epoch)
		mustAdd(t, inj, "chip.clock-step@a:step=1ms,start=1s")
		mustAdd(t, inj, "chip.clock-drift@a:ppm=100,start=2s,dur=1s")
		for _, tc := range []struct {
			t    time.Duration
			a, b uint64
		}{
			{500 * time.Millisecond, 62_500_000, 62_500_000},
			{1500 * time.Millisecond, 187_625_000, 187_500_000}, // +1 ms step: 125000 ticks
			{3 * time.Second, 375_137_500, 375_000_000},         // 2.001 s + 1 s at +100 ppm
			{4 * time.Second, 500_137_500, 500_000_000},         // back at the nominal rate
		} {
			time.Sleep(tc.t - time.Since(epoch))
			if ga, gb := a.chip.Register(regs.TSNSysCount), b.chip.Register(regs.TSNSysCount); ga != tc.a || gb != tc.b {
				t.Errorf("at %v: SYSCOUNT a %d, b %d; want %d, %d", tc.t, ga, gb, tc.a, tc.b)
			}
		}
		if a.chip.Clock().DriftPPM() != 0 {
			t.Errorf("drift after the window: %v", a.chip.Clock().DriftPPM())
		}
		c := inj.Counts()
		if c["chip.clock-step@a"] != 1 || c["chip.clock-drift@a"] != 1 || len(c) != 2 {
			t.Errorf("Counts() = %v", c)
		}
	})
}

// decisions draws a fixed sequence of decisions from an injector's hooks,
// node a and b interleaved when both is set.
func decisions(t *testing.T, seed int64, both bool) (a []any, b []any) {
	inj := New(seed, time.Now(), nil)
	defer inj.Close()
	for _, f := range []string{"spi.timeout-before:p=0.1", "spi.latency:latency=1us,jitter=1ms,p=0.3",
		"spi.flip:p=0.2,bits=2", "cable.loss:p=0.1", "cable.corrupt:p=0.1", "cable.delay:jitter=1ms,p=0.5", "irq.lost:p=0.5"} {
		mustAdd(t, inj, f)
	}
	spiA, spiB := inj.SPI("a"), inj.SPI("b")
	cabA, cabB := inj.Cable("a"), inj.Cable("b")
	irqA, irqB := inj.IRQ("a"), inj.IRQ("b")
	for i := range 300 {
		cmd := proto.CmdRead
		if i%3 == 0 {
			cmd = proto.CmdWrite
		}
		a = append(a, spiA.Decide(8, cmd), cabA.Frame(64), irqA.Edge())
		if both {
			b = append(b, spiB.Decide(8, cmd), cabB.Frame(64), irqB.Edge())
			spiB.Decide(14, proto.CmdRead) // b draws more often than a
		}
	}
	return a, b
}

// TestDeterminism: the same seed gives the same decisions; another seed
// different ones; a node's decisions do not depend on the other node's.
func TestDeterminism(t *testing.T) {
	a1, b1 := decisions(t, 42, true)
	a2, b2 := decisions(t, 42, true)
	if !reflect.DeepEqual(a1, a2) || !reflect.DeepEqual(b1, b2) {
		t.Error("same seed, different decisions")
	}
	a3, _ := decisions(t, 43, true)
	if reflect.DeepEqual(a1, a3) {
		t.Error("different seeds, same decisions")
	}
	aAlone, _ := decisions(t, 42, false)
	if !reflect.DeepEqual(a1, aAlone) {
		t.Error("node a's decisions changed with node b drawing in between")
	}
	if reflect.DeepEqual(a1, b1) {
		t.Error("nodes a and b drew the same stream")
	}
}

// TestInjectorLifecycle: List, Remove, Clear, Close; windows already
// over are refused; timers stop on Close.
func TestInjectorLifecycle(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		epoch := time.Now()
		inj := New(1, epoch, nil)
		c := chip.New(chip.Config{Name: "a", Epoch: epoch})
		if err := inj.AttachChip("a", c); err != nil {
			t.Fatal(err)
		}
		if err := inj.AttachChip("a", c); err == nil {
			t.Error("second AttachChip for a accepted")
		}
		id1 := mustAdd(t, inj, "irq.lost@a:p=0.5")
		mustAdd(t, inj, "chip.clock-step@a:step=1s,start=10s")
		if l := inj.List(); len(l) != 2 || l[0].ID != id1 || l[1].Flag != "chip.clock-step@a:start=10s,step=1s" {
			t.Errorf("List() = %+v", l)
		}
		if err := inj.Remove(99); err == nil {
			t.Error("Remove of an unknown id accepted")
		}
		if err := inj.Remove(id1); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Second)
		if _, err := inj.Add(mustSpec(t, "cable.unplug:start=0s,dur=1s")); err == nil {
			t.Error("a window that has ended was accepted")
		}
		inj.Close()
		if _, err := inj.Add(mustSpec(t, "irq.lost")); err == nil {
			t.Error("Add after Close accepted")
		}
		time.Sleep(20 * time.Second)
		if got := c.Clock().Now(); got != 22*125_000_000 {
			t.Errorf("SYSCOUNT %d: the step fired after Close", got)
		}
		if len(inj.List()) != 0 || len(inj.Counts()) != 0 {
			t.Errorf("after Close: %v, %v", inj.List(), inj.Counts())
		}
	})
}
