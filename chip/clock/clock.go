// Package clock models the chip's SYSCOUNT: a free-running 64-bit counter
// derived from the standard time package, so that testing/synctest can run
// it in virtual time.
//
// SYSCOUNT advances one tick per Period (8 ns by default, 125 MHz). An
// optional drift in parts per million makes the counter run fast (positive)
// or slow (negative) relative to the host's time, as a real oscillator does.
package clock

import (
	"math"
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
// A Clock is safe for concurrent use: it is immutable after New.
type Clock struct {
	epoch    time.Time
	period   time.Duration
	driftPPM float64
}

// New returns a clock that reads 0 at epoch and advances one tick per
// period (DefaultPeriod if period <= 0), adjusted by driftPPM.
func New(epoch time.Time, period time.Duration, driftPPM float64) *Clock {
	if period <= 0 {
		period = DefaultPeriod
	}
	return &Clock{epoch: epoch, period: period, driftPPM: driftPPM}
}

// Period returns the nominal duration of one tick.
func (c *Clock) Period() time.Duration { return c.period }

// Now returns SYSCOUNT at the current time.
func (c *Clock) Now() uint64 { return c.At(time.Now()) }

// At returns SYSCOUNT at time t. Times before the epoch read as 0.
func (c *Clock) At(t time.Time) uint64 {
	d := t.Sub(c.epoch)
	if d <= 0 {
		return 0
	}
	if c.driftPPM == 0 {
		return uint64(d / c.period)
	}
	return uint64(float64(d) * (1 + c.driftPPM/1e6) / float64(c.period))
}

// TimeOf returns the earliest time at which SYSCOUNT reads at least tick.
func (c *Clock) TimeOf(tick uint64) time.Time {
	if c.driftPPM == 0 {
		return c.epoch.Add(time.Duration(tick) * c.period)
	}
	ns := math.Ceil(float64(tick) * float64(c.period) / (1 + c.driftPPM/1e6))
	return c.epoch.Add(time.Duration(ns))
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
