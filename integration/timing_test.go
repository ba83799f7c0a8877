package integration

import (
	"context"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"

	"tsnsim/cable"
	"tsnsim/chip"
	"tsnsim/chip/clock"
	"tsnsim/chip/proto"
	"tsnsim/chip/regs"
	"tsnsim/spibridge"
	"tsnsim/topology"
	"tsnsim/traffic"
)

// Figures of chip.md section 5, in the units the tests compute with.
const (
	syscountTick  = 8 * time.Nanosecond  // SYSCOUNT period, 125 MHz
	linkByteTime  = 80 * time.Nanosecond // one byte at 100 Mbit/s
	preambleBytes = 8                    // bytes before the timestamp point
	ifgBytes      = 12                   // inter-frame gap, bytes
	macTxLatency  = 300 * time.Nanosecond
	macRxLatency  = 512 * time.Nanosecond
	cableProp     = cable.DefaultPropagation // 50 ns
)

// chipPair is two started chips with aligned clocks joined by a cable, no
// drivers: the tests talk to the chips with Transact directly.
type chipPair struct {
	a, b  *chip.Chip
	cable *cable.Cable
}

func newChipPair(t *testing.T) *chipPair {
	t.Helper()
	epoch := time.Now()
	p := &chipPair{
		a: chip.New(chip.Config{Name: "a", Epoch: epoch, MAC: topology.NodeMAC(0)}),
		b: chip.New(chip.Config{Name: "b", Epoch: epoch, MAC: topology.NodeMAC(1)}),
	}
	p.cable = cable.Connect(p.a, p.b, cable.Config{})
	p.a.Start()
	p.b.Start()
	return p
}

func (p *chipPair) close() {
	p.a.Close()
	p.b.Close()
	p.cable.Close()
}

// spiTransact runs one SPI transaction on c and fails the test if the chip
// rejects it.
func spiTransact(t *testing.T, c *chip.Chip, mosi []byte) []byte {
	t.Helper()
	miso := make([]byte, len(mosi))
	if err := c.Transact(mosi, miso); err != nil {
		t.Fatalf("%s: transaction % x...: %v", c.Name(), mosi[:3], err)
	}
	return miso
}

// spiEnableTSN writes TSN_SYSTEM_CONTROL_L = 1 (offset 0x0294) over SPI.
func spiEnableTSN(t *testing.T, c *chip.Chip) {
	t.Helper()
	spiTransact(t, c, proto.RegWrite(0x0294, 1))
}

// spiReadReg64 reads a 64-bit register over SPI: H then L.
func spiReadReg64(t *testing.T, c *chip.Chip, off uint16) uint64 {
	t.Helper()
	hi := proto.RegReadValue(spiTransact(t, c, proto.RegRead(off)))
	lo := proto.RegReadValue(spiTransact(t, c, proto.RegRead(off+4)))
	return uint64(hi)<<32 | uint64(lo)
}

// spiReadRxMeta pops one rx_metadata entry over SPI.
func spiReadRxMeta(t *testing.T, c *chip.Chip) proto.RxMetadata {
	t.Helper()
	return proto.ParseRxMetadata(spiTransact(t, c, proto.RxMetaRead())[proto.ReadDataStart:])
}

// spiWriteFrame writes a TX frame of n bytes (without FCS) with metadata m.
func spiWriteFrame(t *testing.T, c *chip.Chip, m proto.TxMetadata, n int) {
	t.Helper()
	frame := make([]byte, n)
	copy(frame, topology.NodeMAC(1))
	copy(frame[6:], topology.NodeMAC(0))
	frame[12], frame[13] = 0x88, 0xB5
	mosi, err := proto.TxFrameWrite(m, frame)
	if err != nil {
		t.Fatal(err)
	}
	spiTransact(t, c, mosi)
}

// windowMeta returns tx_metadata with timestamp_id id and the given windows
// (29-bit ticks).
func windowMeta(id uint16, policy uint8, from, to, delayFrom, delayTo uint32) proto.TxMetadata {
	tc := func(tick uint32) proto.TickCount {
		return proto.TickCount{Tick: tick & clock.TickMask, Priority: proto.PriorityGPTP}
	}
	return proto.TxMetadata{From: tc(from), To: tc(to), DelayFrom: tc(delayFrom), DelayTo: tc(delayTo),
		TimestampID: id, FailPolicy: policy}
}

// sendNowID is simple-mode metadata with a timestamp id.
func sendNowID(id uint16) proto.TxMetadata {
	m := proto.SendNow(0, proto.PriorityGPTP)
	m.TimestampID = id
	return m
}

// TestTxRxTimestamps: a frame's RX stamp on the receiver exceeds its TX
// stamp on the sender by TX latency + propagation + RX latency, and both
// stamps, and the arrival, fall exactly where chip.md puts them.
func TestTxRxTimestamps(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newChipPair(t)
		defer p.close()
		time.Sleep(12345 * time.Nanosecond) // any offset from the epoch
		spiEnableTSN(t, p.a)

		const n = 60 // 64 bytes on the wire with FCS
		start := time.Now()
		spiWriteFrame(t, p.a, sendNowID(proto.TimestampGPTP), n)

		// Stamp point: first byte after the 8-byte preamble leaves the MAC.
		sofTx := start.Add(preambleBytes * linkByteTime)
		// The last byte reaches the receiver's PHY TX latency +
		// propagation + the frame's serialisation later.
		arrive := sofTx.Add(macTxLatency + cableProp + (n+4)*linkByteTime)

		time.Sleep(time.Until(arrive) - time.Nanosecond)
		synctest.Wait()
		if got := p.b.Register(regs.FDTotalRxFrameCnt); got != 0 {
			t.Fatalf("frame received %v before its last byte arrived", time.Nanosecond)
		}
		time.Sleep(time.Nanosecond)
		synctest.Wait()
		if got := p.b.Register(regs.FDTotalRxFrameCnt); got != 1 {
			t.Fatalf("FD_TOTAL_RX_FRAME_CNT = %d when the last byte arrived, want 1", got)
		}

		tx := spiReadReg64(t, p.a, regs.FTTxTstamp1)
		if want := p.a.Clock().At(sofTx); tx != want {
			t.Errorf("FT_TX_TSTAMP1 = %d, want %d (SYSCOUNT 8 bytes after the start)", tx, want)
		}
		rx := spiReadReg64(t, p.b, regs.FDRxTstamp)
		if want := p.b.Clock().At(sofTx.Add(macTxLatency + cableProp + macRxLatency)); rx != want {
			t.Errorf("FD_RX_TSTAMP = %d, want %d", rx, want)
		}
		m := spiReadRxMeta(t, p.b)
		if m.Timestamp != rx || m.FrameLength != n+4 {
			t.Errorf("rx_metadata = %+v, want timestamp %d, length %d", m, rx, n+4)
		}
		// (300 + 50 + 512) ns / 8 ns = 107.75 ticks.
		exact := float64(macTxLatency+cableProp+macRxLatency) / float64(syscountTick)
		if d := float64(rx) - float64(tx); d < exact-1 || d > exact+1 {
			t.Errorf("RX - TX = %v ticks, want %v within 1 tick", d, exact)
		}
		if got := spiReadReg64(t, p.a, regs.FTTxTstamp2); got != 0 {
			t.Errorf("FT_TX_TSTAMP2 = %d, want 0 (no frame with timestamp_id 2)", got)
		}
		if got := spiReadReg64(t, p.a, regs.FTTotalTxByteCnt); got != n+4 {
			t.Errorf("FT_TOTAL_TX_BYTE_CNT = %d, want %d", got, n+4)
		}
	})
}

// TestBackToBackStamps: two frames queued before the transmitter runs
// leave back to back: the second starts preamble + frame + FCS + IFG
// bytes after the first.
func TestBackToBackStamps(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newChipPair(t)
		defer p.close()
		time.Sleep(time.Millisecond)
		const n1, n2 = 1514, 60
		spiWriteFrame(t, p.a, sendNowID(proto.TimestampGPTP), n1)
		spiWriteFrame(t, p.a, sendNowID(proto.TimestampNormal), n2)
		if got := p.a.Stats().HostFIFO.Len; got != 2 {
			t.Fatalf("host FIFO holds %d frames before TSN enable, want 2", got)
		}
		time.Sleep(time.Millisecond) // nothing leaves while TSN is off
		if got := p.a.Register(regs.FTTotalTxFrameCnt); got != 0 {
			t.Fatalf("FT_TOTAL_TX_FRAME_CNT = %d with TSN disabled, want 0", got)
		}
		start := time.Now()
		spiEnableTSN(t, p.a)
		time.Sleep(time.Millisecond)
		synctest.Wait()

		ts1 := spiReadReg64(t, p.a, regs.FTTxTstamp1)
		ts2 := spiReadReg64(t, p.a, regs.FTTxTstamp2)
		// (8 + 1518 + 12) bytes * 80 ns / 8 ns = 15380 ticks.
		wantGap := uint64((preambleBytes + n1 + 4 + ifgBytes) * linkByteTime / syscountTick)
		if wantGap != 15380 {
			t.Fatalf("arithmetic: gap %d", wantGap)
		}
		if ts2-ts1 != wantGap {
			t.Errorf("TX stamps %d and %d differ by %d ticks, want %d", ts1, ts2, ts2-ts1, wantGap)
		}
		if want := p.a.Clock().At(start.Add(preambleBytes * linkByteTime)); ts1 != want {
			t.Errorf("FT_TX_TSTAMP1 = %d, want %d", ts1, want)
		}
		if got, want := spiReadReg64(t, p.a, regs.FTTotalTxByteCnt), uint64(n1+4+n2+4); got != want {
			t.Errorf("FT_TOTAL_TX_BYTE_CNT = %d, want %d", got, want)
		}
		// The receiver sees the same spacing.
		m1, m2 := spiReadRxMeta(t, p.b), spiReadRxMeta(t, p.b)
		if m1.FrameLength != n1+4 || m2.FrameLength != n2+4 {
			t.Fatalf("received lengths %d %d, want %d %d", m1.FrameLength, m2.FrameLength, n1+4, n2+4)
		}
		if m2.Timestamp-m1.Timestamp != wantGap {
			t.Errorf("RX stamps differ by %d ticks, want %d", m2.Timestamp-m1.Timestamp, wantGap)
		}
		if m := spiReadRxMeta(t, p.b); m.FrameLength != 0 {
			t.Errorf("third rx_metadata = %+v, want empty", m)
		}
	})
}

// schedCounters reads the scheduler counters of c.
func schedCounters(c *chip.Chip) (valid, delay, drop uint64) {
	return c.Register(regs.FSCHTotalValidEntryCnt), c.Register(regs.FSCHTotalDelayEntryCnt), c.Register(regs.FSCHTotalDropEntryCnt)
}

func TestWindowHeldUntilFrom(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newChipPair(t)
		defer p.close()
		time.Sleep(time.Millisecond)
		spiEnableTSN(t, p.a)
		now := clock.Low29(p.a.Clock().Now())
		// Timed mode of the driver: from = now + 5000 (the 30 us host
		// latency budget), to = from + 15000.
		from, to := now+5000, now+5000+15000
		spiWriteFrame(t, p.a, windowMeta(proto.TimestampGPTP, proto.FailDrop, from, to, from, to), 60)
		opens := p.a.Clock().TimeOf(p.a.Clock().Now() + 5000)

		time.Sleep(time.Until(opens) - time.Nanosecond)
		synctest.Wait()
		if v, _, _ := schedCounters(p.a); v != 0 || p.a.Stats().HostFIFO.Len != 1 {
			t.Fatalf("frame left %v before its window opened (valid %d)", time.Nanosecond, v)
		}
		time.Sleep(time.Millisecond)
		synctest.Wait()
		valid, delay, drop := schedCounters(p.a)
		if valid != 1 || delay != 0 || drop != 0 {
			t.Fatalf("valid %d delay %d drop %d, want 1 0 0", valid, delay, drop)
		}
		stamp := spiReadReg64(t, p.a, regs.FTTxTstamp1)
		if clock.Low29(stamp) < from {
			t.Errorf("stamp %d before from %d", clock.Low29(stamp), from)
		}
		// Sent when the window opens: stamped 8 bytes (80 ticks) later.
		if got, want := clock.Low29(stamp), from+preambleBytes*10; got != want {
			t.Errorf("low29(FT_TX_TSTAMP1) = %d, want from + 80 = %d", got, want)
		}
		if got := p.b.Register(regs.FDTotalRxFrameCnt); got != 1 {
			t.Errorf("receiver got %d frames, want 1", got)
		}
	})
}

// TestWindowAcrossWrap: windows are modular in 29 bits; a window that
// spans the wrap of low29(SYSCOUNT), or opens after it, is honoured.
func TestWindowAcrossWrap(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newChipPair(t)
		defer p.close()
		spiEnableTSN(t, p.a)
		// 2^29 ticks = 4.294967296 s; go to 1000 ticks before the wrap.
		time.Sleep(time.Until(p.a.Clock().TimeOf(1<<29 - 1000)))
		now := clock.Low29(p.a.Clock().Now())
		if now != 1<<29-1000 {
			t.Fatalf("now = %#x", now)
		}
		// Window [top-500, 200]: opens before the wrap, closes after.
		from := uint32(1<<29 - 500)
		spiWriteFrame(t, p.a, windowMeta(1, proto.FailDrop, from, 200, from, 200), 60)
		time.Sleep(100 * time.Microsecond)
		synctest.Wait()
		if got, want := spiReadReg64(t, p.a, regs.FTTxTstamp1), uint64(1<<29-500+80); got != want {
			t.Errorf("wrapping window: FT_TX_TSTAMP1 = %d, want %d", got, want)
		}
		// Window [100, 300] of the next lap, written before the wrap: it
		// is early (not passed) and sent at 2^29 + 100.
		time.Sleep(time.Until(p.a.Clock().TimeOf(2<<29 - 1000)))
		spiWriteFrame(t, p.a, windowMeta(2, proto.FailDrop, 100, 300, 100, 300), 60)
		time.Sleep(100 * time.Microsecond)
		synctest.Wait()
		if got, want := spiReadReg64(t, p.a, regs.FTTxTstamp2), uint64(2<<29+100+80); got != want {
			t.Errorf("window after the wrap: FT_TX_TSTAMP2 = %d, want %d", got, want)
		}
		valid, delay, drop := schedCounters(p.a)
		if valid != 2 || delay != 0 || drop != 0 {
			t.Errorf("valid %d delay %d drop %d, want 2 0 0", valid, delay, drop)
		}
	})
}

func TestWindowPassed(t *testing.T) {
	for _, tc := range []struct {
		name string
		// windows relative to now, in ticks
		policy                   uint8
		from, to, delayFrom, dTo int32
		valid, delay, drop       uint64
		sendAt                   int32 // relative tick the frame starts at, if valid
	}{
		{name: "drop policy", policy: proto.FailDrop, from: -2000, to: -1000, delayFrom: -500, dTo: 5000, drop: 1},
		{name: "retry, delay window open", policy: proto.FailRetry, from: -2000, to: -1000, delayFrom: -500, dTo: 5000,
			valid: 1, delay: 1, sendAt: 0},
		{name: "retry, delay window ahead", policy: proto.FailRetry, from: -2000, to: -1000, delayFrom: 3000, dTo: 5000,
			valid: 1, delay: 1, sendAt: 3000},
		{name: "retry, delay window passed", policy: proto.FailRetry, from: -2000, to: -1000, delayFrom: -900, dTo: -800,
			delay: 1, drop: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				p := newChipPair(t)
				defer p.close()
				time.Sleep(time.Millisecond)
				spiEnableTSN(t, p.a)
				now := clock.Low29(p.a.Clock().Now())
				rel := func(d int32) uint32 { return uint32(int32(now) + d) }
				spiWriteFrame(t, p.a, windowMeta(proto.TimestampGPTP, tc.policy, rel(tc.from), rel(tc.to), rel(tc.delayFrom), rel(tc.dTo)), 60)
				time.Sleep(time.Millisecond)
				synctest.Wait()
				valid, delay, drop := schedCounters(p.a)
				if valid != tc.valid || delay != tc.delay || drop != tc.drop {
					t.Errorf("FSCH valid %d delay %d drop %d, want %d %d %d", valid, delay, drop, tc.valid, tc.delay, tc.drop)
				}
				if got := p.a.Register(regs.FTTotalTxFrameCnt); got != tc.valid {
					t.Errorf("FT_TOTAL_TX_FRAME_CNT = %d, want %d", got, tc.valid)
				}
				ab, _ := p.cable.Stats()
				if ab.Frames != tc.valid || p.b.Register(regs.FDTotalRxFrameCnt) != tc.valid {
					t.Errorf("%d frames on the wire, %d received, want %d", ab.Frames, p.b.Register(regs.FDTotalRxFrameCnt), tc.valid)
				}
				if p.a.Stats().HostFIFO.Len != 0 {
					t.Errorf("frame still in the host FIFO")
				}
				if tc.valid == 0 {
					if got := p.a.Register(regs.FTTxTstamp1); got != 0 {
						t.Errorf("dropped frame stamped: FT_TX_TSTAMP1 = %d", got)
					}
					return
				}
				stamp := clock.Low29(p.a.Register(regs.FTTxTstamp1))
				if want := rel(tc.sendAt + preambleBytes*10); stamp != want {
					t.Errorf("low29(FT_TX_TSTAMP1) = %d, want %d", stamp, want)
				}
				if dFrom, dTo := rel(tc.delayFrom), rel(tc.dTo); clock.Window(stamp-preambleBytes*10, dFrom, dTo) != clock.Inside {
					t.Errorf("sent at %d, outside the delay window [%d, %d]", stamp-preambleBytes*10, dFrom, dTo)
				}
			})
		})
	}
}

// TestTopologyClosesCleanly: a topology with the full timing model,
// started, loaded and closed, leaves no goroutine in the bubble
// (synctest.Test fails on goroutines blocked at the end).
func TestTopologyClosesCleanly(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		runLoadedTopology(t, spibridge.DefaultTiming(), 50, false)
	})
}

// TestTopologyNoLeak: the same in real time with an unthrottled bus,
// checked with goleak. With no SPI timing the driver writes frames much
// faster than the 100 Mbit/s link drains them and the driver does not
// look at the host FIFO level, so more than 128 frames (HW_QUEUE_SIZE)
// in one burst would be lost to back-pressure: 100 per direction fit on
// an idle machine. On a busy one a starved worker can let an RX FIFO
// fill, so in real time the test asserts what holds under load: every
// frame delivered or counted where it was lost, and no goroutine left.
// Zero loss is TestTopologyClosesCleanly's, in virtual time.
func TestTopologyNoLeak(t *testing.T) {
	defer goleak.VerifyNone(t)
	runLoadedTopology(t, spibridge.Timing{}, 100, true)
}

// runLoadedTopology sends n frames each way at once and closes the
// topology. lossOK (real time): frames may be lost, but each must be
// counted in one of the topology's loss counters.
func runLoadedTopology(t *testing.T, tm spibridge.Timing, n uint64, lossOK bool) {
	t.Helper()
	ss := streams(0)
	checkers := [2]*traffic.Checker{traffic.NewChecker(ss[1]), traffic.NewChecker(ss[0])}
	topo := newTopology(t, topology.Config{SPI: tm}, [2]func([]byte) bool{checkers[0].Receive, checkers[1].Receive})
	ctx := context.Background()
	if err := topo.Start(ctx); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Go(func() {
			if res, err := traffic.Send(ctx, topo.Nodes[i].Driver, ss[i], n, 0, traffic.Requeue); err != nil || res.Sent != n {
				t.Errorf("node %d: sent %d of %d: %v", i, res.Sent, n, err)
			}
		})
	}
	wg.Wait()
	for i, c := range checkers {
		if !c.WaitFor(ctx, n, time.Second) && !lossOK {
			t.Errorf("node %d received %d of %d", i, c.Result().Received, n)
		}
	}
	closeTopology(t, topo)
	for i, c := range checkers {
		r := c.Result()
		if len(r.Errors) > 0 || r.Duplicates > 0 || r.Corrupt > 0 {
			t.Errorf("node %d: %+v", i, r)
		}
		if !lossOK && (r.Received != n || r.Gaps != 0) {
			t.Errorf("node %d: %+v", i, r)
		}
	}
	for i, nd := range topo.Nodes {
		received := checkers[1-i].Result().Received
		assertAccounting(t, topo, i, received)
		var lost uint64
		for _, l := range topo.Losses(i) {
			lost += l.Count
		}
		if received+lost != n {
			t.Errorf("%s->%s: %d received + %d counted lost (%v) != %d sent", nd.Name, topo.Nodes[1-i].Name, received, lost, topo.Losses(i), n)
		}
		if bp := nd.Chip.Register(regs.FSTotalBackPressureEventCnt); bp != 0 && !lossOK {
			t.Errorf("%s: %d frames lost to host FIFO back-pressure", nd.Name, bp)
		}
		if nd.Driver.Up() {
			t.Errorf("%s: driver still up after Close", nd.Name)
		}
	}
}
