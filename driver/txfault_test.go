package driver

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"tsnsim/chip/regs"
)

// sendAll transmits n frames of size bytes, waiting for the ring when it
// is full, and checks the TX invariant after every call and every wait.
func sendAll(t *testing.T, r *rig, n, size int) {
	t.Helper()
	for i := 0; i < n; {
		err := r.d.Transmit(testFrame(uint32(i), size))
		checkTx(t, r.d.Stats())
		switch err {
		case nil:
			i++
		case ErrBusy:
			<-r.d.Wake()
		default:
			t.Fatalf("Transmit %d: %v", i, err)
		}
	}
}

// drainTx waits until the ring is empty and the worker idle, checking the
// TX invariant on the way.
func drainTx(t *testing.T, r *rig) Stats {
	t.Helper()
	for range 10000 { // one second of virtual time
		s := r.d.Stats()
		checkTx(t, s)
		if s.TxQueued == 0 {
			synctest.Wait()
			return r.d.Stats()
		}
		time.Sleep(100 * time.Microsecond)
	}
	t.Fatalf("TX ring never drained: %+v", r.d.Stats())
	return Stats{}
}

// TestTxTimeoutAfterReconciled: every 3rd TX write times out after the
// chip took it. Reconciliation counts each once: the chip took exactly N
// frames and the driver says N sent, 1/3 of them reconciled, no retry.
func TestTxTimeoutAfterReconciled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, Config{}, false)
		r.open(t)
		r.f.setRule(everyNth(kindTxWrite, 3, failAfter))
		const n = 30
		sendAll(t, r, n, 100)
		s := drainTx(t, r)
		if got := r.chipTaken(); got != n {
			t.Errorf("chip took %d frames, want %d", got, n)
		}
		want := Stats{TxOffered: n, TxPackets: n, TxBytes: n * 100, TxReconciled: n / 3, SPIErrors: n / 3}
		if tx := txOnly(s); tx != want {
			t.Errorf("stats %+v, want %+v", tx, want)
		}
	})
}

// TestTxTimeoutBeforeRetried: every 3rd TX write times out before the
// chip saw it. Reconciliation finds it not taken and writes it again.
func TestTxTimeoutBeforeRetried(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, Config{}, false)
		r.open(t)
		r.f.setRule(everyNth(kindTxWrite, 3, failBefore))
		const n = 30
		sendAll(t, r, n, 100)
		s := drainTx(t, r)
		if got := r.chipTaken(); got != n {
			t.Errorf("chip took %d frames, want %d", got, n)
		}
		// Writes 3, 6, 9, ... fail: 44 writes for 30 frames, 14 retries.
		want := Stats{TxOffered: n, TxPackets: n, TxBytes: n * 100, TxRetries: 14, SPIErrors: 14}
		if tx := txOnly(s); tx != want {
			t.Errorf("stats %+v, want %+v", tx, want)
		}
	})
}

// TestTxNeverTaken: every TX write fails before the chip: each frame is
// written MaxTxAttempts times, then counted as an error.
func TestTxNeverTaken(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, Config{}, false)
		r.open(t)
		r.f.setRule(func(k xferKind, _ int) fault {
			if k == kindTxWrite {
				return failBefore
			}
			return pass
		})
		const n = 4
		sendAll(t, r, n, 100)
		s := drainTx(t, r)
		if got := r.chipTaken(); got != 0 {
			t.Errorf("chip took %d frames, want 0", got)
		}
		want := Stats{TxOffered: n, TxErrors: n, TxRetries: n * (MaxTxAttempts - 1), SPIErrors: n * MaxTxAttempts}
		if tx := txOnly(s); tx != want {
			t.Errorf("stats %+v, want %+v", tx, want)
		}
		if w := r.f.count(kindTxWrite); w != n*MaxTxAttempts {
			t.Errorf("%d TX writes, want %d", w, n*MaxTxAttempts)
		}
	})
}

// TestTxReconcileCorruptReads: every 5th register read comes back with
// bit 0 flipped on MISO while every 3rd TX write times out after the chip
// took it. The counters are read until two passes agree, so a corrupted
// value never decides: still exactly N frames, each counted once.
func TestTxReconcileCorruptReads(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, Config{}, false)
		r.open(t)
		r.f.setRule(everyNth(kindTxWrite, 3, failAfter))
		r.f.setFlip(func(k xferKind, i int) bool { return k == kindRegRead && i%5 == 0 })
		const n = 30
		sendAll(t, r, n, 100)
		s := drainTx(t, r)
		if got := r.chipTaken(); got != n {
			t.Errorf("chip took %d frames, want %d", got, n)
		}
		if s.TxPackets != n || s.TxReconciled != n/3 || s.TxErrors != 0 || s.TxRetries != 0 {
			t.Errorf("stats %+v", txOnly(s))
		}
	})
}

// TestTxReconcileFlippedAlike: after a failed write the chip took, the
// first two passes over the TX counters both come back with the same bit
// flipped (the vote of two agreeing reads is fooled). The sum is neither
// the expected one nor one more, which only a reset could explain: the
// driver reads again instead of counting the frame as an error, and
// reconciles it as sent.
func TestTxReconcileFlippedAlike(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, Config{}, false)
		r.open(t)
		failed, reads := false, 0
		r.f.setRule(func(k xferKind, i int) fault {
			if k == kindTxWrite && i == 2 {
				failed = true
				return failAfter
			}
			return pass
		})
		// Each pass reads FS_TOTAL_RX_FRAME_CNT_L, then the back-pressure
		// count: flip the first register of the first two passes alike.
		r.f.setFlip(func(k xferKind, i int) bool {
			if k != kindRegRead || !failed {
				return false
			}
			reads++
			return reads == 1 || reads == 3
		})
		const n = 5
		sendAll(t, r, n, 100)
		s := drainTx(t, r)
		if got := r.chipTaken(); got != n {
			t.Errorf("chip took %d frames, want %d", got, n)
		}
		if s.TxPackets != n || s.TxReconciled != 1 || s.TxErrors != 0 {
			t.Errorf("stats %+v, want %d sent, 1 reconciled, no error", txOnly(s), n)
		}
	})
}

// TestTxCountersMoved: a failed write after which the chip's counters
// moved by two (the chip saw it twice) is neither sent nor retried: it is
// an error, and the driver takes the new sum as its baseline, so the
// next failed write is reconciled correctly again.
func TestTxCountersMoved(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, Config{}, false)
		r.open(t)
		r.f.setRule(func(k xferKind, i int) fault {
			switch {
			case k == kindTxWrite && i == 2:
				return duplicate
			case k == kindTxWrite && i == 4:
				return failAfter
			}
			return pass
		})
		sendAll(t, r, 5, 100)
		s := drainTx(t, r)
		if got := r.chipTaken(); got != 6 {
			t.Errorf("chip took %d frames, want 6 (one twice)", got)
		}
		want := Stats{TxOffered: 5, TxPackets: 4, TxBytes: 400, TxErrors: 1, TxReconciled: 1, SPIErrors: 2}
		if tx := txOnly(s); tx != want {
			t.Errorf("stats %+v, want %+v", tx, want)
		}
	})
}

// TestTxReconcileWaitsForTheBus: a write fails after the chip took it and
// the bus then fails everything for 100 ms, so the counters cannot be
// read: the worker keeps trying (no guess) and, once the bus is back,
// finds the frame taken; a later failed write is reconciled too.
func TestTxReconcileWaitsForTheBus(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, Config{}, false)
		r.open(t)
		var until time.Time
		r.f.setRule(func(k xferKind, i int) fault {
			switch {
			case k == kindTxWrite && i == 1:
				until = time.Now().Add(100 * time.Millisecond)
				return failAfter
			case time.Now().Before(until):
				return failBefore
			case k == kindTxWrite && i == 3:
				return failAfter
			}
			return pass
		})
		sendAll(t, r, 1, 100)
		s := drainTx(t, r)
		// The counters could not be read for 100 ms; the worker kept
		// trying, then found the chip had taken the frame.
		if s.TxErrors != 0 || s.TxPackets != 1 || s.TxReconciled != 1 {
			t.Errorf("after the unreadable window: %+v", txOnly(s))
		}
		time.Sleep(200 * time.Millisecond)
		sendAll(t, r, 3, 100)
		s = drainTx(t, r)
		if got := r.chipTaken(); got != 4 {
			t.Errorf("chip took %d frames, want 4", got)
		}
		if s.TxPackets != 4 || s.TxReconciled != 2 || s.TxErrors != 0 || s.TxRetries != 0 {
			t.Errorf("stats %+v", txOnly(s))
		}
		checkTx(t, s)
	})
}

// TestStopReconcilesCutWrite: Stop cancels a TX write stuck on the bus.
// Stop reconciles it: not taken by the chip is TxDropped, taken is
// TxPackets (reconciled); the invariant holds throughout.
func TestStopReconcilesCutWrite(t *testing.T) {
	for _, tc := range []struct {
		name  string
		act   fault
		taken uint64
		want  Stats
	}{
		{"not taken", stuck, 0, Stats{TxOffered: 1, TxDropped: 1}},
		{"taken", stuckAfter, 1, Stats{TxOffered: 1, TxPackets: 1, TxBytes: 100, TxReconciled: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				r := newRig(t, Config{}, false)
				r.open(t)
				r.f.setRule(onlyAt(kindTxWrite, 1, tc.act))
				sendAll(t, r, 1, 100)
				synctest.Wait()
				checkTx(t, r.d.Stats())
				if q := r.d.Stats().TxQueued; q != 1 {
					t.Fatalf("TxQueued %d while the write is stuck, want 1", q)
				}
				start := time.Now()
				if err := r.d.Stop(context.Background()); err != nil {
					t.Fatalf("Stop: %v", err)
				}
				if el := time.Since(start); el > time.Millisecond {
					t.Errorf("Stop took %v", el)
				}
				if tx := txOnly(r.d.Stats()); tx != tc.want {
					t.Errorf("stats %+v, want %+v", tx, tc.want)
				}
				if got := r.chipTaken(); got != tc.taken {
					t.Errorf("chip took %d", got)
				}
			})
		})
	}
}

// TestTxBackPressureCountedByChip: a write the chip refused for space is
// counted by the chip (FS_TOTAL_BACK_PRESSURE_EVENT_CNT) and as sent by
// the driver, and a failed write onto a full host FIFO is reconciled as
// taken (the chip refused it itself), not retried.
func TestTxBackPressureCountedByChip(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, Config{}, false)
		// Frames stay in the host FIFO: TSN off after Open (the
		// scheduler holds them) and a host FIFO limit of 2.
		r.open(t)
		if err := r.d.WriteRegister(context.Background(), regs.TSNSystemControl+4, 0); err != nil {
			t.Fatal(err)
		}
		if err := r.d.WriteRegister(context.Background(), regs.TSNTxControl+4, uint32(regs.TxHostFIFOFullLimit.Put(uint64(12)<<16, 2))); err != nil {
			t.Fatal(err)
		}
		r.f.setRule(onlyAt(kindTxWrite, 4, failAfter))
		sendAll(t, r, 4, 100)
		s := drainTx(t, r)
		if bp := r.chip.Register(regs.FSTotalBackPressureEventCnt); bp != 2 {
			t.Errorf("back-pressure events %d, want 2", bp)
		}
		if got := r.chipTaken(); got != 4 {
			t.Errorf("chip took or refused %d, want 4", got)
		}
		if s.TxPackets != 4 || s.TxReconciled != 1 || s.TxRetries != 0 {
			t.Errorf("stats %+v", txOnly(s))
		}
	})
}

// txOnly keeps the TX counters and SPIErrors of s.
func txOnly(s Stats) Stats {
	return Stats{TxPackets: s.TxPackets, TxBytes: s.TxBytes, TxErrors: s.TxErrors, TxDropped: s.TxDropped,
		TxBusy: s.TxBusy, TxOffered: s.TxOffered, TxQueued: s.TxQueued, TxRetries: s.TxRetries,
		TxReconciled: s.TxReconciled, SPIErrors: s.SPIErrors}
}

// TestChipStatsSameFlipTwice: the chip's FD_FCS_DROP_FRAME_CNT_L (0)
// comes back with the same bit flipped in the first two passes of a
// read of the drop counters, a plausible 1 (one frame received). Two
// agreeing passes took it, and the counter then stayed 1 for good (the
// fault sweep's spi.flip 5 %, seed 82); the third pass the read now
// needs is clean, so the value is read again until three agree.
func TestChipStatsSameFlipTwice(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, Config{}, false)
		r.inject(0, 100) // FD_TOTAL_RX_FRAME_CNT 1 bounds the drop counters
		// Passes read FIFO full, FCS, jumbo, back pressure, RX frames:
		// the FCS counter is register read 2 of each pass of five.
		r.f.setFlip(func(k xferKind, i int) bool { return k == kindRegRead && (i == 2 || i == 7) })
		if err := r.d.readChipStats(t.Context(), newBackoff()); err != nil {
			t.Fatal(err)
		}
		if n := r.f.count(kindRegRead); n < 15 {
			t.Errorf("%d register reads, want at least three passes of five", n)
		}
		if s := r.d.Stats(); s.ChipRxFCS != 0 {
			t.Errorf("ChipRxFCS %d, want 0: a flipped value read twice was taken", s.ChipRxFCS)
		}
	})
}
