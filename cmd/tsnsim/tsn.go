package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spf13/pflag"

	"tsnsim/chip"
	"tsnsim/driver"
	"tsnsim/topology"
)

// tsnOptions are the TSN flags of tsnsim run.
type tsnOptions struct {
	taprio      string
	clockModel  bool
	clockSample time.Duration
	drift       string
	tsnInterval time.Duration

	schedule *driver.Taprio
	drifts   map[string]float64
}

func (o *tsnOptions) addFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.taprio, "taprio", "", "802.1Qbv gate schedule in tc taprio syntax (README): each frame gets the window of its class; runs the TSN workload (--backend frames)")
	fs.BoolVar(&o.clockModel, "clock-model", false, "turn on the driver's SYSCOUNT model, PHC and hardware timestamps and run the TSN workload (--backend frames); reports the model's error against the chips' SYSCOUNT")
	fs.DurationVar(&o.clockSample, "clock-sample", driver.DefaultClockSampleInterval, "how often the SPI worker samples SYSCOUNT once its model has settled")
	fs.StringVar(&o.drift, "drift", "", "chip clock drift in ppm per node, e.g. a=+25,b=-25 (with --clock-model, --taprio or --ptp)")
	fs.DurationVar(&o.tsnInterval, "tsn-interval", time.Millisecond, "TSN workload: mean gap between the frames each node sends")
}

// tsn reports whether the TSN workload runs.
func (o *tsnOptions) tsn() bool { return o.taprio != "" || o.clockModel }

func (o *tsnOptions) validate(backend string, attached, ptp bool) error {
	if o.taprio != "" {
		tp, err := driver.ParseTaprio(o.taprio)
		if err != nil {
			return fmt.Errorf("--taprio: %w", err)
		}
		o.schedule = tp
	}
	if o.drift != "" {
		d, err := parseDrift(o.drift)
		if err != nil {
			return err
		}
		o.drifts = d
	}
	switch {
	case o.clockSample <= 0:
		return errors.New("--clock-sample must be positive")
	case o.tsnInterval <= 0:
		return errors.New("--tsn-interval must be positive")
	case o.tsn() && backend != backendFrames:
		return errors.New("--taprio and --clock-model run the TSN workload on the frames backend: add --backend frames")
	case o.clockSample != driver.DefaultClockSampleInterval && !o.tsn() && !ptp:
		return errors.New("--clock-sample applies to the SYSCOUNT model: add --clock-model, --taprio or --ptp")
	case o.drift != "" && !o.tsn() && !ptp:
		return errors.New("--drift applies to the TSN workload and gPTP: add --clock-model, --taprio or --ptp")
	case (o.tsn() || o.drift != "") && attached:
		return errors.New("--taprio, --clock-model and --drift need the emulated chips and cable (not --attach or --spidev)")
	}
	return nil
}

// parseDrift reads NODE=PPM[,NODE=PPM].
func parseDrift(s string) (map[string]float64, error) {
	out := map[string]float64{}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || (k != "a" && k != "b") {
			return nil, fmt.Errorf("--drift %q: want NODE=PPM with NODE a or b, comma-separated", s)
		}
		ppm, err := strconv.ParseFloat(v, 64)
		if err != nil || ppm <= -1e6 || ppm > 1e6 {
			return nil, fmt.Errorf("--drift %q: bad ppm %q", s, v)
		}
		out[k] = ppm
	}
	return out, nil
}

// apply sets the drivers' TSN configuration (the TSN workload, or gPTP).
func (o *tsnOptions) apply(cfg *topology.Config, ptp bool) {
	if !o.tsn() && !ptp {
		return
	}
	cfg.Driver.TSN = driver.TSNConfig{
		Clock:      driver.ClockConfig{Enabled: true, SampleInterval: o.clockSample},
		PHC:        true,
		Timestamps: true,
		Taprio:     o.schedule,
		SPI:        cfg.SPI,
	}
	if cfg.SPI.Throttled() {
		cfg.Driver.TSN.Clock.SampleLead = cfg.SPI.WireTime(4)
	} else {
		cfg.Driver.TSN.Clock.SampleLead = -1
	}
	if cfg.Chip.LinkBitsPerSec > 0 {
		cfg.Driver.TSN.LinkBitsPerSec = cfg.Chip.LinkBitsPerSec
	}
}

// setDrift applies --drift to the chips of topo (buildTopology).
func (o *tsnOptions) setDrift(topo *topology.Topology) {
	for _, n := range topo.Nodes {
		if ppm, ok := o.drifts[n.Name]; ok && n.Chip != nil {
			n.Chip.Clock().SetDriftPPM(ppm)
		}
	}
}

// tsnRun is the state of one TSN workload run.
type tsnRun struct {
	o    *runOptions
	topo *topology.Topology

	mu      sync.Mutex
	sentAt  [2]map[uint32]time.Time
	class   [2]map[uint32]int
	wire    [2][]wireSeen
	rx      [2]uint64
	rxStamp [2]uint64
	stamps  [2][]driver.TxStamp
	clkErr  [2][]float64
}

type wireSeen struct {
	seq uint32
	sof time.Time
	n   int
}

// TSN workload frames: EtherType 0x88B5 (local experimental) or 0x88F7
// (a PTP Sync header's first bytes, so it is a gPTP event), a magic and
// a sequence number.
const tsnMagic = 0x54534e31 // "TSN1"

func tsnFrame(src int, vlanPCP int, ptp bool, seq uint32, size int) []byte {
	f := make([]byte, size)
	copy(f, topology.NodeMAC(1-src))
	copy(f[6:], topology.NodeMAC(src))
	off := 12
	if vlanPCP >= 0 {
		binary.BigEndian.PutUint16(f[12:], 0x8100)
		binary.BigEndian.PutUint16(f[14:], uint16(vlanPCP)<<13|1)
		off = 16
	}
	et := uint16(0x88b5)
	if ptp {
		et = driver.EtherTypePTP
	}
	binary.BigEndian.PutUint16(f[off:], et)
	f[off+2] = 0x00 // PTP: messageType Sync (an event); else padding
	f[off+3] = 0x02 // PTP: versionPTP 2
	binary.BigEndian.PutUint32(f[off+4:], tsnMagic)
	binary.BigEndian.PutUint32(f[off+8:], seq)
	return f
}

func tsnSeq(f []byte) (uint32, bool) {
	off := 12
	if len(f) >= 18 && binary.BigEndian.Uint16(f[12:]) == 0x8100 {
		off = 16
	}
	if len(f) < off+12 || binary.BigEndian.Uint32(f[off+4:]) != tsnMagic {
		return 0, false
	}
	return binary.BigEndian.Uint32(f[off+8:]), true
}

// runTSN is the TSN workload: each node sends --frames frames, a mix of
// gPTP event frames (class of priority 3, TX stamp requested), VLAN
// frames of PCP 0-7 and untagged frames, one every --tsn-interval on
// average; it reports the clock model's error, stamps, and with --taprio
// per-class latency and window violations as the cable saw them.
func runTSN(o *runOptions, cfg topology.Config, r *outcome) error {
	t := &tsnRun{o: o}
	for i := range 2 {
		t.sentAt[i], t.class[i] = map[uint32]time.Time{}, map[uint32]int{}
	}
	prev := cfg.Cable.Monitor
	cfg.Cable.Monitor = func(from int, f []byte, sof time.Time) {
		if prev != nil {
			prev(from, f, sof)
		}
		if seq, ok := tsnSeq(f); ok {
			t.mu.Lock()
			t.wire[from] = append(t.wire[from], wireSeen{seq, sof, len(f)})
			t.mu.Unlock()
		}
	}
	cfg.DriverConfig = func(i int, c *driver.Config) {
		c.TSN.ReceiveStamped = func(f []byte, st driver.HWStamp) bool {
			t.mu.Lock()
			t.rx[i]++
			if st.Valid {
				t.rxStamp[i]++
			}
			t.mu.Unlock()
			return true
		}
		c.TSN.TxStamped = func(s driver.TxStamp) {
			t.mu.Lock()
			t.stamps[i] = append(t.stamps[i], s)
			t.mu.Unlock()
		}
	}
	topo, err := o.buildTopology(cfg, [2]func([]byte) bool{})
	if err != nil {
		return err
	}
	t.topo = topo
	ctx := context.Background()
	if err := topo.Start(ctx); err != nil {
		closeTopology(topo, r)
		return err
	}
	start := time.Now()
	probeCtx, stopProbe := context.WithCancel(ctx)
	var probe sync.WaitGroup
	probe.Go(func() { t.probeClock(probeCtx) })
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Go(func() { t.send(ctx, i) })
	}
	wg.Wait()
	time.Sleep(20 * time.Millisecond) // the last windows, stamps and frames
	stopProbe()
	probe.Wait()
	elapsed := time.Since(start)
	closeTopology(topo, r)
	topo.WriteReport(r.out, elapsed)
	t.report(r)
	r.audit(topo, t.rx)
	return nil
}

// send is node i's sender.
func (t *tsnRun) send(ctx context.Context, i int) {
	d := t.topo.Nodes[i].Driver
	rng := rand.New(rand.NewPCG(uint64(i)+1, 11))
	tp := t.o.schedule
	for seq := range uint32(t.o.frames) {
		var f []byte
		prio := 0
		switch k := rng.IntN(4); k {
		case 0:
			f, prio = tsnFrame(i, -1, true, seq, 64), 3
		case 1:
			prio = rng.IntN(8)
			f = tsnFrame(i, prio, false, seq, 64+rng.IntN(900))
		default:
			f = tsnFrame(i, -1, false, seq, 64+rng.IntN(500))
		}
		class := prio
		if tp != nil {
			class = int(tp.Map[prio])
		}
		t.mu.Lock()
		t.sentAt[i][seq], t.class[i][seq] = time.Now(), class
		t.mu.Unlock()
		var err error
		for {
			if prio == 3 && f[12] != 0x81 {
				err = d.TransmitStamped(f, driver.StampRequest{Cookie: uint64(seq)})
			} else {
				err = d.Transmit(f)
			}
			if !errors.Is(err, driver.ErrBusy) {
				break
			}
			select {
			case <-d.Wake():
			case <-time.After(100 * time.Millisecond):
			case <-ctx.Done():
				return
			}
		}
		gap := t.o.tsnInterval
		time.Sleep(gap/2 + time.Duration(rng.Int64N(int64(gap))))
	}
}

// probeClock compares each driver's SYSCOUNT model with its chip's
// SYSCOUNT at irregular instants (no SPI: the chip is read directly).
func (t *tsnRun) probeClock(ctx context.Context) {
	rng := rand.New(rand.NewPCG(5, 5))
	time.Sleep(time.Second) // the sampling ramp
	for ctx.Err() == nil {
		now := time.Now()
		for i, n := range t.topo.Nodes {
			m, ok := n.Driver.SysCountModel(now)
			if !ok || n.Chip == nil {
				continue
			}
			e := float64(int64(m - n.Chip.Clock().At(now)))
			t.mu.Lock()
			t.clkErr[i] = append(t.clkErr[i], e)
			t.mu.Unlock()
		}
		time.Sleep(time.Duration(1+rng.IntN(10_000)) * time.Microsecond)
	}
}

func (t *tsnRun) report(r *outcome) {
	t.mu.Lock()
	defer t.mu.Unlock()
	tp := t.o.schedule
	for i, n := range t.topo.Nodes {
		name := n.Name
		cs := n.Driver.ClockStats()
		s := driver.Summarise(t.clkErr[i])
		errs := "not measured (the run ended within the model's first second of sampling)"
		if s.N > 0 {
			errs = fmt.Sprintf("p50 %.0f p99 %.0f max %.0f ticks (mean %+.1f, %d probes)", s.P50, s.P99, s.Max, s.Mean, s.N)
		}
		r.printf("clock model %s: error vs SYSCOUNT %s; rate %+.3f ppm (chip drift %+.1f ppm); %d samples, %d failed, %d step resets\n",
			name, errs, cs.RatePPM, n.Chip.Clock().DriftPPM(), cs.Samples, cs.Failed, cs.Resets)
		st := n.Driver.TSNStats()
		r.printf("stamps %s: TX %d requested, %d stamped, %d skipped (register busy), %d timeouts (tx_hwtstamp_timeouts), %d lost; RX %d of %d frames stamped; SPI transfers from transmit: %d\n",
			name, st.TxStampRequests, st.TxStamps, st.TxStampSkipped, st.TxStampTimeouts, st.TxStampLost, t.rxStamp[i], t.rx[i], st.XmitTransfers)
		if st.XmitTransfers != 0 && n.Driver != nil && t.o.xmitClock == "none" {
			r.fail("%s: %d SPI transfers from the transmit path", name, st.XmitTransfers)
		}
		if tp == nil {
			continue
		}
		clk := n.Chip.Clock()
		lat := map[int][]float64{}
		violations := 0
		for _, w := range t.wire[i] {
			c := t.class[i][w.seq]
			mac := w.sof.Add(-chip.DefaultTxLatency)
			startNS := n.Driver.PHCTime(clk.At(mac.Add(-chip.PreambleLen * 80 * time.Nanosecond)))
			endNS := n.Driver.PHCTime(clk.At(mac.Add(time.Duration(w.n) * 80 * time.Nanosecond)))
			if !tp.OpenThroughout(c, startNS, endNS, 500) {
				violations++
			}
			lat[c] = append(lat[c], float64(mac.Sub(t.sentAt[i][w.seq])))
		}
		for c := range tp.NumTC {
			l := driver.Summarise(lat[c])
			r.printf("taprio %s class %d: %d frames on the wire, latency p50 %v p99 %v max %v; %d scheduled, %d dropped (no window)\n",
				name, c, l.N, time.Duration(l.P50).Round(time.Microsecond), time.Duration(l.P99).Round(time.Microsecond),
				time.Duration(l.Max).Round(time.Microsecond), st.TaprioScheduled[c], st.TaprioDropped[c])
		}
		r.printf("taprio %s: %d window violations (frames on the wire outside an open interval of their class)\n", name, violations)
		if violations != 0 {
			r.fail("%s: %d taprio window violations", name, violations)
		}
	}
}
