package spibridge

import (
	"context"
	"errors"
	"math/bits"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"tsnsim/chip/proto"
)

// script is an SPIFaults that hands out faults in order, then none.
type script struct {
	mu     sync.Mutex
	faults []SPIFault
	seen   []byte // cmd of every Decide call
}

func (s *script) Decide(n int, cmd byte) SPIFault {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seen = append(s.seen, cmd)
	if len(s.faults) == 0 {
		return SPIFault{}
	}
	f := s.faults[0]
	s.faults = s.faults[1:]
	return f
}

var _ SPIFaults = (*script)(nil)

// faultKind returns err's FaultKind, or "" when it is not an injected fault.
func faultKind(err error) string {
	var fk interface{ FaultKind() string }
	if errors.As(err, &fk) {
		return fk.FaultKind()
	}
	return ""
}

// regReadHold is how long an 8-byte transfer holds the default bus.
var regReadHold = 20*time.Microsecond + time.Duration(8*8)*time.Second/15_000_000

// TestFaultTimeoutBefore: the transfer holds the bus until its deadline
// (the Linux 500 ms for 8 bytes), fails with ETIMEDOUT and a FaultKind,
// and never reaches the chip.
func TestFaultTimeoutBefore(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dev := newFakeDev()
		b := NewInProcess(dev, DefaultTiming(), nil)
		defer b.Close()
		b.SetFaults(&script{faults: []SPIFault{{TimeoutBefore: true}}})
		start := time.Now()
		err := b.Transfer(context.Background(), proto.RegRead(0x0288), make([]byte, 8))
		if !errors.Is(err, syscall.ETIMEDOUT) || faultKind(err) != FaultTimeoutBefore {
			t.Fatalf("err %v (kind %q), want ETIMEDOUT of kind %s", err, faultKind(err), FaultTimeoutBefore)
		}
		if got := time.Since(start); got != 500*time.Millisecond {
			t.Errorf("failed after %v, want the 500ms Linux timeout", got)
		}
		if n := len(dev.calls()); n != 0 {
			t.Errorf("device saw %d transactions, want 0", n)
		}
		// The next transfer gets no fault and works.
		if err := b.Transfer(context.Background(), proto.RegRead(0x0288), make([]byte, 8)); err != nil {
			t.Fatal(err)
		}
		s := b.Stats()
		want := BusStats{Transfers: 1, Bytes: 8, Busy: 500*time.Millisecond + regReadHold, Timeouts: 1, FaultTimeoutBefore: 1}
		if s != want {
			t.Errorf("stats %+v, want %+v", s, want)
		}
	})
}

// TestFaultTimeoutAfter: the chip decodes the write at its normal time
// (state changes), then the caller gets ETIMEDOUT at the deadline.
func TestFaultTimeoutAfter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dev := newFakeDev()
		b := NewInProcess(dev, DefaultTiming(), nil)
		defer b.Close()
		b.SetFaults(&script{faults: []SPIFault{{TimeoutAfter: true}}})
		mosi := txWrite(t, 60)
		start := time.Now()
		err := b.Transfer(context.Background(), mosi, make([]byte, len(mosi)))
		if !errors.Is(err, syscall.ETIMEDOUT) || faultKind(err) != FaultTimeoutAfter {
			t.Fatalf("err %v, want ETIMEDOUT of kind %s", err, FaultTimeoutAfter)
		}
		if got := time.Since(start); got != 500*time.Millisecond {
			t.Errorf("failed after %v, want 500ms", got)
		}
		calls := dev.calls()
		hold := 20*time.Microsecond + time.Duration(99*8)*time.Second/15_000_000
		if len(calls) != 1 || calls[0].Sub(start) != hold {
			t.Errorf("device calls %v, want one at %v (after the last byte)", calls, hold)
		}
		if s := b.Stats(); s.Timeouts != 1 || s.FaultTimeoutAfter != 1 || s.Transfers != 0 {
			t.Errorf("stats %+v, want 1 timeout (after), 0 transfers", s)
		}
	})
}

// TestFaultStuck: a bus stuck for 2 s, as a Linux controller whose
// transfers stop completing: the transfer that found it stuck fails at
// its deadline (500 ms after it started); one queued behind it waits for
// the bus untimed, then starts, finds it still stuck and fails 500 ms
// later (spi.stuck too); one started within a timeout of the end waits
// for the end and succeeds.
func TestFaultStuck(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dev := newFakeDev()
		b := NewInProcess(dev, DefaultTiming(), nil)
		defer b.Close()
		b.SetFaults(&script{faults: []SPIFault{{Stuck: 2 * time.Second}}})
		ctx := context.Background()
		start := time.Now()
		var errA error
		var doneA time.Duration
		var wg sync.WaitGroup
		wg.Go(func() {
			errA = b.Transfer(ctx, proto.RegRead(0), make([]byte, 8))
			doneA = time.Since(start)
		})
		time.Sleep(100 * time.Millisecond)
		errB := b.Transfer(ctx, proto.RegWrite(0x0294, 1), make([]byte, 7))
		if got := time.Since(start); got != time.Second || !errors.Is(errB, syscall.ETIMEDOUT) || faultKind(errB) != FaultStuck {
			t.Errorf("queued transfer: %v (kind %q) at %v, want %s at 1s (started at 500ms, timed from then)",
				errB, faultKind(errB), got, FaultStuck)
		}
		wg.Wait()
		if !errors.Is(errA, syscall.ETIMEDOUT) || faultKind(errA) != FaultStuck || doneA != 500*time.Millisecond {
			t.Errorf("stuck transfer: %v (kind %q) at %v, want %s at 500ms", errA, faultKind(errA), doneA, FaultStuck)
		}
		// 1.9 s: still stuck, but the end is before this transfer's
		// deadline: it waits for it and completes.
		time.Sleep(900 * time.Millisecond)
		if err := b.Transfer(ctx, proto.RegRead(0), make([]byte, 8)); err != nil {
			t.Errorf("transfer near the end of the stuck period: %v", err)
		}
		if got, want := time.Since(start), 2*time.Second+regReadHold; got != want {
			t.Errorf("first transfer after the stuck bus done at %v, want %v", got, want)
		}
		if err := b.Transfer(ctx, proto.RegRead(0), make([]byte, 8)); err != nil {
			t.Errorf("transfer after the stuck period: %v", err)
		}
		if n := len(dev.calls()); n != 2 {
			t.Errorf("device saw %d transactions, want 2", n)
		}
		s := b.Stats()
		if s.Timeouts != 2 || s.FaultStuck != 3 || s.Transfers != 2 {
			t.Errorf("stats %+v, want 2 timeouts, 3 that found the bus stuck, 2 transfers", s)
		}
	})
}

// TestFaultLatency: injected latency delays the chip's decode and the
// end of the transfer; latency past the deadline is a spi.latency
// timeout and the chip never sees the transfer.
func TestFaultLatency(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dev := newFakeDev()
		b := NewInProcess(dev, DefaultTiming(), nil)
		defer b.Close()
		b.SetFaults(&script{faults: []SPIFault{{Latency: 100 * time.Microsecond}, {Latency: time.Second}}})
		start := time.Now()
		if err := b.Transfer(context.Background(), proto.RegRead(0), make([]byte, 8)); err != nil {
			t.Fatal(err)
		}
		if got := time.Since(start); got != 100*time.Microsecond+regReadHold {
			t.Errorf("delayed transfer took %v, want %v", got, 100*time.Microsecond+regReadHold)
		}
		dataDue := 20*time.Microsecond + time.Duration(4*8)*time.Second/15_000_000
		if c := dev.calls(); len(c) != 1 || c[0].Sub(start) != 100*time.Microsecond+dataDue {
			t.Errorf("decoded at %v, want %v", c[0].Sub(start), 100*time.Microsecond+dataDue)
		}
		start = time.Now()
		err := b.Transfer(context.Background(), proto.RegRead(0), make([]byte, 8))
		if !errors.Is(err, syscall.ETIMEDOUT) || faultKind(err) != FaultLatency || time.Since(start) != 500*time.Millisecond {
			t.Errorf("spike: %v (kind %q) after %v, want %s at 500ms", err, faultKind(err), time.Since(start), FaultLatency)
		}
		if n := len(dev.calls()); n != 1 {
			t.Errorf("device saw %d transactions, want 1", n)
		}
		if s := b.Stats(); s.FaultLatency != 2 || s.Timeouts != 1 || s.Transfers != 1 {
			t.Errorf("stats %+v, want 2 delayed, 1 timeout, 1 transfer", s)
		}
	})
}

// TestFaultFlipMISOBits: exactly N distinct bits of the read data change,
// none of the header; the positions follow the seed.
func TestFaultFlipMISOBits(t *testing.T) {
	for _, n := range []int{1, 3, 17, 32, 40} {
		dev := newFakeDev()
		b := NewInProcess(dev, Timing{}, nil)
		b.SetFaults(&script{faults: []SPIFault{{FlipMISOBits: n, FlipSeed: 42}, {FlipMISOBits: n, FlipSeed: 42}}})
		var miso [2][]byte
		for i := range miso {
			miso[i] = make([]byte, 8)
			if err := b.Transfer(context.Background(), proto.RegRead(0), miso[i]); err != nil {
				t.Fatal(err)
			}
		}
		changed := 0
		for i, v := range miso[0] {
			d := bits.OnesCount8(v ^ 0xA5)
			if i < proto.ReadDataStart && d != 0 {
				t.Errorf("n=%d: header byte %d flipped", n, i)
			}
			changed += d
		}
		want := min(n, 32)
		if changed != want {
			t.Errorf("n=%d: %d bits changed, want %d", n, changed, want)
		}
		if string(miso[0]) != string(miso[1]) {
			t.Errorf("n=%d: same seed flipped different bits: % x vs % x", n, miso[0], miso[1])
		}
		if s := b.Stats(); s.FaultFlips != 2 || s.FlippedBits != uint64(2*want) || s.Transfers != 2 {
			t.Errorf("n=%d: stats %+v", n, s)
		}
		b.Close()
	}
}

// TestFaultsUnthrottled: with the timing model off, injected timeouts
// still fail the transfer and still wait for the deadline; faulty
// transfers are decided only while they own the bus.
func TestFaultsUnthrottled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dev := newFakeDev()
		b := NewInProcess(dev, Timing{}, nil)
		defer b.Close()
		src := &script{faults: []SPIFault{{TimeoutBefore: true}, {}, {TimeoutAfter: true}}}
		b.SetFaults(src)
		ctx := context.Background()
		start := time.Now()
		err := b.Transfer(ctx, proto.RegRead(0), make([]byte, 8))
		if faultKind(err) != FaultTimeoutBefore || time.Since(start) != 500*time.Millisecond {
			t.Errorf("timeout-before: %v after %v", err, time.Since(start))
		}
		start = time.Now()
		if err := b.Transfer(ctx, proto.RegRead(0), make([]byte, 8)); err != nil || time.Since(start) != 0 {
			t.Errorf("clean transfer: %v after %v, want nil after 0", err, time.Since(start))
		}
		err = b.Transfer(ctx, proto.RegWrite(0x0294, 1), make([]byte, 7))
		if faultKind(err) != FaultTimeoutAfter || len(dev.calls()) != 2 {
			t.Errorf("timeout-after: %v, %d device calls, want 2", err, len(dev.calls()))
		}
		if len(src.seen) != 3 || src.seen[2] != proto.CmdWrite {
			t.Errorf("Decide calls %v", src.seen)
		}
		b.SetFaults(nil)
		start = time.Now()
		for range 10 {
			if err := b.Transfer(ctx, proto.RegRead(0), make([]byte, 8)); err != nil {
				t.Fatal(err)
			}
		}
		if len(src.seen) != 3 || time.Since(start) != 0 {
			t.Errorf("after SetFaults(nil): %d Decide calls, %v elapsed", len(src.seen), time.Since(start))
		}
	})
}

// irqScript drops the edges listed in drop (by index) and injects
// spurious edges on its channel.
type irqScript struct {
	mu    sync.Mutex
	n     int
	drop  map[int]bool
	spurs chan struct{}
}

func (s *irqScript) Edge() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.n++
	return !s.drop[s.n-1]
}

func (s *irqScript) Spurious() <-chan struct{} { return s.spurs }

var _ IRQFaults = (*irqScript)(nil)

// TestIRQFaults: the forwarded line drops the edges the source drops,
// adds its spurious ones, counts them, and stops on Close.
func TestIRQFaults(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dev := newFakeDev()
		b := NewInProcess(dev, DefaultTiming(), nil)
		src := &irqScript{drop: map[int]bool{1: true, 2: true}, spurs: make(chan struct{}, 1)}
		if err := b.SetIRQFaults(src); err != nil {
			t.Fatal(err)
		}
		line := b.Interrupt()
		if line == (<-chan struct{})(dev.irq) {
			t.Fatal("Interrupt returned the chip's channel with IRQ faults set")
		}
		got := func() bool {
			synctest.Wait()
			select {
			case <-line:
				return true
			default:
				return false
			}
		}
		for i, want := range []bool{true, false, false, true} {
			dev.irq <- struct{}{}
			if g := got(); g != want {
				t.Errorf("edge %d delivered %v, want %v", i, g, want)
			}
		}
		src.spurs <- struct{}{}
		if !got() {
			t.Error("spurious edge not delivered")
		}
		if got() {
			t.Error("an edge out of nowhere")
		}
		s := b.Stats()
		if s.IRQEdges != 4 || s.IRQDropped != 2 || s.IRQSpurious != 1 {
			t.Errorf("stats %+v, want 4 edges, 2 dropped, 1 spurious", s)
		}
		// A nil source passes edges unchanged through the same line.
		if err := b.SetIRQFaults(nil); err != nil {
			t.Fatal(err)
		}
		dev.irq <- struct{}{}
		if !got() {
			t.Error("edge lost with the source removed")
		}
		b.Close() // the forwarder stops: synctest fails on a leaked goroutine
		if err := b.SetIRQFaults(src); err != nil {
			t.Errorf("replacing the source of a closed bus: %v", err)
		}
	})
}

// TestIRQFaultsAfterInterrupt: a bus that has handed out the chip's
// channel cannot start forwarding (the driver would not see it).
func TestIRQFaultsAfterInterrupt(t *testing.T) {
	dev := newFakeDev()
	b := NewInProcess(dev, DefaultTiming(), nil)
	defer b.Close()
	if line := b.Interrupt(); line != (<-chan struct{})(dev.irq) {
		t.Fatal("without IRQ faults Interrupt must return the chip's channel")
	}
	if err := b.SetIRQFaults(&irqScript{}); !errors.Is(err, syscall.EBUSY) {
		t.Errorf("SetIRQFaults after Interrupt: %v, want EBUSY", err)
	}
	if err := b.SetIRQFaults(nil); err != nil {
		t.Errorf("SetIRQFaults(nil): %v", err)
	}
	closed := NewInProcess(newFakeDev(), DefaultTiming(), nil)
	closed.Close()
	if err := closed.SetIRQFaults(&irqScript{}); !errors.Is(err, syscall.EBADF) {
		t.Errorf("SetIRQFaults on a closed bus: %v, want EBADF", err)
	}
}
