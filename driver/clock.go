package driver

import (
	"context"
	"math"
	"sort"
	"sync"
	"time"

	"go.uber.org/zap"

	"tsnsim/chip/regs"
)

// The driver's model of the chip's SYSCOUNT (design.md, "TSN"): the SPI
// worker samples SYSCOUNT with the tear-safe H, L, H read and pairs each
// value with the host time at which the chip sampled it; a line fitted
// through the last samples gives SYSCOUNT at any host time, so the
// transmit path reads the chip's clock without touching SPI (chip.md
// section 6, scenario 2).
//
// Pairing: a register read is sampled by the chip when its first data
// byte is clocked, ClockConfig.SampleLead before the transfer ends (4
// bytes of an 8-byte read: 2.13 us at 15 MHz). The host time of a sample
// is the end of the L read minus that lead.
//
// Fit: the rate is the least-squares slope of SYSCOUNT against host time
// over the last ClockConfig.Window samples (nominal 1/TickPeriod until two
// samples exist, and whenever the slope is further than maxRatePPM from
// it). The offset is the largest residual of the window ("minimum delay"
// filter): a sample can only be paired too late (a late wake-up of the
// host after the transfer), never too early, so the highest reading is
// the best. A sample more than stepAheadTicks ahead of the model, or more
// than stepBehind behind it, means SYSCOUNT stepped (or the host
// slept through a long stall): the window restarts from that sample.
//
// Resampling: at Open, then at 1, 2, 4, ... ms after it (so the rate is
// known within a second) up to ClockConfig.SampleInterval, and at the
// first idle moment after any failed transfer of the worker.

// DefaultClockSampleInterval is how often the worker samples SYSCOUNT
// once the model has settled: three 8-byte register reads (about 73 us
// of bus time at 15 MHz) every 100 ms.
const DefaultClockSampleInterval = 100 * time.Millisecond

// DefaultClockWindow is how many samples the model fits.
const DefaultClockWindow = 16

// DefaultTickPeriod is SYSCOUNT's tick: 8 ns (chip.md section 5).
const DefaultTickPeriod = 8 * time.Nanosecond

// DefaultSampleLead is when, before the end of an 8-byte register read,
// the chip samples the register: 4 bytes at 15 MHz.
const DefaultSampleLead = 2133 * time.Nanosecond

const (
	firstSampleGap = time.Millisecond
	maxRatePPM     = 1000
	stepAheadTicks = 1250 // 10 us at 8 ns
	stepBehind     = 20 * time.Millisecond
)

// ClockConfig configures the SYSCOUNT model.
type ClockConfig struct {
	// Enabled turns the model on. Every TSN feature (PHC, timestamps,
	// taprio) needs it and turns it on; without them the worker spends
	// no bus time on the clock.
	Enabled bool
	// SampleInterval is the settled resampling period (default
	// DefaultClockSampleInterval).
	SampleInterval time.Duration
	// SampleLead is how long before the end of a register read the chip
	// samples it: default (zero) DefaultSampleLead; negative: no lead
	// (an unthrottled bus).
	SampleLead time.Duration
	// TickPeriod is the nominal SYSCOUNT tick (default 8 ns). chip.md
	// notes a field log that reads like 10 ns; both are tested.
	TickPeriod time.Duration
	// Window is how many samples the fit uses (default
	// DefaultClockWindow, at least 2).
	Window int
}

func (c *ClockConfig) setDefaults() {
	if c.SampleInterval <= 0 {
		c.SampleInterval = DefaultClockSampleInterval
	}
	switch {
	case c.SampleLead == 0:
		c.SampleLead = DefaultSampleLead
	case c.SampleLead < 0:
		c.SampleLead = 0
	}
	if c.TickPeriod <= 0 {
		c.TickPeriod = DefaultTickPeriod
	}
	if c.Window < 2 {
		c.Window = DefaultClockWindow
	}
}

// ClockStats is the accounting of the SYSCOUNT model.
type ClockStats struct {
	Samples      uint64        // successful H, L, H samples
	Failed       uint64        // samples abandoned because a read failed
	Resets       uint64        // window restarts: a step of SYSCOUNT detected
	RatePPM      float64       // estimated rate against nominal, ppm
	LastSample   time.Time     // host time of the newest sample
	LastResidual float64       // newest sample minus the model before it, ticks
	Interval     time.Duration // current resampling period
}

type clockSample struct {
	host  time.Time
	ticks uint64
}

// sysClock is the model. The worker writes it; Transmit, the PHC and the
// stamp conversion read it.
type sysClock struct {
	cfg ClockConfig

	mu      sync.Mutex
	samples []clockSample // oldest first, at most cfg.Window
	valid   bool
	// SYSCOUNT(t) = baseTicks + rate * (t - baseHost) in ns
	baseHost  time.Time
	baseTicks float64
	rate      float64 // ticks per ns
	stats     ClockStats

	// Worker only.
	next  time.Time     // next sample due
	gap   time.Duration // current sampling gap (ramping up)
	stale bool          // a fault happened: resample at once
}

func newSysClock(cfg ClockConfig) *sysClock {
	cfg.setDefaults()
	return &sysClock{cfg: cfg, rate: 1 / float64(cfg.TickPeriod)}
}

// nominalRate is ticks per ns at the nominal period.
func (c *sysClock) nominalRate() float64 { return 1 / float64(c.cfg.TickPeriod) }

// at returns the model's SYSCOUNT at host time t, in fractional ticks,
// and whether the model has a sample.
func (c *sysClock) at(t time.Time) (float64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.valid {
		return 0, false
	}
	return c.baseTicks + c.rate*float64(t.Sub(c.baseHost)), true
}

// hostTime returns the host time at which the model reads ticks.
func (c *sysClock) hostTime(ticks float64) (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.valid {
		return time.Time{}, false
	}
	return c.baseHost.Add(time.Duration(math.Round((ticks - c.baseTicks) / c.rate))), true
}

// add puts one sample into the model and refits it.
func (c *sysClock) add(s clockSample) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stats.Samples++
	c.stats.LastSample = s.host
	if c.valid {
		pred := c.baseTicks + c.rate*float64(s.host.Sub(c.baseHost))
		res := float64(s.ticks) - pred
		c.stats.LastResidual = res
		if res > stepAheadTicks || res < -float64(stepBehind)*c.rate {
			c.samples = c.samples[:0]
			c.stats.Resets++
		}
	}
	if len(c.samples) == c.cfg.Window {
		c.samples = append(c.samples[:0], c.samples[1:]...)
	}
	c.samples = append(c.samples, s)
	c.fit()
	c.valid = true
}

// fit computes rate and offset from the samples (c.mu held).
func (c *sysClock) fit() {
	s0 := c.samples[0]
	rate := c.nominalRate()
	if n := len(c.samples); n >= 2 {
		var mx, my float64
		for _, s := range c.samples {
			mx += float64(s.host.Sub(s0.host))
			my += float64(int64(s.ticks - s0.ticks))
		}
		mx /= float64(n)
		my /= float64(n)
		var sxy, sxx float64
		for _, s := range c.samples {
			dx := float64(s.host.Sub(s0.host)) - mx
			sxy += dx * (float64(int64(s.ticks-s0.ticks)) - my)
			sxx += dx * dx
		}
		if sxx > 0 {
			if r := sxy / sxx; math.Abs(r/rate-1) <= maxRatePPM/1e6 {
				rate = r
			}
		}
	}
	best := math.Inf(-1)
	for _, s := range c.samples {
		best = max(best, float64(int64(s.ticks-s0.ticks))-rate*float64(s.host.Sub(s0.host)))
	}
	c.baseHost, c.baseTicks, c.rate = s0.host, float64(s0.ticks)+best, rate
	c.stats.RatePPM = (rate/c.nominalRate() - 1) * 1e6
}

// reset forgets every sample (the interface went down).
func (c *sysClock) reset() {
	c.mu.Lock()
	c.samples, c.valid = c.samples[:0], false
	c.mu.Unlock()
	c.next, c.gap, c.stale = time.Time{}, 0, false
}

func (c *sysClock) snapshot() ClockStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stats
}

// due reports whether the worker should sample now.
func (c *sysClock) due(now time.Time) bool {
	return c.stale || !now.Before(c.next)
}

// sampled schedules the next sample after one at now (ok: it succeeded).
func (c *sysClock) sampled(now time.Time, ok bool) {
	if !ok {
		c.stale = true
		return
	}
	c.stale = false
	switch {
	case c.gap == 0:
		c.gap = firstSampleGap
	default:
		c.gap = min(2*c.gap, c.cfg.SampleInterval)
	}
	c.next = now.Add(c.gap)
	c.mu.Lock()
	c.stats.Interval = c.gap
	c.mu.Unlock()
}

// sampleSysCount reads SYSCOUNT tear-safe (H, L, H; L again under a new
// H) and returns it with the host time the chip sampled the L half.
func (d *Driver) sampleSysCount(ctx context.Context) (clockSample, error) {
	lead := d.clk.cfg.SampleLead
	hi, err := d.ReadRegister(ctx, regs.TSNSysCount)
	if err != nil {
		return clockSample{}, err
	}
	lo, err := d.ReadRegister(ctx, regs.TSNSysCount+4)
	if err != nil {
		return clockSample{}, err
	}
	at := time.Now().Add(-lead)
	hi2, err := d.ReadRegister(ctx, regs.TSNSysCount)
	if err != nil {
		return clockSample{}, err
	}
	if hi2 != hi {
		if lo, err = d.ReadRegister(ctx, regs.TSNSysCount+4); err != nil {
			return clockSample{}, err
		}
		at, hi = time.Now().Add(-lead), hi2
	}
	return clockSample{host: at, ticks: uint64(hi)<<32 | uint64(lo)}, nil
}

// sampleClock is the worker's clock round: it samples SYSCOUNT if due.
// It reports false when a read failed (counted as a failed transfer).
func (w *worker) sampleClock() bool {
	c := w.d.clk
	if c == nil || !c.due(time.Now()) {
		return true
	}
	s, err := w.d.sampleSysCount(w.ctx)
	if err != nil {
		c.mu.Lock()
		c.stats.Failed++
		c.mu.Unlock()
		c.sampled(time.Now(), false)
		w.failed("SYSCOUNT sample", err)
		return false
	}
	c.add(s)
	c.sampled(time.Now(), true)
	return true
}

// openClock takes the model's first sample at Open, with retries.
func (d *Driver) openClock(ctx context.Context, bo *backoff) error {
	c := d.clk
	if c == nil {
		return nil
	}
	c.reset()
	var err error
	for i := range regAttempts {
		if i > 0 && !bo.wait(ctx) {
			break
		}
		var s clockSample
		if s, err = d.sampleSysCount(ctx); err == nil {
			c.add(s)
			c.sampled(time.Now(), true)
			d.log.Debug("SYSCOUNT model started", zap.Uint64("syscount", s.ticks))
			return nil
		}
		d.count(func(st *Stats) { st.SPIErrors++ })
	}
	return err
}

// SysCountModel returns the driver's model of SYSCOUNT at host time t
// (truncated to a tick) without any SPI transfer; false if the model is
// off or has no sample yet.
func (d *Driver) SysCountModel(t time.Time) (uint64, bool) {
	if d.clk == nil {
		return 0, false
	}
	v, ok := d.clk.at(t)
	if !ok || v < 0 {
		return 0, false
	}
	return uint64(v), true
}

// ClockStats returns the SYSCOUNT model's accounting (zero if it is off).
func (d *Driver) ClockStats() ClockStats {
	if d.clk == nil {
		return ClockStats{}
	}
	return d.clk.snapshot()
}

// ErrorStats summarises model errors in ticks.
type ErrorStats struct {
	N             int
	P50, P99, Max float64 // of the absolute error
	Mean          float64 // signed
}

// Summarise returns the statistics of errs (ticks).
func Summarise(errs []float64) ErrorStats {
	if len(errs) == 0 {
		return ErrorStats{}
	}
	abs := make([]float64, len(errs))
	var sum float64
	for i, e := range errs {
		abs[i] = math.Abs(e)
		sum += e
	}
	sort.Float64s(abs)
	q := func(p float64) float64 { return abs[min(len(abs)-1, int(p*float64(len(abs))))] }
	return ErrorStats{N: len(errs), P50: q(0.5), P99: q(0.99), Max: abs[len(abs)-1], Mean: sum / float64(len(errs))}
}
