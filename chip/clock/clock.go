// Package clock models the chip's SYSCOUNT: a free-running 64-bit counter
// derived from the standard time package, so that testing/synctest can run
// it in virtual time.
//
// SYSCOUNT advances one tick per Period (8 ns by default, 125 MHz). An
// optional drift in parts per million makes the counter run fast (positive)
// or slow (negative) relative to the host's time, as a real oscillator does.
//
// Fault injection can step the counter and change its drift at run time
// (Step, SetDriftPPM). SYSCOUNT stays continuous across a drift change; it
// jumps only by a Step, backwards only by a negative Step.
package clock

import (
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultPeriod is the tick period of the real chip: 125 MHz, 8 ns.
const DefaultPeriod = 8 * time.Nanosecond

// TickBits is the width of the tick field in tx_metadata windows; ticks in
// windows are the low 29 bits of SYSCOUNT and wrap every 2^29 ticks.
const TickBits = 29

// TickMask selects the low TickBits bits of SYSCOUNT.
const TickMask = 1<<TickBits - 1

// Clock is one chip's SYSCOUNT. The zero value is not usable; use New.
// A Clock is safe for concurrent use: readers load an immutable segment,
// Step and SetDriftPPM replace it.
type Clock struct {
	period time.Duration
	seg    atomic.Pointer[segment]
	mu     sync.Mutex // serialises Step and SetDriftPPM
}

// segment is the clock's rate since its last change: SYSCOUNT at time t
// is (base + (t - start) * (1 + driftPPM/1e6)) / period, base being the
// counter's time (ticks * period) at start. New starts the first segment
// at the epoch with base 0.
type segment struct {
	start    time.Time
	base     time.Duration
	driftPPM float64
}

// New returns a clock that reads 0 at epoch and advances one tick per
// period (DefaultPeriod if period <= 0), adjusted by driftPPM.
func New(epoch time.Time, period time.Duration, driftPPM float64) *Clock {
	if period <= 0 {
		period = DefaultPeriod
	}
	c := &Clock{period: period}
	c.seg.Store(&segment{start: epoch, driftPPM: driftPPM})
	return c
}

// DriftPPM returns the current drift in parts per million.
func (c *Clock) DriftPPM() float64 { return c.seg.Load().driftPPM }

// SetDriftPPM changes the drift from now on; SYSCOUNT stays continuous
// (it does not jump). Drift must stay above -1e6 ppm for the counter to
// advance; values at or below are clamped to -999999.
func (c *Clock) SetDriftPPM(ppm float64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	s := c.seg.Load()
	c.seg.Store(&segment{start: now, base: s.counterTime(now), driftPPM: max(ppm, -999_999)})
}

// Step moves SYSCOUNT by d's worth of ticks now: forward for d > 0,
// backward for d < 0 (readings below 0 clamp to 0). The drift is kept.
func (c *Clock) Step(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	s := c.seg.Load()
	c.seg.Store(&segment{start: now, base: s.counterTime(now) + d, driftPPM: s.driftPPM})
}

// counterTime is the counter's time (ticks * period, fractional ticks
// included, truncated to nanoseconds) at t.
func (s *segment) counterTime(t time.Time) time.Duration {
	d := t.Sub(s.start)
	if s.driftPPM == 0 {
		return s.base + d
	}
	return s.base + time.Duration(float64(d)*(1+s.driftPPM/1e6))
}

// Period returns the nominal duration of one tick.
func (c *Clock) Period() time.Duration { return c.period }

// Now returns SYSCOUNT at the current time.
func (c *Clock) Now() uint64 { return c.At(time.Now()) }

// At returns SYSCOUNT at time t. Times before the epoch read as 0. After
// a Step or SetDriftPPM, At extrapolates the current segment: it keeps no
// history, so times before the last change read as if the current rate
// and offset had always applied.
func (c *Clock) At(t time.Time) uint64 {
	s := c.seg.Load()
	if s.driftPPM == 0 {
		ct := s.base + t.Sub(s.start)
		if ct <= 0 {
			return 0
		}
		return uint64(ct / c.period)
	}
	d := t.Sub(s.start)
	if s.base == 0 && d <= 0 {
		return 0
	}
	v := (float64(d)*(1+s.driftPPM/1e6) + float64(s.base)) / float64(c.period)
	if v <= 0 {
		return 0
	}
	return uint64(v)
}

// TimeOf returns the earliest time at which SYSCOUNT reads at least tick
// (under the current segment).
func (c *Clock) TimeOf(tick uint64) time.Time {
	s := c.seg.Load()
	ct := time.Duration(tick) * c.period
	if s.driftPPM == 0 {
		return s.start.Add(ct - s.base)
	}
	ns := math.Ceil((float64(tick)*float64(c.period) - float64(s.base)) / (1 + s.driftPPM/1e6))
	return s.start.Add(time.Duration(ns))
}

// Low29 returns the window tick of a SYSCOUNT value: its low 29 bits.
func Low29(count uint64) uint32 { return uint32(count & TickMask) }

// WindowState says where a 29-bit tick stands relative to a [from, to]
// transmit window.
type WindowState int

const (
	// Inside means from <= now <= to, modulo 2^29.
	Inside WindowState = iota
	// Early means the window has not opened yet: from lies ahead of now.
	Early
	// Passed means the window has closed: to lies behind now.
	Passed
)

// Window reports where now stands relative to the modular window
// [from, to]. All three are 29-bit ticks. A tick outside the window is
// Early if from is nearer ahead of it than to is behind it, otherwise
// Passed: the chip cannot tell "a long time ago" from "in the future" on a
// wrapping counter, so it takes the nearer reading.
func Window(now, from, to uint32) WindowState {
	now, from, to = now&TickMask, from&TickMask, to&TickMask
	span := (to - from) & TickMask
	if (now-from)&TickMask <= span {
		return Inside
	}
	untilFrom := (from - now) & TickMask
	sinceTo := (now - to) & TickMask
	if untilFrom <= sinceTo {
		return Early
	}
	return Passed
}

// TicksUntil returns how many ticks lie between now and the 29-bit tick
// target, going forward modulo 2^29.
func TicksUntil(now, target uint32) uint32 { return (target - now) & TickMask }
