package host

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"tsnsim/driver"
)

type stampedBackend struct {
	rx []driver.HWStamp
	tx []driver.TxStamp
}

func (b *stampedBackend) Receive([]byte) bool { return true }
func (b *stampedBackend) ReceiveStamped(_ []byte, st driver.HWStamp) bool {
	b.rx = append(b.rx, st)
	return true
}
func (b *stampedBackend) TxStamped(s driver.TxStamp) { b.tx = append(b.tx, s) }
func (b *stampedBackend) Attach(NIC) error           { return nil }
func (b *stampedBackend) Close() error               { return nil }

type plainBackend struct{ stampedBackend }

func (plainBackend) ReceiveStamped() {} // not the interface's signature

// TestWire: a stamped backend gets the stamped callbacks, a plain one
// only Receive.
func TestWire(t *testing.T) {
	var sb stampedBackend
	var cfg driver.Config
	Wire(&cfg, &sb)
	if cfg.Receive == nil || cfg.TSN.ReceiveStamped == nil || cfg.TSN.TxStamped == nil {
		t.Fatal("stamped backend not wired")
	}
	cfg.TSN.ReceiveStamped(nil, driver.HWStamp{PHC: 5, Valid: true})
	cfg.TSN.TxStamped(driver.TxStamp{Cookie: 9})
	if len(sb.rx) != 1 || sb.rx[0].PHC != 5 || len(sb.tx) != 1 || sb.tx[0].Cookie != 9 {
		t.Errorf("callbacks: %+v %+v", sb.rx, sb.tx)
	}
	var cfg2 driver.Config
	Wire(&cfg2, &plainBackend{})
	if cfg2.Receive == nil || cfg2.TSN.ReceiveStamped != nil {
		t.Error("plain backend wired as stamped")
	}
}

type fakeNIC struct {
	stopped bool
	wake    chan struct{}
	got     []driver.StampRequest
}

func (n *fakeNIC) Transmit([]byte) error { return nil }
func (n *fakeNIC) QueueStopped() bool    { return n.stopped }
func (n *fakeNIC) Wake() <-chan struct{} { return n.wake }
func (n *fakeNIC) TransmitStamped(_ []byte, r driver.StampRequest) error {
	if len(n.got) == 0 {
		n.got = append(n.got, r)
		return driver.ErrBusy
	}
	n.got = append(n.got, r)
	return nil
}

// TestOfferStamped: the request is offered again after NETDEV_TX_BUSY.
func TestOfferStamped(t *testing.T) {
	n := &fakeNIC{wake: make(chan struct{}, 1)}
	n.wake <- struct{}{}
	if err := OfferStamped(context.Background(), n, []byte{1}, driver.StampRequest{Cookie: 3}); err != nil {
		t.Fatal(err)
	}
	if len(n.got) != 2 || n.got[1].Cookie != 3 {
		t.Errorf("offers %+v", n.got)
	}
}

// busyNIC refuses the first busy offers of each frame with ErrBusy.
type busyNIC struct {
	busy, offers, sent int
	wake               chan struct{}
}

func (n *busyNIC) Transmit([]byte) error {
	n.offers++
	if n.busy > 0 {
		n.busy--
		return driver.ErrBusy
	}
	n.sent++
	return nil
}
func (n *busyNIC) QueueStopped() bool    { return false }
func (n *busyNIC) Wake() <-chan struct{} { return n.wake }

// TestOffererReusesTimer: an Offerer waits through one timer for every
// frame: woken by the queue, or by the requeue bound when no wake-up
// comes (virtual time), and a cancelled context ends a wait.
func TestOffererReusesTimer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := &busyNIC{wake: make(chan struct{}, 1)}
		var o Offerer
		for i := range 3 {
			n.busy = 2
			n.wake <- struct{}{} // the first wait is woken, the second times out
			start := time.Now()
			if err := o.Offer(context.Background(), n, []byte{1}); err != nil {
				t.Fatal(err)
			}
			if d := time.Since(start); d != requeueWait {
				t.Errorf("frame %d: offered for %v, want %v (one wake-up, one timeout)", i, d, requeueWait)
			}
		}
		if n.sent != 3 || n.offers != 9 || o.t == nil {
			t.Errorf("sent %d in %d offers (timer %v), want 3 in 9", n.sent, n.offers, o.t != nil)
		}
		ctx, cancel := context.WithCancel(context.Background())
		n.busy = 1
		time.AfterFunc(time.Millisecond, cancel)
		if err := o.Offer(ctx, n, []byte{1}); !errors.Is(err, context.Canceled) {
			t.Errorf("cancelled offer: %v", err)
		}
	})
}
