package driver

import (
	"errors"
	"fmt"
	"math/bits"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"

	"tsnsim/chip/clock"
)

// The PTP hardware clock (Linux ptp_clock_info: gettime64, settime64,
// adjtime, adjfine). SYSCOUNT is free-running and cannot be set or
// steered (chip.md section 4), so, as the vendor driver does, the PHC is
// SYSCOUNT plus a software offset and rate kept by the driver:
//
//	PHC(ticks) = baseNS + dns + dns * scaledPPM / 65_536_000_000
//	dns        = (ticks - baseTicks) * period      (signed, ns)
//
// scaledPPM is adjfine's argument: parts per million with a 16-bit
// binary fraction (65536 = 1 ppm), so the correction of dns ns is
// dns*scaledPPM/(65536*10^6) ns, computed with a 128-bit product and
// truncated toward zero. settime sets baseNS to the new time and
// baseTicks to SYSCOUNT now; adjtime adds to baseNS; adjfine first
// rebases (baseNS = PHC(now), baseTicks = now) so the time is continuous,
// then sets the new rate. At Open the PHC reads SYSCOUNT * period (base
// 0, 0). The inverse, used to turn a PHC time into a transmit window,
// is exact to a tick:
//
//	ticks = baseTicks + floor((ns - baseNS) * 65_536_000_000 / (period * (65_536_000_000 + scaledPPM)))
//
// Windows carry the low 29 bits of that tick count (clock.Low29), which
// wrap every 2^29 ticks (4.29 s at 8 ns): a window more than 2^28 ticks
// (2.15 s) ahead would read as passed to the chip, so the taprio horizon
// is capped below that (maxHorizonTicks).

// ppmScale is 65536 * 10^6: scaled ppm per unit rate.
const ppmScale = 65_536_000_000

// MaxAdjScaledPPM bounds adjfine: +-500 ppm (max_adj 500000 ppb).
const MaxAdjScaledPPM = 500 * 65536

// ErrNoClock: the SYSCOUNT model is off or has no sample (interface down).
var ErrNoClock = errors.New("driver: no SYSCOUNT model (interface down or TSN clock off)")

// phcMath is the PHC arithmetic: a pure value, tested against
// hand-computed figures.
type phcMath struct {
	period    int64 // ns per tick
	baseTicks uint64
	baseNS    int64
	scaledPPM int64
}

// at converts a SYSCOUNT value to PHC nanoseconds.
func (p phcMath) at(ticks uint64) int64 {
	dns := int64(ticks-p.baseTicks) * p.period
	return p.baseNS + dns + mulDiv(dns, p.scaledPPM, ppmScale)
}

// ticks converts a PHC time to the SYSCOUNT value at which the PHC
// reaches it (floored).
func (p phcMath) ticks(ns int64) uint64 {
	dns := ns - p.baseNS
	den := p.period * (ppmScale + p.scaledPPM)
	q := mulDiv(dns, ppmScale, den)
	// floor, not truncation, for times before the base
	if dns < 0 && mulDivRem(dns, ppmScale, den) != 0 {
		q--
	}
	return p.baseTicks + uint64(q)
}

// rebase moves the base to ticks, keeping the PHC continuous.
func (p *phcMath) rebase(ticks uint64) {
	p.baseNS = p.at(ticks)
	p.baseTicks = ticks
}

// mulDiv returns a*b/c truncated toward zero, with a 128-bit product
// (c > 0; the quotient must fit in int64).
func mulDiv(a, b, c int64) int64 {
	q, _ := mulDivBoth(a, b, c)
	return q
}

func mulDivRem(a, b, c int64) int64 {
	_, r := mulDivBoth(a, b, c)
	return r
}

func mulDivBoth(a, b, c int64) (int64, int64) {
	neg := (a < 0) != (b < 0)
	ua, ub := abs64(a), abs64(b)
	hi, lo := bits.Mul64(ua, ub)
	q, r := bits.Div64(hi, lo, uint64(c))
	if neg {
		return -int64(q), -int64(r)
	}
	return int64(q), int64(r)
}

func abs64(v int64) uint64 {
	if v < 0 {
		return uint64(-v)
	}
	return uint64(v)
}

// phc is the driver's PHC state.
type phc struct {
	mu sync.Mutex
	m  phcMath
}

func newPHC(period time.Duration) *phc {
	return &phc{m: phcMath{period: int64(period)}}
}

func (p *phc) get() phcMath {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.m
}

// nowTicks is the model's SYSCOUNT now.
func (d *Driver) nowTicks() (uint64, error) {
	if v, ok := d.SysCountModel(time.Now()); ok {
		return v, nil
	}
	return 0, ErrNoClock
}

// PHCGettime is gettime64: the PHC now, in ns, from the SYSCOUNT model
// (no SPI transfer).
func (d *Driver) PHCGettime() (int64, error) {
	t, err := d.nowTicks()
	if err != nil {
		return 0, err
	}
	return d.phc.get().at(t), nil
}

// PHCSettime is settime64: the PHC reads ns now. It logs what the vendor
// driver logs (host time, SYSCOUNT, its hardware time, the offset).
func (d *Driver) PHCSettime(ns int64) error {
	t, err := d.nowTicks()
	if err != nil {
		return err
	}
	d.phc.mu.Lock()
	d.phc.m.rebase(t)
	old := d.phc.m.baseNS
	d.phc.m.baseNS = ns
	d.phc.mu.Unlock()
	d.log.Debug("PHC settime", zap.Time("host_timestamp", time.Now()), zap.Uint64("sys_clock", t),
		zap.Int64("hw_timestamp", int64(t)*int64(d.clk.cfg.TickPeriod)), zap.Int64("offset", ns-old))
	return nil
}

// PHCAdjtime is adjtime: the PHC moves by delta ns.
func (d *Driver) PHCAdjtime(delta int64) error {
	if d.clk == nil {
		return ErrNoClock
	}
	d.phc.mu.Lock()
	d.phc.m.baseNS += delta
	d.phc.mu.Unlock()
	return nil
}

// PHCAdjfine is adjfine: the PHC runs faster by scaledPPM/65536 ppm
// (negative: slower) than SYSCOUNT's nominal rate from now on. It fails
// with ERANGE beyond MaxAdjScaledPPM.
func (d *Driver) PHCAdjfine(scaledPPM int64) error {
	if scaledPPM > MaxAdjScaledPPM || scaledPPM < -MaxAdjScaledPPM {
		return fmt.Errorf("driver: adjfine %d scaled ppm beyond +-%d: %w", scaledPPM, MaxAdjScaledPPM, syscall.ERANGE)
	}
	t, err := d.nowTicks()
	if err != nil {
		return err
	}
	d.phc.mu.Lock()
	d.phc.m.rebase(t)
	d.phc.m.scaledPPM = scaledPPM
	d.phc.mu.Unlock()
	return nil
}

// PHCAdjfineFreq returns the current adjfine value (scaled ppm).
func (d *Driver) PHCAdjfineFreq() int64 { return d.phc.get().scaledPPM }

// PHCTime converts a SYSCOUNT value (a hardware stamp) to PHC ns.
func (d *Driver) PHCTime(ticks uint64) int64 { return d.phc.get().at(ticks) }

// PHCTicks converts a PHC time to the SYSCOUNT value at which the PHC
// reaches it.
func (d *Driver) PHCTicks(ns int64) uint64 { return d.phc.get().ticks(ns) }

// PHCHostTime returns the host time at which the PHC reads ns, by the
// SYSCOUNT model.
func (d *Driver) PHCHostTime(ns int64) (time.Time, bool) {
	if d.clk == nil {
		return time.Time{}, false
	}
	return d.clk.hostTime(float64(d.PHCTicks(ns)))
}

// windowTick is the 29-bit window tick of a PHC time.
func (d *Driver) windowTick(ns int64) uint32 { return clock.Low29(d.PHCTicks(ns)) }
