package main

import (
	"context"
	"errors"
	"math"
	"sync"
	"time"

	"github.com/facebook/time/servo"
	"github.com/spf13/pflag"

	"tsnsim/driver"
	"tsnsim/gptp"
	"tsnsim/topology"
)

// ptpOptions are the gPTP flags of tsnsim run.
type ptpOptions struct {
	ptp      bool
	ptpEvery time.Duration
	ptpTime  time.Duration
	plot     string
}

func (o *ptpOptions) addFlags(fs *pflag.FlagSet) {
	fs.BoolVar(&o.ptp, "ptp", false, "run gPTP (802.1AS) between the nodes over the hardware timestamps: a grandmaster, b follows; prints offset and path delay over time, convergence, PPS skew (netstack and frames backends)")
	fs.DurationVar(&o.ptpEvery, "ptp-report", time.Second, "--ptp: interval of the offset/path-delay lines")
	fs.DurationVar(&o.ptpTime, "ptp-time", 20*time.Second, "--ptp: keep the nodes running at least this long (the workload may finish earlier)")
	fs.StringVar(&o.plot, "plot", "", "--ptp: write the follower's offset and path-delay curve to this file (SVG, or PNG for a .png name)")
}

func (o *ptpOptions) validate(backend string, attached bool) error {
	switch {
	case !o.ptp && o.plot != "":
		return errors.New("--plot draws the --ptp offset curve: add --ptp")
	case o.ptp && backend == backendTAP:
		return errors.New("--ptp runs on the netstack and frames backends; over TAP run ptp4l in the namespaces (README)")
	case o.ptp && attached:
		return errors.New("--ptp measures against the emulated chips: not with --attach or --spidev")
	case o.ptpEvery <= 0 || o.ptpTime < 0:
		return errors.New("--ptp-report must be positive, --ptp-time not negative")
	}
	return nil
}

// apply turns on what gPTP needs and routes PTP frames to the ports.
func (o *ptpOptions) apply(cfg *topology.Config, s *ptpSession) {
	if !o.ptp {
		return
	}
	cfg.Driver.TSN.Timestamps = true
	prev := cfg.DriverConfig
	cfg.DriverConfig = func(i int, c *driver.Config) {
		if prev != nil {
			prev(i, c)
		}
		m := s.demux[i]
		if st := c.TSN.ReceiveStamped; st != nil {
			m.Other = st
		} else if rcv := c.Receive; rcv != nil {
			m.Other = func(f []byte, _ driver.HWStamp) bool { return rcv(f) }
		}
		m.OtherStamp = c.TSN.TxStamped
		m.Wire(c)
	}
}

// ptpSession runs the two ports of a --ptp run and measures them.
type ptpSession struct {
	o     *ptpOptions
	r     *outcome
	demux [2]*gptp.Demux
	topo  *topology.Topology
	ports [2]*gptp.Port

	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	start   time.Time
	points  []ptpPoint
	samples []gptp.Sample
	skews   []float64
	stopped bool
}

// ptpPoint is one report line: the follower's state and the true offset
// (from the chips' real SYSCOUNT).
type ptpPoint struct {
	at        time.Duration
	measured  int64
	trueOff   int64
	pathDelay float64
	state     servo.State
	freq      float64
}

func newPTPSession(o *ptpOptions, r *outcome) *ptpSession {
	s := &ptpSession{o: o, r: r}
	for i := range s.demux {
		s.demux[i] = &gptp.Demux{}
	}
	return s
}

// begin starts the ports on topo (before Start: they wait for their
// driver to come up) and stops them before it closes.
func (s *ptpSession) begin(topo *topology.Topology) error {
	s.topo = topo
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	for i, role := range []gptp.Role{gptp.Master, gptp.Slave} {
		n := topo.Nodes[i]
		cfg := gptp.Config{Role: role, MAC: topology.NodeMAC(i)}
		if role == gptp.Slave {
			cfg.OnSample = func(sm gptp.Sample) {
				s.mu.Lock()
				s.samples = append(s.samples, sm)
				s.mu.Unlock()
			}
		}
		p, err := gptp.New(n.Driver, cfg)
		if err != nil {
			cancel()
			return err
		}
		s.ports[i] = p
		s.demux[i].Set(p)
	}
	s.start = time.Now()
	for _, p := range s.ports {
		s.wg.Go(func() {
			if err := s.waitUp(ctx); err == nil {
				_ = p.Run(ctx)
			}
		})
	}
	s.wg.Go(func() { s.watch(ctx, s.r) })
	topo.BeforeClose(s.stop)
	return nil
}

// waitUp waits until both drivers are open.
func (s *ptpSession) waitUp(ctx context.Context) error {
	for !s.topo.Nodes[0].Driver.Up() || !s.topo.Nodes[1].Driver.Up() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
	return nil
}

// stop ends the ports (before the topology closes), once the nodes
// have run for --ptp-time.
func (s *ptpSession) stop() {
	if s == nil || s.cancel == nil {
		return
	}
	if d := time.Until(s.start.Add(s.o.ptpTime)); d > 0 {
		time.Sleep(d)
	}
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return
	}
	s.stopped = true
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
}

// trueOffset is PHC b - PHC a now, from the chips' real SYSCOUNT.
func (s *ptpSession) trueOffset() int64 {
	now := time.Now()
	a, b := s.topo.Nodes[0], s.topo.Nodes[1]
	return b.Driver.PHCTime(b.Chip.Clock().At(now)) - a.Driver.PHCTime(a.Chip.Clock().At(now))
}

// watch prints the offset and path delay every ptpEvery, and aligns both
// nodes' PPS to their PHC seconds 100 ms before each second, measuring
// the skew of the edges.
func (s *ptpSession) watch(ctx context.Context, r *outcome) {
	if s.waitUp(ctx) != nil {
		return
	}
	r.printf("gPTP: a grandmaster, b follower (Sync every %v, Pdelay_Req every %v)\n", gptp.DefaultSyncInterval, gptp.DefaultPdelayInterval)
	report := time.NewTicker(s.o.ptpEvery)
	defer report.Stop()
	a := s.topo.Nodes[0]
	pps := time.NewTimer(time.Hour)
	defer pps.Stop()
	schedulePPS := func() {
		now, err := a.Driver.PHCGettime()
		if err == nil {
			pps.Reset(time.Duration(1_900_000_000 - now%1_000_000_000))
		}
	}
	schedulePPS()
	var edges [2][]int64 // PHC second -> edge time, per node
	var want [2]int64
	for {
		select {
		case <-ctx.Done():
			return
		case <-report.C:
			st := s.ports[1].Stats()
			p := ptpPoint{at: time.Since(s.start), measured: st.LastOffset, trueOff: s.trueOffset(),
				pathDelay: st.PathDelay, state: st.LastServoState, freq: st.LastFreqPPB}
			s.mu.Lock()
			s.points = append(s.points, p)
			s.mu.Unlock()
			r.printf("  t=%-6v offset %6d ns (true %6d ns)  path delay %6.1f ns  servo %-6v freq %+9.0f ppb\n",
				p.at.Round(time.Millisecond), p.measured, p.trueOff, p.pathDelay, p.state, p.freq)
		case <-pps.C:
			if st := s.ports[1].Stats(); st.LastServoState == servo.StateLocked && st.LastOffset > -100 && st.LastOffset < 100 {
				for i, n := range s.topo.Nodes {
					for len(n.Chip.PPS()) > 0 {
						<-n.Chip.PPS()
					}
					sec, err := n.Driver.AlignPPS(ctx, 10_000_000)
					if err != nil {
						want[i] = -1
						continue
					}
					want[i] = sec
				}
				if want[0] == want[1] && want[0] > 0 {
					for i, n := range s.topo.Nodes {
						select {
						case e := <-n.Chip.PPS():
							edges[i] = append(edges[i], e.At.UnixNano())
						case <-time.After(300 * time.Millisecond):
						case <-ctx.Done():
							return
						}
					}
					if k := min(len(edges[0]), len(edges[1])); k > 0 {
						s.mu.Lock()
						s.skews = append(s.skews, float64(edges[1][k-1]-edges[0][k-1]))
						s.mu.Unlock()
					}
				}
			}
			schedulePPS()
		}
	}
}

// delivered is how many PTP frames node i's port took.
func (s *ptpSession) delivered(i int) uint64 {
	if s == nil {
		return 0
	}
	return s.demux[i].PTPReceived()
}

// report prints the summary and writes the plot.
func (s *ptpSession) report(r *outcome) {
	if s == nil || s.topo == nil {
		return
	}
	s.mu.Lock()
	points, samples, skews := s.points, s.samples, s.skews
	s.mu.Unlock()
	conv := time.Duration(-1)
	for _, p := range points {
		if p.trueOff > 32 || p.trueOff < -32 {
			conv = -1
		} else if conv < 0 {
			conv = p.at
		}
	}
	sa, sb := s.ports[0].Stats(), s.ports[1].Stats()
	r.printf("gPTP a: sent %v, received %v, stamp errors %d\n", sa.Sent, sa.Received, sa.StampErrors)
	r.printf("gPTP b: sent %v, received %v, stamp errors %d, %d offsets, %d steps, path delay %.1f ns, neighbour rate ratio %.9f\n",
		sb.Sent, sb.Received, sb.StampErrors, sb.Syncs, sb.Steps, sb.PathDelay, sb.NeighborRate)
	switch {
	case conv < 0:
		r.printf("gPTP: not converged (|true offset| <= 32 ns to the end)\n")
	case conv == points[len(points)-1].at:
		r.printf("gPTP: converged to within 32 ns after %v, at the last report; run longer (--ptp-time) for steady-state figures\n", conv.Round(time.Millisecond))
	default:
		var steady []float64
		for _, p := range points {
			if p.at > conv {
				steady = append(steady, float64(p.trueOff))
			}
		}
		q := driver.Summarise(steady)
		r.printf("gPTP: converged to within 32 ns after %v; then |true offset| p50 %.0f p99 %.0f max %.0f ns, RMS %.1f ns (%d points)\n",
			conv.Round(time.Millisecond), q.P50, q.P99, q.Max, rms(steady), len(steady))
	}
	if len(skews) > 0 {
		q := driver.Summarise(skews)
		r.printf("PPS skew b-a (edges aligned to each PHC's seconds): |skew| p50 %.0f p99 %.0f max %.0f ns, mean %+.1f ns (%d seconds)\n", q.P50, q.P99, q.Max, q.Mean, len(skews))
	}
	if s.o.plot != "" {
		if err := writePlot(s.o.plot, samples, s.start); err != nil {
			r.fail("--plot: %v", err)
		} else {
			r.printf("plot: follower offset curve written to %s\n", s.o.plot)
		}
	}
}

func rms(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	var s float64
	for _, x := range v {
		s += x * x
	}
	return math.Sqrt(s / float64(len(v)))
}
