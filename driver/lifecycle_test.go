package driver

import (
	"context"
	"errors"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"

	"tsnsim/chip"
	"tsnsim/chip/regs"
	"tsnsim/spibridge"
)

func always(act fault) func(xferKind, int) fault {
	return func(xferKind, int) fault { return act }
}

// TestOpenFailingBus: Open on a bus where every transfer times out, or
// that never answers (honouring only the context), retries until its
// budget (Config.OpenBudget) runs out and gives up with the transport's
// error; the interface stays down.
func TestOpenFailingBus(t *testing.T) {
	for _, tc := range []struct {
		name  string
		act   fault
		bound time.Duration
	}{
		{"timeouts", failBefore, testBudget},
		{"stuck", stuck, testBudget},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				r := newRig(t, Config{OpenBudget: testBudget}, false)
				r.f.setRule(always(tc.act))
				start := time.Now()
				err := r.d.Open(context.Background())
				if el := time.Since(start); err == nil || el > tc.bound {
					t.Fatalf("Open = %v after %v, want an error within %v", err, el, tc.bound)
				}
				if tc.act == failBefore && !errors.Is(err, syscall.ETIMEDOUT) {
					t.Errorf("Open error %v does not wrap ETIMEDOUT", err)
				}
				if r.d.Up() {
					t.Error("interface up after a failed Open")
				}
				if err := r.d.Transmit(make([]byte, 60)); !errors.Is(err, ErrDown) {
					t.Errorf("Transmit after a failed Open: %v", err)
				}
				// Once the bus is back, Open works.
				r.f.setRule(nil)
				r.open(t)
				if !r.d.Up() || r.chip.Register(regs.TSNSystemControl) != 1 {
					t.Error("Open on a healthy bus did not enable TSN")
				}
			})
		})
	}
}

// testBudget is the Open and Stop budget of the tests of a failing bus.
const testBudget = 200 * time.Millisecond

// TestStopFailingBus: Stop while every transfer fails (the worker in its
// backoff, frames queued) returns with the error once its budget runs
// out, drops the ring, and leaves the TX invariant intact.
func TestStopFailingBus(t *testing.T) {
	for _, act := range []fault{failBefore, failAfter, stuck} {
		t.Run(map[fault]string{failBefore: "before", failAfter: "after", stuck: "stuck"}[act], func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				r := newRig(t, Config{TxRingSize: 8, OpenBudget: testBudget}, false)
				r.open(t)
				r.f.setRule(always(act))
				for i := range 8 {
					if err := r.d.Transmit(testFrame(uint32(i), 100)); err != nil {
						t.Fatal(err)
					}
					r.inject(uint32(i), 100)
				}
				time.Sleep(30 * time.Millisecond)
				checkTx(t, r.d.Stats())
				start := time.Now()
				err := r.d.Stop(context.Background())
				el := time.Since(start)
				if err == nil {
					t.Error("Stop on a failing bus reported no error")
				}
				if bound := testBudget + 70*time.Millisecond; el > bound { // the budget plus one worker backoff
					t.Errorf("Stop took %v, bound %v", el, bound)
				}
				s := r.d.Stats()
				checkTx(t, s)
				if s.TxQueued != 0 || r.d.Up() {
					t.Errorf("after Stop: up %v, %+v", r.d.Up(), txOnly(s))
				}
			})
		})
	}
}

// TestStopHungTransfer: a transfer that ignores cancellation holds the
// worker; Stop gives up after LifecycleTimeout with an error, Open
// refuses (EBUSY) until the transfer returns, then settles the cut write
// left over from the last session.
func TestStopHungTransfer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, Config{}, false)
		r.open(t)
		r.f.setRule(onlyAt(kindTxWrite, 1, hang))
		if err := r.d.Transmit(testFrame(0, 100)); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		start := time.Now()
		err := r.d.Stop(context.Background())
		if el := time.Since(start); err == nil || el != LifecycleTimeout {
			t.Errorf("Stop = %v after %v, want an error after %v", err, el, LifecycleTimeout)
		}
		checkTx(t, r.d.Stats())
		if err := r.d.Open(context.Background()); !errors.Is(err, syscall.EBUSY) {
			t.Errorf("Open with the old worker in a transfer: %v, want EBUSY", err)
		}
		r.f.release()
		synctest.Wait()
		if q := r.d.Stats().TxQueued; q != 1 {
			t.Errorf("TxQueued %d before the cut write is settled, want 1", q)
		}
		r.open(t)
		s := r.d.Stats()
		checkTx(t, s)
		if s.TxDropped != 1 || s.TxQueued != 0 || r.chipTaken() != 0 {
			t.Errorf("cut write not settled as dropped: %+v", txOnly(s))
		}
	})
}

// TestNoLeakRealTime runs a loaded, faulty driver in real time on an
// unthrottled bus and checks with goleak that Stop leaves no goroutine.
func TestNoLeakRealTime(t *testing.T) {
	defer goleak.VerifyNone(t)
	c := chip.New(chip.Config{})
	c.Start()
	defer c.Close()
	bus := spibridge.NewInProcess(c, spibridge.Timing{}, nil)
	defer bus.Close()
	f := newFaulty(bus)
	f.setRule(func(k xferKind, i int) fault {
		switch i % 7 {
		case 3:
			return failBefore
		case 5:
			return failAfter
		}
		return pass
	})
	d := New(f, Config{PollInterval: time.Millisecond})
	ctx := context.Background()
	if err := d.Open(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range 200 {
		if err := d.Transmit(testFrame(uint32(i), 100)); err != nil && !errors.Is(err, ErrBusy) {
			t.Fatal(err)
		}
		c.ReceivePHY(appendFCS(testFrame(uint32(i), 100)), time.Now())
	}
	time.Sleep(20 * time.Millisecond)
	if err := d.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	checkTx(t, d.Stats())
}
