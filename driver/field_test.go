package driver

import (
	"context"
	"errors"
	"strings"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"tsnsim/chip"
	"tsnsim/spibridge"
)

func TestParseField(t *testing.T) {
	for in, want := range map[string]Field{
		"": 0, "none": 0, "tx-slot": FieldTxSlot, "fcs, lock-order": FieldFCS | FieldLockOrder,
		"all": FieldTxSlot | FieldXmitClock | FieldLockOrder | FieldFCS,
	} {
		got, err := ParseField(in)
		if err != nil || got != want {
			t.Errorf("ParseField(%q) = %v, %v; want %v", in, got, err, want)
		}
		if back, err := ParseField(got.String()); err != nil || back != got {
			t.Errorf("%v does not round-trip: %v, %v", got, back, err)
		}
	}
	if _, err := ParseField("tx-slot,bogus"); err == nil || !strings.Contains(err.Error(), `"bogus"`) {
		t.Errorf("bad behaviour: %v", err)
	}
}

// TestLockWatchdog: two tasks taking two locks in opposite orders block
// each other; the watchdog reports the cycle when the second one blocks,
// and both give up when their context ends. A holder taking a lock again
// does not block.
func TestLockWatchdog(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d := New(nil, Config{})
		f := &d.fld
		ctx, cancel := context.WithCancel(context.Background())
		a, b := &task{name: "A"}, &task{name: "B"}
		if err := f.regLock.lock(ctx, a, d); err != nil {
			t.Fatal(err)
		}
		if err := f.regLock.lock(ctx, a, d); err != nil { // re-entrant
			t.Fatal(err)
		}
		f.regLock.unlock(a)
		if err := f.txLock.lock(ctx, b, d); err != nil {
			t.Fatal(err)
		}
		errs := make(chan error, 2)
		go func() { errs <- f.txLock.lock(ctx, a, d) }()
		synctest.Wait()
		select {
		case r := <-d.Deadlock():
			t.Fatalf("deadlock reported with one task blocked: %s", r)
		default:
		}
		go func() { errs <- f.regLock.lock(ctx, b, d) }()
		synctest.Wait()
		want := "B waits for the register lock held by A; A waits for the TX-queue lock held by B"
		select {
		case r := <-d.Deadlock():
			if r != want {
				t.Errorf("report %q, want %q", r, want)
			}
		default:
			t.Fatal("no deadlock reported")
		}
		if s := d.Stats(); s.Deadlocks != 1 || !strings.Contains(s.FieldSummary(), "deadlocks 1") {
			t.Errorf("stats %+v, summary %q", s, s.FieldSummary())
		}
		cancel()
		for range 2 {
			if err := <-errs; !errors.Is(err, context.Canceled) {
				t.Errorf("blocked lock: %v, want context.Canceled", err)
			}
		}
	})
}

// TestAtomicDetector: a transfer made under the transmit path's atomic
// mark is a BUG and starts the aftermath, in which transfers fail with
// ETIMEDOUT after the Linux timeout; an unmarked transfer is no BUG.
func TestAtomicDetector(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := chip.New(chip.Config{})
		defer c.Close()
		d := New(spibridge.NewInProcess(c, spibridge.DefaultTiming(), nil), Config{Field: FieldXmitClock})
		ctx := context.Background()
		if _, err := d.ReadRegister(ctx, 0x0294); err != nil {
			t.Fatal(err)
		}
		if s := d.Stats(); s.AtomicSleepBugs != 0 || s.LostCompletions != 0 {
			t.Fatalf("unmarked transfer: %+v", s)
		}
		if _, err := d.ReadRegister(withAtomic(ctx, "test"), 0x0294); err != nil {
			t.Fatalf("the BUG's own transfer completes: %v", err)
		}
		start := time.Now()
		_, err := d.ReadRegister(ctx, 0x0294)
		if !errors.Is(err, syscall.ETIMEDOUT) || time.Since(start) != 500*time.Millisecond {
			t.Errorf("transfer in the aftermath: %v after %v, want ETIMEDOUT after 500ms", err, time.Since(start))
		}
		time.Sleep(FieldAftermath)
		if _, err := d.ReadRegister(ctx, 0x0294); err != nil {
			t.Errorf("after the aftermath: %v", err)
		}
		if s := d.Stats(); s.AtomicSleepBugs != 1 || s.LostCompletions != 1 {
			t.Errorf("stats %+v: want 1 BUG, 1 lost completion", s)
		}
	})
}
