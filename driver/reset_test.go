package driver

import (
	"context"
	"fmt"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"tsnsim/chip"
	"tsnsim/chip/proto"
	"tsnsim/chip/regs"
	"tsnsim/spibridge"
)

// replaceable is a transport whose chip can go away (transfers fail with
// ENOTCONN, as the socket client's while its server is gone) and come
// back as a fresh one, like a chip server killed and started again.
type replaceable struct {
	mu  sync.Mutex
	cur spibridge.Transport // nil: down
}

func (r *replaceable) Transfer(ctx context.Context, tx, rx []byte) error {
	r.mu.Lock()
	cur := r.cur
	r.mu.Unlock()
	if cur == nil {
		return fmt.Errorf("replaceable: chip gone: %w", syscall.ENOTCONN)
	}
	return cur.Transfer(ctx, tx, rx)
}

func (r *replaceable) Interrupt() <-chan struct{} { return nil } // the driver polls
func (r *replaceable) Close() error               { return nil }

func (r *replaceable) set(t spibridge.Transport) {
	r.mu.Lock()
	r.cur = t
	r.mu.Unlock()
}

// freshChip starts a chip in its reset state and its bus.
func freshChip(t *testing.T) (*chip.Chip, *spibridge.InProcess) {
	c := chip.New(chip.Config{})
	c.Start()
	t.Cleanup(c.Close)
	bus := spibridge.NewInProcess(c, spibridge.DefaultTiming(), nil)
	t.Cleanup(func() { bus.Close() })
	return c, bus
}

// TestChipResetRecovery: the chip behind the driver goes away in the
// middle of traffic both ways and a fresh one (TSN off, counters zero)
// comes back. The driver finds it reset, counts the event and what was in
// flight, re-initialises it (TSN on) and carries on: frames flow both ways
// again within one second of the chip's return (virtual time), and every
// frame is accounted for, across both chips.
func TestChipResetRecovery(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c1, bus1 := freshChip(t)
		tr := &replaceable{cur: bus1}
		var mu sync.Mutex
		var got []time.Time
		d := New(tr, Config{Receive: func([]byte) bool {
			mu.Lock()
			got = append(got, time.Now())
			mu.Unlock()
			return true
		}})
		if err := d.Open(context.Background()); err != nil {
			t.Fatal(err)
		}
		defer func() {
			if err := d.Stop(context.Background()); err != nil {
				t.Errorf("Stop: %v", err)
			}
		}()
		seq := uint32(0)
		traffic := func(c *chip.Chip, n int) {
			for range n {
				if err := d.Transmit(testFrame(seq, 100)); err != nil {
					t.Fatal(err)
				}
				c.ReceivePHY(proto.AppendFCS(testFrame(seq, 100)), time.Now())
				seq++
				time.Sleep(time.Millisecond)
			}
		}
		traffic(c1, 20)
		// The chip server dies with frames in flight, and comes back
		// 300 ms later with a fresh chip.
		tr.set(nil)
		for range 5 {
			if err := d.Transmit(testFrame(seq, 100)); err != nil {
				t.Fatal(err)
			}
			seq++
		}
		time.Sleep(300 * time.Millisecond)
		c2, bus2 := freshChip(t)
		tr.set(bus2)
		back := time.Now()
		mu.Lock()
		before := len(got)
		mu.Unlock()
		traffic(c2, 20)
		time.Sleep(time.Second)
		synctest.Wait()

		s := d.Stats()
		if s.ChipResets != 1 {
			t.Errorf("ChipResets %d, want 1", s.ChipResets)
		}
		if c2.Register(regs.TSNSystemControl) != 1 {
			t.Error("the fresh chip's TSN is not enabled")
		}
		mu.Lock()
		after := got[before:]
		mu.Unlock()
		if len(after) == 0 {
			t.Fatal("no frame received from the fresh chip")
		}
		if first := after[0].Sub(back); first > time.Second {
			t.Errorf("first frame from the fresh chip %v after it came back, want within 1 s", first)
		} else {
			t.Logf("first frame from the fresh chip %v after it came back; reset counted: TX %d, RX %d lost", first, s.TxResetLost, s.RxResetLost)
		}
		// TX: every frame offered is in one counter; what the fresh chip
		// took is what the driver wrote since the reset.
		checkTx(t, s)
		if s.TxQueued != 0 {
			t.Errorf("TxQueued %d", s.TxQueued)
		}
		took1 := c1.Register(regs.FSTotalRxFrameCnt)
		took2 := c2.Register(regs.FSTotalRxFrameCnt)
		if took1+took2 != s.TxPackets || took2 == 0 {
			t.Errorf("TX: chip 1 took %d, chip 2 took %d; driver %+v", took1, took2, s)
		}
		// RX: the fresh chip's accepted frames are what the driver read
		// since the reset, and the old chip's are what it read before.
		acc2 := c2.Register(regs.FDTotalRxFrameCnt) - c2.Register(regs.FDTotalDropFrameCnt)
		if s.RxAccounted()-s.RxBeforeReset != acc2 {
			t.Errorf("RX: %d accounted since the reset, the fresh chip accepted %d", s.RxAccounted()-s.RxBeforeReset, acc2)
		}
		if acc1 := c1.Register(regs.FDTotalRxFrameCnt) - c1.Register(regs.FDTotalDropFrameCnt); s.RxBeforeReset > acc1 {
			t.Errorf("RX: %d accounted before the reset, the old chip accepted %d", s.RxBeforeReset, acc1)
		}
	})
}
