package driver

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"tsnsim/chip/regs"
)

// load offers RX frames to the chip's PHY and TX frames to the driver at
// fixed rates until stop is closed; TX frames refused with ErrBusy are
// dropped by the sender.
func load(r *rig, rxEvery, txEvery time.Duration, size int, stop <-chan struct{}) *sync.WaitGroup {
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(rxEvery)
		defer t.Stop()
		for seq := uint32(0); ; seq++ {
			select {
			case <-stop:
				return
			case <-t.C:
				r.inject(seq, size)
			}
		}
	})
	wg.Go(func() {
		t := time.NewTicker(txEvery)
		defer t.Stop()
		for seq := uint32(0); ; seq++ {
			select {
			case <-stop:
				return
			case <-t.C:
				_ = r.d.Transmit(testFrame(seq, size)) // ErrBusy: the sender drops it (TxBusy)
			}
		}
	})
	return &wg
}

// TestThroughputRecoversAfterFaults: under steady RX and TX load, a
// 300 ms window in which every SPI transfer fails (alternately before and
// after the chip acted) is followed, within one second of emulated time,
// by frames delivered per 100 ms at the fault-free rate again; in fact
// from the first 100 ms window on, since backoffs are capped at 64 ms.
func TestThroughputRecoversAfterFaults(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const window = 100 * time.Millisecond
		r := newRig(t, Config{}, false)
		r.open(t)
		stop := make(chan struct{})
		// 2000 RX frames/s and 1000 TX frames/s of 200 bytes: about
		// 45% of the 15 MHz bus.
		wg := load(r, 500*time.Microsecond, time.Millisecond, 200, stop)
		rates := func(n int) (rx, tx []int) {
			for range n {
				r0, t0 := len(r.received()), r.chip.Register(regs.FSTotalRxFrameCnt)
				time.Sleep(window)
				rx = append(rx, len(r.received())-r0)
				tx = append(tx, int(r.chip.Register(regs.FSTotalRxFrameCnt)-t0))
			}
			return rx, tx
		}
		time.Sleep(window) // settle
		rxBase, txBase := rates(4)
		faultTo := time.Now().Add(300 * time.Millisecond)
		r.f.setRule(func(_ xferKind, i int) fault {
			if time.Now().Before(faultTo) {
				return []fault{failBefore, failAfter}[i%2]
			}
			return pass
		})
		rxFault, txFault := rates(3)
		rxAfter, txAfter := rates(10)
		close(stop)
		wg.Wait()
		t.Logf("RX per 100 ms: fault-free %v, faults %v, after %v", rxBase, rxFault, rxAfter)
		t.Logf("TX per 100 ms: fault-free %v, faults %v, after %v", txBase, txFault, txAfter)
		rxRef, txRef := minOf(rxBase), minOf(txBase)
		if rxRef < 190 || txRef < 95 {
			t.Fatalf("fault-free rates %d RX, %d TX per 100 ms: the load is not carried", rxRef, txRef)
		}
		if rxFault[1] != 0 || txFault[1] != 0 {
			t.Errorf("frames moved during the fault window: RX %v, TX %v", rxFault, txFault)
		}
		for i := range rxAfter {
			if 10*rxAfter[i] < 9*rxRef || 10*txAfter[i] < 9*txRef {
				t.Errorf("window %d after the faults: RX %d, TX %d per 100 ms, below 90%% of %d, %d",
					i, rxAfter[i], txAfter[i], rxRef, txRef)
			}
		}
		time.Sleep(100 * time.Millisecond)
		checkTx(t, r.d.Stats())
		r.checkRxSettled(t)
	})
}

func minOf(v []int) int {
	m := v[0]
	for _, x := range v {
		m = min(m, x)
	}
	return m
}

// TestSoakRandomFaults: random faults on every kind of transfer (timeouts
// before and after the chip acted, 3 to 5% of transfers, and a flipped
// MISO bit in 1%) under RX and TX load. Once the load stops and the driver is idle, nothing is lost or
// counted twice: every frame the chip accepted on RX is in exactly one
// driver counter and the delivered ones are distinct and intact; on TX
// the chip took exactly the frames the driver counts as sent.
func TestSoakRandomFaults(t *testing.T) {
	for seed := range uint64(6) {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				rng := rand.New(rand.NewPCG(seed, 7))
				r := newRig(t, Config{PollInterval: 2 * time.Millisecond,
					Logger: zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))}, false)
				r.open(t)
				r.f.setRule(func(k xferKind, _ int) fault {
					switch x := rng.IntN(100); {
					case x < 2:
						return failBefore
					case x < 3+int(seed%3):
						return failAfter
					}
					return pass
				})
				r.f.rng = rand.New(rand.NewPCG(seed, 13))
				r.f.setFlip(func(xferKind, int) bool { return rng.IntN(100) == 0 })
				stop := make(chan struct{})
				var wg sync.WaitGroup
				wg.Go(func() {
					rxRng := rand.New(rand.NewPCG(seed, 11))
					for seq := uint32(0); ; seq++ {
						select {
						case <-stop:
							return
						case <-time.After(time.Duration(rxRng.IntN(3000)) * time.Microsecond):
							r.inject(seq, 60+rxRng.IntN(900))
						}
					}
				})
				wg.Go(func() {
					for seq := uint32(0); ; seq++ {
						select {
						case <-stop:
							return
						case <-time.After(2400 * time.Microsecond):
							_ = r.d.Transmit(testFrame(seq, 60+int(seq*37%900)))
							checkTx(t, r.d.Stats())
						}
					}
				})
				time.Sleep(2 * time.Second)
				close(stop)
				wg.Wait()
				r.f.setRule(nil)
				r.f.setFlip(nil)
				time.Sleep(200 * time.Millisecond)
				s := r.checkRxSettled(t)
				checkTx(t, s)
				if got := r.chipTaken(); got != s.TxPackets {
					t.Errorf("chip took %d TX frames, driver sent %d: %+v", got, s.TxPackets, txOnly(s))
				}
				if s.SPIErrors == 0 || s.RxPackets < 1000 || s.TxPackets < 800 {
					t.Errorf("not much of a soak: %+v", s)
				}
				t.Logf("%+v", s)
				if err := r.d.Stop(context.Background()); err != nil {
					t.Error(err)
				}
			})
		})
	}
}
