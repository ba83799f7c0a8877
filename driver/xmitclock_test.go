package driver

import (
	"testing"
	"testing/synctest"
	"time"

	"tsnsim/chip/proto"
	"tsnsim/chip/regs"
)

// TestXmitClockNone: the default transmit path makes no SPI transfer.
func TestXmitClockNone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, Config{PollInterval: time.Hour}, false)
		r.open(t)
		reads := r.f.count(kindRegRead)
		for i := range 5 {
			if err := r.d.Transmit(testFrame(uint32(i), 100)); err != nil {
				t.Fatal(err)
			}
		}
		synctest.Wait()
		if got := r.f.count(kindRegRead) - reads; got != 0 {
			t.Errorf("%d register reads from Transmit", got)
		}
		if s := r.d.Stats(); s.XmitClockReads != 0 || s.XmitClockWait != 0 {
			t.Errorf("stats %+v", s)
		}
	})
}

// TestXmitClockSPI: with XmitClockSPI every Transmit reads SYSCOUNT (H, L,
// H) on the shared bus before queuing; a caller behind a large TX write
// waits for it, and the wait is counted.
func TestXmitClockSPI(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, Config{PollInterval: time.Hour, XmitClock: XmitClockSPI}, false)
		r.open(t)
		reads := r.f.count(kindRegRead)
		// Idle bus: the read takes three 8-byte transfers, 3 x 24.27 us.
		if err := r.d.Transmit(testFrame(0, 100)); err != nil {
			t.Fatal(err)
		}
		s := r.d.Stats()
		if s.XmitClockReads != 1 || s.XmitClockWait != 3*(20*time.Microsecond+4266*time.Nanosecond) {
			t.Errorf("idle bus: %d reads, wait %v", s.XmitClockReads, s.XmitClockWait)
		}
		synctest.Wait()
		time.Sleep(time.Millisecond)
		// Busy bus: the worker is writing a 1514-byte frame (about 850
		// us) when the next transmit reads the clock.
		if err := r.d.Transmit(testFrame(1, 1514)); err != nil {
			t.Fatal(err)
		}
		synctest.Wait() // the worker is on the bus
		if err := r.d.Transmit(testFrame(2, 100)); err != nil {
			t.Fatal(err)
		}
		s = r.d.Stats()
		sysReads := r.f.count(kindRegRead) - reads
		if s.XmitClockReads != 3 || sysReads != 9 {
			t.Errorf("%d clock reads, %d register reads; want 3, 9", s.XmitClockReads, sysReads)
		}
		if s.XmitClockMaxWait < 800*time.Microsecond {
			t.Errorf("max wait %v behind a 1514-byte write", s.XmitClockMaxWait)
		}
		synctest.Wait()
		time.Sleep(2 * time.Millisecond)
		if s := r.d.Stats(); s.TxPackets != 3 || s.XmitClockErrors != 0 {
			t.Errorf("stats %+v", txOnly(s))
		}
	})
}

// TestXmitClockSPIFailure: a failed SYSCOUNT read is counted and the
// frame is still queued and sent (send-now metadata does not need it).
func TestXmitClockSPIFailure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, Config{PollInterval: time.Hour, XmitClock: XmitClockSPI}, false)
		r.open(t)
		r.f.setRule(func(k xferKind, _ int) fault {
			if k == kindRegRead {
				return failBefore
			}
			return pass
		})
		for i := range 3 {
			if err := r.d.Transmit(testFrame(uint32(i), 100)); err != nil {
				t.Fatal(err)
			}
			checkTx(t, r.d.Stats())
		}
		synctest.Wait()
		time.Sleep(time.Millisecond)
		s := r.d.Stats()
		if s.XmitClockReads != 3 || s.XmitClockErrors != 3 || s.TxPackets != 3 || s.SPIErrors != 0 {
			t.Errorf("stats %+v", s)
		}
		if got := r.chip.Register(regs.FSTotalRxFrameCnt); got != 3 {
			t.Errorf("chip took %d frames", got)
		}
	})
}

// TestXmitClockSPIRefused: a frame refused anyway (ring full, interface
// down) costs no clock read.
func TestXmitClockSPIRefused(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, Config{PollInterval: time.Hour, XmitClock: XmitClockSPI, TxRingSize: 1}, false)
		if err := r.d.Transmit(testFrame(0, 100)); err != ErrDown {
			t.Fatalf("down: %v", err)
		}
		r.open(t)
		r.f.setRule(onlyAt(kindTxWrite, 1, stuck))
		for i := range 2 {
			if err := r.d.Transmit(testFrame(uint32(i), proto.MinFrameLen)); err != nil {
				t.Fatal(err)
			}
			synctest.Wait()
		}
		if err := r.d.Transmit(testFrame(9, 100)); err != ErrBusy {
			t.Fatalf("full ring: %v", err)
		}
		if s := r.d.Stats(); s.XmitClockReads != 2 || s.TxBusy != 1 || s.TxDropped != 1 {
			t.Errorf("stats %+v", s)
		}
	})
}
