package spibridge

import (
	"context"
	"errors"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"tsnsim/chip/proto"
)

// fakeDev is a Device that records when each transaction is decoded.
type fakeDev struct {
	mu   sync.Mutex
	at   []time.Time
	mosi [][]byte
	err  error
	irq  chan struct{}
}

func newFakeDev() *fakeDev { return &fakeDev{irq: make(chan struct{}, 1)} }

func (d *fakeDev) Transact(mosi, miso []byte) error {
	d.mu.Lock()
	d.at = append(d.at, time.Now())
	d.mosi = append(d.mosi, append([]byte(nil), mosi...))
	err := d.err
	d.mu.Unlock()
	for i := range miso {
		miso[i] = 0xA5
	}
	return err
}

func (d *fakeDev) IRQ() <-chan struct{} { return d.irq }

func (d *fakeDev) calls() []time.Time {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]time.Time(nil), d.at...)
}

// txWrite returns a TX frame write for a frame of n bytes (without FCS).
func txWrite(t *testing.T, n int) []byte {
	t.Helper()
	mosi, err := proto.TxFrameWrite(proto.SendNow(n+4, proto.PriorityBestEffort), make([]byte, n))
	if err != nil {
		t.Fatal(err)
	}
	// chip.md section 2: 01 20 00 + tx_metadata (32) + frame (N) + FCS (4) = 39 + N.
	if len(mosi) != 39+n {
		t.Fatalf("TX write of a %d-byte frame is %d bytes, want %d", n, len(mosi), 39+n)
	}
	return mosi
}

// TestTxWriteHoldsBus: a TX frame write holds the bus for the per-transfer
// overhead (20 us) plus 8 bits per byte at 15 MHz, and the chip decodes it
// when its last byte has arrived.
func TestTxWriteHoldsBus(t *testing.T) {
	for _, n := range []int{60, 1514} {
		synctest.Test(t, func(t *testing.T) {
			dev := newFakeDev()
			b := NewInProcess(dev, DefaultTiming(), nil)
			defer b.Close()
			mosi := txWrite(t, n)
			want := time.Duration((39+n)*8)*time.Second/15_000_000 + 20*time.Microsecond
			start := time.Now()
			if err := b.Transfer(context.Background(), mosi, make([]byte, len(mosi))); err != nil {
				t.Fatal(err)
			}
			if got := time.Since(start); got != want {
				t.Errorf("N=%d: %d-byte TX write took %v, want %v", n, len(mosi), got, want)
			}
			if c := dev.calls(); len(c) != 1 || c[0].Sub(start) != want {
				t.Errorf("N=%d: write decoded at %v, want once at the end (%v)", n, offsets(c, start), want)
			}
			s := b.Stats()
			if s.Transfers != 1 || s.Bytes != uint64(39+n) || s.Busy != want || s.Wait != 0 || s.Timeouts != 0 {
				t.Errorf("N=%d: stats %+v", n, s)
			}
		})
	}
	// The figures themselves: 99 bytes = 52.8 us exactly; 1553 bytes =
	// 828.2666 us, truncated to the nanosecond.
	tm := DefaultTiming()
	if got := tm.WireTime(99); got != 52800*time.Nanosecond {
		t.Errorf("WireTime(99) = %v, want 52.8us", got)
	}
	if got := tm.Duration(1553); got != 828266*time.Nanosecond+20*time.Microsecond {
		t.Errorf("Duration(1553) = %v, want 848.266us", got)
	}
}

func offsets(ts []time.Time, start time.Time) []time.Duration {
	var d []time.Duration
	for _, t := range ts {
		d = append(d, t.Sub(start))
	}
	return d
}

// TestReadDecodedAtFirstDataByte: a read is decoded when its first data
// byte is due (overhead + header + turnaround), a write at the end.
func TestReadDecodedAtFirstDataByte(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dev := newFakeDev()
		b := NewInProcess(dev, DefaultTiming(), nil)
		defer b.Close()
		ctx := context.Background()

		start := time.Now()
		miso := make([]byte, proto.RegReadLen)
		if err := b.Transfer(ctx, proto.RegRead(0x0288), miso); err != nil {
			t.Fatal(err)
		}
		readTotal := time.Since(start)
		wantDue := 20*time.Microsecond + time.Duration(4*8)*time.Second/15_000_000 // 22.133 us
		wantTotal := 20*time.Microsecond + time.Duration(8*8)*time.Second/15_000_000
		if readTotal != wantTotal {
			t.Errorf("8-byte register read took %v, want %v", readTotal, wantTotal)
		}
		if miso[4] != 0xA5 {
			t.Errorf("MISO not filled by the device: % x", miso)
		}

		start2 := time.Now()
		if err := b.Transfer(ctx, proto.RegWrite(0x0294, 1), make([]byte, proto.RegWriteLen)); err != nil {
			t.Fatal(err)
		}
		wantWrite := 20*time.Microsecond + time.Duration(7*8)*time.Second/15_000_000
		if got := time.Since(start2); got != wantWrite {
			t.Errorf("7-byte register write took %v, want %v", got, wantWrite)
		}

		// A 14-byte RX metadata read is also decoded at the first data byte.
		start3 := time.Now()
		if err := b.Transfer(ctx, proto.RxMetaRead(), make([]byte, proto.RxMetaReadLen)); err != nil {
			t.Fatal(err)
		}
		c := dev.calls()
		if len(c) != 3 {
			t.Fatalf("device saw %d transactions, want 3", len(c))
		}
		if got := c[0].Sub(start); got != wantDue {
			t.Errorf("register read decoded %v into the transfer, want %v", got, wantDue)
		}
		if got := c[1].Sub(start2); got != wantWrite {
			t.Errorf("register write decoded %v into the transfer, want at the end (%v)", got, wantWrite)
		}
		if got := c[2].Sub(start3); got != wantDue {
			t.Errorf("metadata read decoded %v into the transfer, want %v", got, wantDue)
		}
	})
}

// TestSharedBusQueues: a transfer issued while another owns the bus waits
// for it, so it completes after both durations; the wait is accounted.
func TestSharedBusQueues(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dev := newFakeDev()
		b := NewInProcess(dev, DefaultTiming(), nil)
		defer b.Close()
		ctx := context.Background()
		long := txWrite(t, 1514)
		d1 := 20*time.Microsecond + time.Duration(1553*8)*time.Second/15_000_000
		d2 := 20*time.Microsecond + time.Duration(8*8)*time.Second/15_000_000

		start := time.Now()
		var done1, done2 time.Duration
		var wg sync.WaitGroup
		wg.Go(func() {
			if err := b.Transfer(ctx, long, make([]byte, len(long))); err != nil {
				t.Error(err)
			}
			done1 = time.Since(start)
		})
		synctest.Wait() // the TX write owns the bus
		wg.Go(func() {
			if err := b.Transfer(ctx, proto.RegRead(0x0288), make([]byte, 8)); err != nil {
				t.Error(err)
			}
			done2 = time.Since(start)
		})
		wg.Wait()
		if done1 != d1 {
			t.Errorf("first transfer done at %v, want %v", done1, d1)
		}
		if done2 != d1+d2 {
			t.Errorf("queued transfer done at %v, want %v + %v = %v", done2, d1, d2, d1+d2)
		}
		s := b.Stats()
		want := BusStats{Transfers: 2, Bytes: 1553 + 8, Busy: d1 + d2, Wait: d1, MaxWait: d1}
		if s != want {
			t.Errorf("stats %+v, want %+v", s, want)
		}
	})
}

// TestWaiterIsNotTimed: as with spi_sync on Linux, waiting for the bus
// is not timed. A transfer queued behind two that each keep the bus for
// their whole 1 ms timeout (injected timeout-after) waits about twice its
// own timeout, then runs and succeeds; its timeout starts when it owns
// the bus.
func TestWaiterIsNotTimed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dev := newFakeDev()
		tm := DefaultTiming()
		tm.Timeout = time.Millisecond
		b := NewInProcess(dev, tm, nil)
		defer b.Close()
		b.SetFaults(&script{faults: []SPIFault{{TimeoutAfter: true}, {TimeoutAfter: true}}})
		ctx := context.Background()

		start := time.Now()
		var wg sync.WaitGroup
		for range 2 {
			wg.Go(func() {
				if err := b.Transfer(ctx, proto.RegWrite(0x0294, 1), make([]byte, 7)); faultKind(err) != FaultTimeoutAfter {
					t.Errorf("holder: %v, want the injected timeout-after", err)
				}
			})
			time.Sleep(50 * time.Microsecond)
		}
		issued := time.Now()
		if err := b.Transfer(ctx, proto.RegRead(0x0288), make([]byte, 8)); err != nil {
			t.Errorf("waiter: %v, want success (waiting is not timed)", err)
		}
		wantWait := 2*tm.Timeout - issued.Sub(start)
		if got := time.Since(issued); got != wantWait+regReadHold {
			t.Errorf("waiter done after %v, want %v (wait) + %v (own hold)", got, wantWait, regReadHold)
		}
		wg.Wait()
		if n := len(dev.calls()); n != 3 {
			t.Errorf("device saw %d transactions, want 3", n)
		}
		s := b.Stats()
		if s.Timeouts != 2 || s.FaultTimeoutAfter != 2 || s.Transfers != 1 || s.MaxWait != wantWait {
			t.Errorf("stats %+v, want 2 timeouts (both injected), 1 transfer, MaxWait %v", s, wantWait)
		}
	})
}

// TestLongTransferTimesOut: a transfer whose own duration exceeds its
// timeout holds the bus until the deadline, fails with ETIMEDOUT and never
// reaches the chip; the next transfer waits for that deadline.
func TestLongTransferTimesOut(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dev := newFakeDev()
		tm := DefaultTiming()
		tm.Timeout = 500 * time.Microsecond // a 1553-byte write needs 848.266 us
		b := NewInProcess(dev, tm, nil)
		defer b.Close()
		ctx := context.Background()
		long := txWrite(t, 1514)

		start := time.Now()
		var errLong error
		var doneLong time.Duration
		var wg sync.WaitGroup
		wg.Go(func() {
			errLong = b.Transfer(ctx, long, make([]byte, len(long)))
			doneLong = time.Since(start)
		})
		// The timeout counts from issue, waiting included: a read issued
		// 30 us later still fits (waits 470 us, holds 24.266 us).
		time.Sleep(30 * time.Microsecond)
		if err := b.Transfer(ctx, proto.RegRead(0x0288), make([]byte, 8)); err != nil {
			t.Errorf("short transfer after the timed-out one: %v", err)
		}
		shortDone := time.Since(start)
		wg.Wait()
		if !errors.Is(errLong, syscall.ETIMEDOUT) {
			t.Errorf("long transfer: err %v, want ETIMEDOUT", errLong)
		}
		if doneLong != 500*time.Microsecond {
			t.Errorf("long transfer failed after %v, want exactly 500us", doneLong)
		}
		wantShort := 500*time.Microsecond + 20*time.Microsecond + time.Duration(8*8)*time.Second/15_000_000
		if shortDone != wantShort {
			t.Errorf("short transfer done at %v, want %v (after the deadline of the long one)", shortDone, wantShort)
		}
		c := dev.calls()
		if len(c) != 1 || dev.mosi[0][0] != proto.CmdRead {
			t.Errorf("device saw %d transactions, want only the register read", len(c))
		}
		s := b.Stats()
		if s.Timeouts != 1 || s.Transfers != 1 || s.Bytes != 8 {
			t.Errorf("stats %+v, want 1 timeout, 1 transfer of 8 bytes", s)
		}
	})
}

// TestQueueIsNotTimed is chip.md scenario 2 in miniature under Linux's
// timeout rule: with a 1 ms timeout, two queued 848 us TX writes both
// complete, the second ending 1.7 ms after it was issued: its timeout
// runs from when it owns the bus, not from when it was queued.
func TestQueueIsNotTimed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dev := newFakeDev()
		tm := DefaultTiming()
		tm.Timeout = time.Millisecond
		b := NewInProcess(dev, tm, nil)
		defer b.Close()
		long := txWrite(t, 1514)
		start := time.Now()
		type result struct {
			err  error
			done time.Duration
		}
		var res [2]result
		var wg sync.WaitGroup
		for i := range 2 {
			wg.Go(func() {
				err := b.Transfer(context.Background(), long, make([]byte, len(long)))
				res[i] = result{err, time.Since(start)}
			})
			synctest.Wait()
			time.Sleep(10 * time.Microsecond)
		}
		wg.Wait()
		d := 20*time.Microsecond + time.Duration(1553*8)*time.Second/15_000_000
		if res[0].err != nil || res[0].done != d {
			t.Errorf("first: %v at %v, want success at %v", res[0].err, res[0].done, d)
		}
		if res[1].err != nil || res[1].done != 2*d {
			t.Errorf("second: %v at %v, want success at %v", res[1].err, res[1].done, 2*d)
		}
		if n := len(dev.calls()); n != 2 {
			t.Errorf("device saw %d transactions, want 2", n)
		}
	})
}

func TestLinuxTimeout(t *testing.T) {
	const hz = 15_000_000
	for _, n := range []int{1, 7, 8, 1553, 100_000, 468_750} {
		if got := LinuxTimeout(n, hz); got != 500*time.Millisecond {
			t.Errorf("LinuxTimeout(%d, 15 MHz) = %v, want 500ms", n, got)
		}
	}
	for _, n := range []int{468_750, 469_688, 1_000_000, 10_000_000} {
		// max(len*8*2 / (speed_hz/1000), 500) ms, integer arithmetic.
		want := time.Duration(max(n*8*2/(hz/1000), 500)) * time.Millisecond
		if got := LinuxTimeout(n, hz); got != want {
			t.Errorf("LinuxTimeout(%d, 15 MHz) = %v, want %v", n, got, want)
		}
	}
	if got := LinuxTimeout(1_000_000, hz); got != 1066*time.Millisecond {
		t.Errorf("LinuxTimeout(1e6, 15 MHz) = %v, want 1.066s", got)
	}
	if got := LinuxTimeout(469_688, hz); got != 501*time.Millisecond {
		t.Errorf("LinuxTimeout(469688, 15 MHz) = %v, want 501ms", got)
	}
	// Default timing uses the Linux 6.x formula at the bus clock.
	if got := DefaultTiming().TimeoutFor(8); got != 500*time.Millisecond {
		t.Errorf("DefaultTiming().TimeoutFor(8) = %v, want 500ms", got)
	}
	if got := DefaultTiming().TimeoutFor(1_000_000); got != 1066*time.Millisecond {
		t.Errorf("DefaultTiming().TimeoutFor(1e6) = %v, want 1.066s", got)
	}
	// Unthrottled timing still times out per the formula at 15 MHz.
	if got := (Timing{}).TimeoutFor(1_000_000); got != 1066*time.Millisecond {
		t.Errorf("Timing{}.TimeoutFor(1e6) = %v, want 1.066s", got)
	}
	if got := (Timing{Timeout: 3 * time.Millisecond}).TimeoutFor(1_000_000); got != 3*time.Millisecond {
		t.Errorf("explicit Timeout ignored: %v", got)
	}
}

func TestLegacyLinuxTimeout(t *testing.T) {
	const hz = 15_000_000
	for _, tc := range []struct {
		n    int
		want time.Duration
	}{
		{8, 200 * time.Millisecond},    // 2*(64000/15e6 = 0) + 200
		{1553, 200 * time.Millisecond}, // 2*(12424000/15e6 = 0) + 200
		{1875, 202 * time.Millisecond}, // 2*(15000000/15e6 = 1) + 200
		{100_000, 306 * time.Millisecond},
		{1_000_000, 1266 * time.Millisecond},
	} {
		want := time.Duration(2*(8000*tc.n/hz)+200) * time.Millisecond
		if want != tc.want {
			t.Fatalf("table error for n=%d: formula %v, table %v", tc.n, want, tc.want)
		}
		if got := LegacyLinuxTimeout(tc.n, hz); got != want {
			t.Errorf("LegacyLinuxTimeout(%d, 15 MHz) = %v, want %v", tc.n, got, want)
		}
	}
}

func TestBadBuffers(t *testing.T) {
	dev := newFakeDev()
	b := NewInProcess(dev, DefaultTiming(), nil)
	defer b.Close()
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		tx, rx []byte
	}{
		{"nil", nil, nil},
		{"empty", []byte{}, []byte{}},
		{"short rx", proto.RegRead(0), make([]byte, 7)},
		{"long rx", proto.RegRead(0), make([]byte, 9)},
		{"no rx", proto.RegRead(0), nil},
	} {
		if err := b.Transfer(ctx, tc.tx, tc.rx); !errors.Is(err, syscall.EINVAL) {
			t.Errorf("%s: err %v, want EINVAL", tc.name, err)
		}
	}
	if n := len(dev.calls()); n != 0 {
		t.Errorf("device saw %d transactions for bad buffers", n)
	}
	if s := b.Stats(); s != (BusStats{}) {
		t.Errorf("bad buffers accounted: %+v", s)
	}
}

func TestClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dev := newFakeDev()
		b := NewInProcess(dev, DefaultTiming(), nil)
		ctx := context.Background()
		long := txWrite(t, 1514)

		// A waiter fails promptly when the bus is closed; the transfer on
		// the wire completes.
		var wg sync.WaitGroup
		start := time.Now()
		wg.Go(func() {
			if err := b.Transfer(ctx, long, make([]byte, len(long))); err != nil {
				t.Errorf("transfer on the wire at close: %v", err)
			}
		})
		synctest.Wait()
		var waitErr error
		var waitDone time.Duration
		wg.Go(func() {
			waitErr = b.Transfer(ctx, proto.RegRead(0), make([]byte, 8))
			waitDone = time.Since(start)
		})
		time.Sleep(100 * time.Microsecond)
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if !errors.Is(waitErr, syscall.EBADF) || waitDone != 100*time.Microsecond {
			t.Errorf("waiter at close: %v at %v, want EBADF at 100us", waitErr, waitDone)
		}
		wg.Wait()
		if err := b.Transfer(ctx, proto.RegRead(0), make([]byte, 8)); !errors.Is(err, syscall.EBADF) {
			t.Errorf("transfer after Close: %v, want EBADF", err)
		}
		if err := b.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
		if n := len(dev.calls()); n != 1 {
			t.Errorf("device saw %d transactions, want 1", n)
		}
	})
}

func TestContextCancelWhileWaiting(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dev := newFakeDev()
		b := NewInProcess(dev, DefaultTiming(), nil)
		defer b.Close()
		long := txWrite(t, 1514)
		var wg sync.WaitGroup
		wg.Go(func() {
			if err := b.Transfer(context.Background(), long, make([]byte, len(long))); err != nil {
				t.Error(err)
			}
		})
		synctest.Wait()
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(100*time.Microsecond, cancel)
		start := time.Now()
		err := b.Transfer(ctx, proto.RegRead(0), make([]byte, 8))
		if !errors.Is(err, context.Canceled) {
			t.Errorf("err %v, want context.Canceled", err)
		}
		if got := time.Since(start); got != 100*time.Microsecond {
			t.Errorf("cancelled waiter returned after %v, want 100us", got)
		}
		wg.Wait()
		if n := len(dev.calls()); n != 1 {
			t.Errorf("device saw %d transactions, want 1", n)
		}
		// A deadline shorter than the bus timeout also ends the wait.
		wg.Go(func() { b.Transfer(context.Background(), long, make([]byte, len(long))) })
		synctest.Wait()
		dctx, dcancel := context.WithTimeout(context.Background(), 50*time.Microsecond)
		defer dcancel()
		start = time.Now()
		err = b.Transfer(dctx, proto.RegRead(0), make([]byte, 8))
		if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) != 50*time.Microsecond {
			t.Errorf("deadline: %v after %v, want DeadlineExceeded after 50us", err, time.Since(start))
		}
		wg.Wait()
	})
}

// TestRejectedTransactionCompletes: the bus reports nothing about a
// transaction the chip rejects; it is counted as rejected.
func TestRejectedTransactionCompletes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dev := newFakeDev()
		dev.err = errors.New("rejected")
		b := NewInProcess(dev, DefaultTiming(), nil)
		defer b.Close()
		if err := b.Transfer(context.Background(), []byte{0x07, 0, 0}, make([]byte, 3)); err != nil {
			t.Errorf("rejected transaction failed the transfer: %v", err)
		}
		if s := b.Stats(); s.Transfers != 1 || s.Rejected != 1 || s.Bytes != 3 {
			t.Errorf("stats %+v, want 1 transfer, 1 rejected, 3 bytes", s)
		}
	})
}

// TestUnthrottled: Timing{} takes no emulated time at all.
func TestUnthrottled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dev := newFakeDev()
		b := NewInProcess(dev, Timing{}, nil)
		defer b.Close()
		long := txWrite(t, 1514)
		start := time.Now()
		for range 100 {
			if err := b.Transfer(context.Background(), long, make([]byte, len(long))); err != nil {
				t.Fatal(err)
			}
			if err := b.Transfer(context.Background(), proto.RegRead(0), make([]byte, 8)); err != nil {
				t.Fatal(err)
			}
		}
		if got := time.Since(start); got != 0 {
			t.Errorf("200 unthrottled transfers took %v, want 0", got)
		}
		if s := b.Stats(); s.Transfers != 200 || s.Busy != 0 {
			t.Errorf("stats %+v", s)
		}
	})
}

func TestInterrupt(t *testing.T) {
	dev := newFakeDev()
	b := NewInProcess(dev, DefaultTiming(), nil)
	defer b.Close()
	dev.irq <- struct{}{}
	select {
	case <-b.Interrupt():
	default:
		t.Fatal("interrupt edge of the device not delivered by the bus")
	}
	if b.Timing() != DefaultTiming() {
		t.Errorf("Timing() = %+v", b.Timing())
	}
}

// TestWokeTakesBackTheWakeUp: the host's first transfer after a late
// wake-up (Woke) starts at the event it woke for plus the host's own
// time since waking, as if it had woken at the event: not before a later
// marked event, no further back than the lag bound, only for a transfer
// issued within chainWindow of the wake-up, and only once. The late
// wake-up is set up by hand, as a real-time run would leave it.
func TestWokeTakesBackTheWakeUp(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tm := DefaultTiming()
		tm.Timer = nil
		const late = 60 * time.Microsecond
		cases := []struct {
			name  string
			setup func(b *InProcess, now time.Time)
			back  time.Duration // how much earlier than now the transfer starts
		}{
			{"none", func(*InProcess, time.Time) {}, 0},
			{"woke late", func(b *InProcess, now time.Time) { b.Woke(now.Add(-late), now) }, late},
			{"issued 5µs after waking", func(b *InProcess, now time.Time) {
				b.Woke(now.Add(-late-5*time.Microsecond), now.Add(-5*time.Microsecond))
			}, late},
			{"issued after chainWindow", func(b *InProcess, now time.Time) {
				b.Woke(now.Add(-late-chainWindow-time.Microsecond), now.Add(-chainWindow-time.Microsecond))
			}, 0},
			{"later event marked", func(b *InProcess, now time.Time) {
				b.Woke(now.Add(-late), now)
				b.MarkEvent(now.Add(-10 * time.Microsecond))
			}, 10 * time.Microsecond},
			{"beyond the lag bound", func(b *InProcess, now time.Time) { b.Woke(now.Add(-time.Hour), now) }, maxLag},
			{"woke early", func(b *InProcess, now time.Time) { b.Woke(now.Add(late), now) }, 0},
		}
		for _, c := range cases {
			b := NewInProcess(newFakeDev(), tm, nil)
			now := time.Now()
			c.setup(b, now)
			var tl Timeline
			if err := b.TransferTimeline(context.Background(), make([]byte, 8), make([]byte, 8), &tl); err != nil {
				t.Fatal(err)
			}
			if got := now.Sub(tl.Start); got != c.back {
				t.Errorf("%s: started %v before the transfer was issued, want %v", c.name, got, c.back)
			}
			if c.back > 0 && !tl.Queued.Equal(tl.Start) {
				t.Errorf("%s: queued at %v, started at %v: a transfer taken back was issued when it started", c.name, tl.Queued.Sub(now), tl.Start.Sub(now))
			}
			// The credit is spent: the next transfer, issued a while
			// after, starts when issued.
			time.Sleep(time.Millisecond)
			next := time.Now()
			if err := b.TransferTimeline(context.Background(), make([]byte, 8), make([]byte, 8), &tl); err != nil {
				t.Fatal(err)
			}
			if !tl.Start.Equal(next) {
				t.Errorf("%s: the next transfer started %v after it was issued, want at once", c.name, tl.Start.Sub(next))
			}
			b.Close()
		}
	})
}

// TestMarkEventFloorsRepayment: a transfer issued right after a late
// wake-up starts earlier in the model by that lateness (the repayment),
// but never before an event the host marked, which it may be answering
// (a frame handed over, an interrupt edge): an echo must not come back
// sooner than the model allows. The late wake-up is set up by hand, as
// a real-time run would leave it.
func TestMarkEventFloorsRepayment(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tm := DefaultTiming()
		hold := tm.Duration(8)
		for _, marked := range []bool{false, true} {
			b := NewInProcess(newFakeDev(), tm, nil)
			now := time.Now()
			late := 200 * time.Microsecond
			b.lastEnd, b.lastReturn, b.lastLate = now.Add(-late), now, late
			event := now.Add(-50 * time.Microsecond)
			if marked {
				b.MarkEvent(event)
			}
			var tl Timeline
			if err := b.TransferTimeline(context.Background(), make([]byte, 8), make([]byte, 8), &tl); err != nil {
				t.Fatal(err)
			}
			want := now.Add(-late) // repaid
			if marked {
				want = event
			}
			if !tl.Start.Equal(want) || tl.End.Sub(tl.Start) != hold {
				t.Errorf("marked %v: started %v after the wake-up, held %v; want %v, %v",
					marked, tl.Start.Sub(now), tl.End.Sub(tl.Start), want.Sub(now), hold)
			}
			b.Close()
		}
		if MarkerOf(NewTraced(NewInProcess(newFakeDev(), tm, nil), "a", nil)) == nil {
			t.Error("MarkerOf does not find the bus behind Traced")
		}
		if MarkerOf(NewInProcess(newFakeDev(), Timing{}, nil)) != nil {
			t.Error("MarkerOf returns a bus without a timing model")
		}
	})
}
