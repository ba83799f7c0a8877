package chip

import (
	"time"

	"go.uber.org/zap"

	"tsnsim/chip/regs"
)

// The PPS output (chip.md section 4: PPS_PULSE_AT, PPS_CYCLE_1S). The
// chip pulses when SYSCOUNT reaches PPS_PULSE_AT, then advances
// PPS_PULSE_AT by PPS_CYCLE_1S. Modelling choices (chip.md gives only the
// registers):
//   - "reaches" is SYSCOUNT >= PPS_PULSE_AT: a value written in the past
//     pulses at once; PPS_PULSE_AT then advances by whole cycles past
//     now (the pulses a comparator could not have given are not given,
//     and are counted in PPSStats.Skipped).
//   - PPS_CYCLE_1S 0 stops the output. Reset values: PPS_PULSE_AT 0,
//     PPS_CYCLE_1S 125000000, so an untouched chip pulses at every whole
//     second of SYSCOUNT.
//   - The pulse is an edge with the emulated time SYSCOUNT reached
//     PPS_PULSE_AT, delivered like the interrupt line on a channel
//     (PPS); edges nobody takes are dropped from the channel and counted
//     (PPSStats.Unread), the pin does not wait.
//   - A write to either register takes effect at once; a 64-bit value
//     written as two halves is seen half-written in between (as the
//     hardware would).

// PPSEdge is one rising edge of the PPS output.
type PPSEdge struct {
	At    time.Time // emulated time of the edge
	Count uint64    // SYSCOUNT at the edge (the PPS_PULSE_AT that fired)
	Seq   uint64    // pulses since the chip started, from 1
}

// PPSStats counts the PPS output's pulses.
type PPSStats struct {
	Pulses  uint64
	Skipped uint64 // cycles passed over when PPS_PULSE_AT lay in the past
	Unread  uint64 // edges dropped because the channel was full
	Last    PPSEdge
}

// ppsBuffer is how many edges wait on the channel.
const ppsBuffer = 64

// ppsRecheck bounds a wait for a pulse, so a SYSCOUNT step or drift
// change moves the next pulse within this long.
const ppsRecheck = 100 * time.Millisecond

// PPS delivers the PPS output's edges.
func (c *Chip) PPS() <-chan PPSEdge { return c.pps }

// PPSStats returns the PPS counters.
func (c *Chip) PPSStats() PPSStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ppsStats
}

func (c *Chip) kickPPS() {
	select {
	case c.ppsKick <- struct{}{}:
	default:
	}
}

// ppsLoop is the PPS comparator; it stops with the chip.
func (c *Chip) ppsLoop() {
	defer close(c.ppsDone)
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		c.mu.Lock()
		at, cyc := c.regs.Get(regs.PPSPulseAt), c.regs.Get(regs.PPSCycle1S)
		c.mu.Unlock()
		wait := ppsRecheck
		if cyc != 0 {
			if now := c.clock.Now(); now >= at {
				c.pulse(at, cyc, now)
				continue
			}
			wait = min(max(time.Until(c.clock.TimeOf(at)), time.Nanosecond), ppsRecheck)
		}
		if cyc == 0 {
			wait = time.Hour
		}
		t.Reset(wait)
		select {
		case <-t.C:
		case <-c.ppsKick:
			t.Stop() // Go 1.23+: no stale value is left in t.C
		case <-c.stop:
			return
		}
	}
}

// pulse fires the pulse due at SYSCOUNT at (now >= at) and advances
// PPS_PULSE_AT, unless the register changed meanwhile.
func (c *Chip) pulse(at, cyc, now uint64) {
	c.mu.Lock()
	if c.regs.Get(regs.PPSPulseAt) != at || c.regs.Get(regs.PPSCycle1S) != cyc {
		c.mu.Unlock()
		return
	}
	next := at + cyc
	if next <= now {
		skip := (now-next)/cyc + 1
		c.ppsStats.Skipped += skip
		next += skip * cyc
	}
	c.regs.Set(regs.PPSPulseAt, next)
	c.ppsStats.Pulses++
	e := PPSEdge{At: c.clock.TimeOf(at), Count: at, Seq: c.ppsStats.Pulses}
	c.ppsStats.Last = e
	select {
	case c.pps <- e:
	default:
		c.ppsStats.Unread++
	}
	c.mu.Unlock()
	c.log.Debug("PPS pulse", zap.Uint64("syscount", at), zap.Time("at", e.At))
	if c.cfg.OnPPS != nil {
		c.cfg.OnPPS(c.cfg.Name, e)
	}
}
