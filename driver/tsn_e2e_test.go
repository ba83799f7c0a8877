package driver_test

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"tsnsim/chip"
	"tsnsim/chip/regs"
	"tsnsim/driver"
	"tsnsim/spibridge"
	"tsnsim/topology"
)

// xmitDetector is a transport that counts transfers issued with
// (*Driver).Transmit or TransmitStamped on the caller's stack: the check
// CONFIG_DEBUG_ATOMIC_SLEEP makes, independent of the driver's own
// counting.
type xmitDetector struct {
	spibridge.Transport
	hits atomic.Int64
}

func (x *xmitDetector) Transfer(ctx context.Context, tx, rx []byte) error {
	pc := make([]uintptr, 64)
	frames := runtime.CallersFrames(pc[:runtime.Callers(2, pc)])
	for {
		f, more := frames.Next()
		if strings.Contains(f.Function, "driver.(*Driver).Transmit") || strings.Contains(f.Function, "driver.(*Driver).transmit") {
			x.hits.Add(1)
			break
		}
		if !more {
			break
		}
	}
	return x.Transport.Transfer(ctx, tx, rx)
}

// tsnRig is a topology with TSN drivers and stack-checking transports.
type tsnRig struct {
	topo *topology.Topology
	det  [2]*xmitDetector

	mu    sync.Mutex
	rx    [2][]rxRec
	stamp [2][]driver.TxStamp
	wire  [2][]wireRec
}

type rxRec struct {
	frame []byte
	st    driver.HWStamp
	at    time.Time
}

type wireRec struct {
	frame []byte
	sof   time.Time // first byte after the preamble enters the cable
}

func newTSNRig(t *testing.T, dc driver.Config, drift [2]float64) *tsnRig {
	t.Helper()
	r := &tsnRig{}
	cfg := topology.Config{
		Driver: dc,
		SPI:    spibridge.DefaultTiming(),
		Transport: func(i int, bus *spibridge.InProcess) (spibridge.Transport, io.Closer, error) {
			r.det[i] = &xmitDetector{Transport: bus}
			return r.det[i], nil, nil
		},
		DriverConfig: func(i int, c *driver.Config) {
			c.TSN.ReceiveStamped = func(f []byte, st driver.HWStamp) bool {
				r.mu.Lock()
				r.rx[i] = append(r.rx[i], rxRec{f, st, time.Now()})
				r.mu.Unlock()
				return true
			}
			c.TSN.TxStamped = func(s driver.TxStamp) {
				r.mu.Lock()
				r.stamp[i] = append(r.stamp[i], s)
				r.mu.Unlock()
			}
		},
	}
	cfg.Cable.Monitor = func(from int, f []byte, sof time.Time) {
		r.mu.Lock()
		r.wire[from] = append(r.wire[from], wireRec{append([]byte(nil), f...), sof})
		r.mu.Unlock()
	}
	topo, err := topology.New(cfg, [2]func([]byte) bool{})
	if err != nil {
		t.Fatal(err)
	}
	for i, n := range topo.Nodes {
		n.Chip.Clock().SetDriftPPM(drift[i])
	}
	if err := topo.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	r.topo = topo
	return r
}

func (r *tsnRig) close(t *testing.T) {
	t.Helper()
	if err := r.topo.Close(context.Background()); err != nil {
		t.Errorf("close: %v", err)
	}
	for i := range 2 {
		r.mu.Lock()
		n := uint64(len(r.rx[1-i]))
		r.mu.Unlock()
		for _, err := range r.topo.Audit(i, n) {
			t.Error(err)
		}
		if h := r.det[i].hits.Load(); h != 0 {
			t.Errorf("node %d: %d SPI transfers issued from Transmit", i, h)
		}
		if s := r.topo.Nodes[i].Driver.TSNStats(); s.XmitTransfers != 0 {
			t.Errorf("node %d: driver counted %d transfers from Transmit", i, s.XmitTransfers)
		}
	}
}

// send offers a frame, waiting for the queue on ErrBusy.
func send(t *testing.T, d *driver.Driver, f []byte, stamp bool, cookie uint64) error {
	for {
		var err error
		if stamp {
			err = d.TransmitStamped(f, driver.StampRequest{Cookie: cookie})
		} else {
			err = d.Transmit(f)
		}
		if !errors.Is(err, driver.ErrBusy) {
			return err
		}
		select {
		case <-d.Wake():
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// testFrame builds a frame: dst, src, optional VLAN tag, EtherType,
// then a 4-byte sequence number (after a PTP-like first byte for 0x88F7).
func testFrame(src byte, vlanPCP int, ethType uint16, ptpType byte, seq uint32, size int) []byte {
	f := make([]byte, size)
	copy(f, []byte{0x01, 0x80, 0xc2, 0, 0, 0x0e, 0x02, 0, 0, 0, 0, src})
	off := 12
	if vlanPCP >= 0 {
		binary.BigEndian.PutUint16(f[12:], 0x8100)
		binary.BigEndian.PutUint16(f[14:], uint16(vlanPCP)<<13|1)
		off = 16
	}
	binary.BigEndian.PutUint16(f[off:], ethType)
	f[off+2] = ptpType
	binary.BigEndian.PutUint32(f[off+4:], seq)
	return f
}

func seqOf(f []byte) uint32 {
	off := 12
	if binary.BigEndian.Uint16(f[12:]) == 0x8100 {
		off = 16
	}
	return binary.BigEndian.Uint32(f[off+4:])
}

// TestClockModelError measures the SYSCOUNT model against the chip's
// true SYSCOUNT in virtual time, chips drifting +25 and -25 ppm, under
// traffic; every read of the model is free of SPI.
func TestClockModelError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newTSNRig(t, driver.Config{TSN: driver.TSNConfig{PHC: true}}, [2]float64{25, -25})
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		for i := range 2 {
			wg.Go(func() {
				for seq := uint32(0); ctx.Err() == nil; seq++ {
					_ = send(t, r.topo.Nodes[i].Driver, testFrame(byte(i), -1, 0x88b5, 0, seq, 300), false, 0)
					time.Sleep(2 * time.Millisecond)
				}
			})
		}
		time.Sleep(time.Second) // the ramp of sampling gaps reaches 100 ms
		var errs [2][]float64
		rng := rand.New(rand.NewPCG(1, 2))
		for range 3000 {
			time.Sleep(time.Duration(1+rng.IntN(6000)) * time.Microsecond)
			now := time.Now()
			for i, n := range r.topo.Nodes {
				m, ok := n.Driver.SysCountModel(now)
				if !ok {
					t.Fatal("no model")
				}
				errs[i] = append(errs[i], float64(int64(m-n.Chip.Clock().At(now))))
			}
		}
		cancel()
		wg.Wait()
		for i, n := range r.topo.Nodes {
			s := driver.Summarise(errs[i])
			cs := n.Driver.ClockStats()
			t.Logf("node %s: model error ticks p50 %.0f p99 %.0f max %.0f mean %.2f (n %d); rate %+.3f ppm, %d samples",
				n.Name, s.P50, s.P99, s.Max, s.Mean, s.N, cs.RatePPM, cs.Samples)
			if s.P99 > 2 || s.Max > 3 {
				t.Errorf("node %s: model error p99 %.0f max %.0f ticks", n.Name, s.P99, s.Max)
			}
			want := []float64{25, -25}[i]
			if cs.RatePPM < want-0.5 || cs.RatePPM > want+0.5 {
				t.Errorf("node %s: rate %+.3f ppm, want %+.0f", n.Name, cs.RatePPM, want)
			}
		}
		r.close(t)
	})
}

// TestClockModelStep: a step of SYSCOUNT (fault) is detected at the next
// sample and the model follows it.
func TestClockModelStep(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newTSNRig(t, driver.Config{TSN: driver.TSNConfig{PHC: true, Clock: driver.ClockConfig{SampleInterval: 50 * time.Millisecond}}}, [2]float64{})
		time.Sleep(time.Second)
		n := r.topo.Nodes[0]
		n.Chip.Clock().Step(5 * time.Millisecond)
		time.Sleep(200 * time.Millisecond)
		now := time.Now()
		m, _ := n.Driver.SysCountModel(now)
		if e := int64(m - n.Chip.Clock().At(now)); e < -2 || e > 2 {
			t.Errorf("after the step the model is off by %d ticks", e)
		}
		if cs := n.Driver.ClockStats(); cs.Resets != 1 {
			t.Errorf("%d resets, want 1", cs.Resets)
		}
		r.close(t)
	})
}

// TestHWStamps: TX stamps of gPTP event frames (timestamp_id 1) and
// others (2), RX stamps on every frame; RX - TX stamp is the cable's
// propagation delay (50 ns), the MAC/PHY latencies corrected away.
func TestHWStamps(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newTSNRig(t, driver.Config{TSN: driver.TSNConfig{Timestamps: true}}, [2]float64{})
		a := r.topo.Nodes[0].Driver
		for seq := range uint32(20) {
			var f []byte
			if seq%2 == 0 {
				f = testFrame(1, -1, driver.EtherTypePTP, 0x00, seq, 64) // Sync: event
			} else {
				f = testFrame(1, -1, 0x88b5, 0, seq, 200+int(seq)*50)
			}
			if err := send(t, a, f, true, uint64(seq)); err != nil {
				t.Fatal(err)
			}
			time.Sleep(2 * time.Millisecond)
		}
		// Two requests for one register at once: the second is skipped.
		_ = send(t, a, testFrame(1, -1, 0x88b5, 0, 100, 1000), true, 100)
		_ = send(t, a, testFrame(1, -1, 0x88b5, 0, 101, 100), true, 101)
		time.Sleep(10 * time.Millisecond)
		r.mu.Lock()
		stamps, rx := r.stamp[0], r.rx[1]
		r.mu.Unlock()
		rxBySeq := map[uint32]rxRec{}
		for _, x := range rx {
			if !x.st.Valid {
				t.Errorf("frame %d came up without an RX stamp", seqOf(x.frame))
			}
			rxBySeq[seqOf(x.frame)] = x
		}
		if len(stamps) != 22 {
			t.Fatalf("%d stamp completions, want 22", len(stamps))
		}
		for _, s := range stamps {
			if s.Cookie == 101 {
				if !errors.Is(s.Err, driver.ErrStampBusy) {
					t.Errorf("second request on a busy register: %v", s.Err)
				}
				continue
			}
			if s.Err != nil {
				t.Errorf("cookie %d: %v", s.Cookie, s.Err)
				continue
			}
			wantID := uint16(2)
			if s.Cookie < 20 && s.Cookie%2 == 0 {
				wantID = 1
			}
			if s.ID != wantID {
				t.Errorf("cookie %d: timestamp_id %d, want %d", s.Cookie, s.ID, wantID)
			}
			x, ok := rxBySeq[uint32(s.Cookie)]
			if !ok {
				t.Errorf("cookie %d not received", s.Cookie)
				continue
			}
			if d := x.st.PHC - s.Stamp.PHC; d < 50-8 || d > 50+8 {
				t.Errorf("cookie %d: RX - TX stamp = %d ns, want the 50 ns cable delay", s.Cookie, d)
			}
		}
		st := a.TSNStats()
		if st.TxStampRequests != 22 || st.TxStamps != 21 || st.TxStampSkipped != 1 || st.TxStampPending != 0 {
			t.Errorf("stats %+v", st)
		}
		// A frame that never leaves (TSN disabled on the chip) times out.
		if err := a.WriteRegister(context.Background(), regs.TSNSystemControl+4, 0); err != nil {
			t.Fatal(err)
		}
		_ = send(t, a, testFrame(1, -1, driver.EtherTypePTP, 0, 200, 64), true, 200)
		time.Sleep(50 * time.Millisecond)
		if st := a.TSNStats(); st.TxStampTimeouts != 1 {
			t.Errorf("timeouts %d, want 1", st.TxStampTimeouts)
		}
		if err := a.WriteRegister(context.Background(), regs.TSNSystemControl+4, 1); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
		r.close(t)
	})
}

// TestTaprio is the schedule: 1 ms cycle, class 3 open 0-100 us,
// the others 100-1000 us, bidirectional mixed load. Every frame's
// transmission, as the cable sees it, lies inside an open interval of its
// class; per-class latency is bounded.
func TestTaprio(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tp, err := driver.ParseTaprio("num_tc 4 map 0 1 2 3 0 1 2 0 base-time 0 sched-entry S 08 100000 sched-entry S 07 900000" +
			" fail-policy 0 retry fail-policy 1 retry fail-policy 2 retry fail-policy 3 retry")
		if err != nil {
			t.Fatal(err)
		}
		r := newTSNRig(t, driver.Config{TSN: driver.TSNConfig{Timestamps: true, Taprio: tp}}, [2]float64{})
		sent := [2]map[uint32]time.Time{{}, {}}
		class := [2]map[uint32]int{{}, {}}
		var smu sync.Mutex
		var wg sync.WaitGroup
		for i := range 2 {
			wg.Go(func() {
				d := r.topo.Nodes[i].Driver
				rng := rand.New(rand.NewPCG(uint64(i), 7))
				for seq := range uint32(3000) {
					var f []byte
					c := 0
					switch k := seq % 4; {
					case k == 0: // gPTP event, class 3, stamped
						f, c = testFrame(byte(i), -1, driver.EtherTypePTP, 0, seq, 64), 3
					case k == 1:
						pcp := rng.IntN(3) // classes 0..2
						f, c = testFrame(byte(i), pcp, 0x88b5, 0, seq, 60+rng.IntN(900)), pcp
					default:
						f = testFrame(byte(i), -1, 0x88b5, 0, seq, 60+rng.IntN(500))
					}
					smu.Lock()
					sent[i][seq], class[i][seq] = time.Now(), c
					smu.Unlock()
					if err := send(t, d, f, c == 3, uint64(seq)); err != nil {
						t.Errorf("node %d seq %d: %v", i, seq, err)
					}
					time.Sleep(time.Duration(700+rng.IntN(600)) * time.Microsecond)
				}
			})
		}
		wg.Wait()
		time.Sleep(20 * time.Millisecond)
		violations := 0
		var lat [2][4][]float64
		for i, n := range r.topo.Nodes {
			clk := n.Chip.Clock()
			r.mu.Lock()
			wire := r.wire[i]
			r.mu.Unlock()
			if len(wire) != 3000 {
				t.Errorf("node %d: %d frames on the wire, want 3000", i, len(wire))
			}
			for _, w := range wire {
				seq := seqOf(w.frame)
				c := class[i][seq]
				mac := w.sof.Add(-chip.DefaultTxLatency)
				start := int64(clk.At(mac.Add(-chip.PreambleLen*80*time.Nanosecond))) * 8
				end := int64(clk.At(mac.Add(time.Duration(len(w.frame))*80*time.Nanosecond))) * 8
				if !tp.OpenThroughout(c, start, end, 1000) {
					violations++
					if violations < 5 {
						t.Errorf("node %d seq %d class %d: on the wire %d..%d ns (cycle offset %d)", i, seq, c, start, end, start%1_000_000)
					}
				}
				lat[i][c] = append(lat[i][c], float64(mac.Sub(sent[i][seq])))
			}
			// The stamps the driver reported agree with the cable.
			r.mu.Lock()
			for _, s := range r.stamp[i] {
				if errors.Is(s.Err, driver.ErrStampBusy) {
					continue // one request per register: expected under load
				}
				if s.Err != nil {
					t.Errorf("node %d stamp %d: %v", i, s.Cookie, s.Err)
					continue
				}
				if off := (s.Stamp.PHC - 300) % 1_000_000; off < 0 || off > 100_000 {
					t.Errorf("node %d: class 3 stamp at cycle offset %d ns", i, off)
				}
			}
			r.mu.Unlock()
		}
		if violations != 0 {
			t.Errorf("%d window violations", violations)
		}
		for i := range 2 {
			for c := range 4 {
				s := driver.Summarise(lat[i][c])
				t.Logf("node %d class %d: %d frames, latency p50 %v p99 %v max %v", i, c, s.N,
					time.Duration(s.P50), time.Duration(s.P99), time.Duration(s.Max))
				if s.Max > float64(2*time.Millisecond) {
					t.Errorf("node %d class %d: max latency %v", i, c, time.Duration(s.Max))
				}
			}
			st := r.topo.Nodes[i].Driver.TSNStats()
			t.Logf("node %d: %+v", i, st)
		}
		r.close(t)
	})
}

// TestXmitDetector: the stack check and the driver's own count both see
// the field mode's SYSCOUNT reads in transmit (so their 0 elsewhere
// means something).
func TestXmitDetector(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newTSNRig(t, driver.Config{XmitClock: driver.XmitClockSPI, TSN: driver.TSNConfig{PHC: true}}, [2]float64{})
		d := r.topo.Nodes[0].Driver
		for seq := range uint32(3) {
			if err := send(t, d, testFrame(1, -1, 0x88b5, 0, seq, 100), false, 0); err != nil {
				t.Fatal(err)
			}
		}
		if h, c := r.det[0].hits.Load(), d.TSNStats().XmitTransfers; h != 9 || c != 9 {
			t.Errorf("stack check %d, driver count %d; want 9 (3 x H, L, H)", h, c)
		}
		if err := r.topo.Close(context.Background()); err != nil {
			t.Error(err)
		}
	})
}

// TestPPS: the chips pulse at whole seconds of SYSCOUNT (reset values),
// drifting +25 and -25 ppm; after AlignPPS (PHC set 0.3 s ahead, and
// running 10 ppm fast) node a's pulses fall on its PHC's whole seconds.
func TestPPS(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newTSNRig(t, driver.Config{TSN: driver.TSNConfig{PHC: true}}, [2]float64{25, -25})
		a, b := r.topo.Nodes[0], r.topo.Nodes[1]
		time.Sleep(3500 * time.Millisecond)
		for _, n := range r.topo.Nodes {
			var got []chip.PPSEdge
			for len(n.Chip.PPS()) > 0 {
				got = append(got, <-n.Chip.PPS())
			}
			if len(got) != 4 { // at SYSCOUNT 0, 1 s, 2 s, 3 s
				t.Fatalf("node %s: %d edges", n.Name, len(got))
			}
			for k, e := range got {
				if e.Count != uint64(k)*125_000_000 || n.Chip.Clock().At(e.At) != e.Count {
					t.Errorf("node %s edge %d: %+v", n.Name, k, e)
				}
			}
		}
		d := a.Driver
		now, _ := d.PHCGettime()
		if err := d.PHCSettime(now + 300_000_000); err != nil {
			t.Fatal(err)
		}
		if err := d.PHCAdjfine(10 * 65536); err != nil {
			t.Fatal(err)
		}
		sec, err := d.AlignPPS(context.Background(), 10_000_000)
		if err != nil {
			t.Fatal(err)
		}
		for k := range 3 {
			e := <-a.Chip.PPS()
			phc := d.PHCTime(e.Count)
			want := sec + int64(k)*1_000_000_000
			if phc < want || phc >= want+8 {
				t.Errorf("aligned edge %d at PHC %d, want %d (+ less than a tick)", k, phc, want)
			}
		}
		_ = b
		r.close(t)
	})
}
