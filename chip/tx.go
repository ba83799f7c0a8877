package chip

import (
	"time"

	"go.uber.org/zap"

	"tsnsim/chip/clock"
	"tsnsim/chip/proto"
	"tsnsim/chip/regs"
)

// transmitter is the scheduler and transmitter: it takes frames from the
// host FIFO in order, holds the head frame until its window opens, drops
// or delays it when its window has passed (fail_policy), and serialises
// released frames onto the wire at link speed.
func (c *Chip) transmitter() {
	defer close(c.done)
	c.log.Debug("transmitter started")
	defer c.log.Debug("transmitter stopped")
	for {
		c.mu.Lock()
		e, ok, wait := c.schedule()
		c.mu.Unlock()
		if ok {
			if !c.send(&e) {
				return
			}
			continue
		}
		if !c.waitForWork(wait) {
			return
		}
	}
}

// schedule decides about the head of the host FIFO: it returns the frame
// to send now, or how long to wait (0: until woken). Frames whose window
// passed are dropped or moved to their delay window here. Called with
// c.mu held.
func (c *Chip) schedule() (txEntry, bool, time.Duration) {
	if !regs.TSNEnable.Set(c.regs.Get(regs.TSNSystemControl)) {
		return txEntry{}, false, 0
	}
	for {
		e := c.host.Front()
		if e == nil {
			return txEntry{}, false, 0
		}
		from, to := e.meta.From.Tick, e.meta.To.Tick
		if e.delayed {
			from, to = e.meta.DelayFrom.Tick, e.meta.DelayTo.Tick
		}
		var now uint64
		state := clock.Inside
		if (to-from)&clock.TickMask != clock.TickMask { // not an always-open window
			now = c.clock.Now()
			state = clock.Window(clock.Low29(now), from, to)
			if late := time.Since(c.clock.TimeOf(e.opens)); e.waited && state == clock.Passed && late >= 0 && late <= maxBackdate &&
				!c.lineFree.After(c.clock.TimeOf(e.opens+uint64((to-from)&clock.TickMask))) {
				// Held for this window and woken late (real-time
				// timer slack): the emulated transmitter started it
				// when the window opened (or the line was free, still
				// inside it), as it backdates the line.
				now, state = e.opens, clock.Inside
			}
		}
		switch state {
		case clock.Inside:
			e.ready = later(e.ready, c.enabled)
			if e.waited {
				e.ready = later(e.ready, c.clock.TimeOf(e.opens))
			}
			if now != 0 {
				// Found inside a timed window: it cannot start before
				// the window opened, however far the transmitter's
				// timeline is backdated (real-time timer slack).
				e.ready = later(e.ready, c.clock.TimeOf(now-uint64((clock.Low29(now)-from)&clock.TickMask)))
			}
			out := *e
			c.takeHead()
			c.regs.Add(regs.FSCHTotalValidEntryCnt, 1)
			c.regs.Add(regs.FTRSFTotalTxFrameCnt, 1)
			return out, true, 0
		case clock.Early:
			e.opens = now + uint64(clock.TicksUntil(clock.Low29(now), from))
			e.waited = true
			return txEntry{}, false, max(time.Until(c.clock.TimeOf(e.opens)), time.Nanosecond)
		}
		if !e.delayed && e.meta.FailPolicy&1 == proto.FailRetry {
			e.delayed = true
			c.regs.Add(regs.FSCHTotalDelayEntryCnt, 1)
			continue
		}
		c.takeHead()
		c.regs.Add(regs.FSCHTotalDropEntryCnt, 1)
		c.log.Debug("TX window passed, frame dropped", zap.Uint32("to", to), zap.Uint64("now", now))
	}
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// maxBackdate bounds how far a frame's start may lie behind the
// transmitter's wall clock: the real-time timer slack the line absorbs.
// With the precise timer (Config.Timer) what is left is its lateness,
// tens of microseconds, so the bound is smaller (as for the SPI bus).
const (
	maxBackdate        = 2 * time.Millisecond
	maxBackdatePrecise = 250 * time.Microsecond
)

func (c *Chip) maxBackdate() time.Duration {
	if c.cfg.Timer != nil {
		return maxBackdatePrecise
	}
	return maxBackdate
}

func (c *Chip) takeHead() {
	c.host.Pop()
	c.hostRd++
}

// waitForWork blocks until woken, until d has passed (d > 0), or until
// the chip stops; it reports false on stop.
func (c *Chip) waitForWork(d time.Duration) bool {
	var timeout <-chan time.Time
	if d > 0 {
		t := c.cfg.Timer.NewTimer(d)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case <-c.kick:
	case <-timeout:
	case <-c.stop:
		return false
	}
	return true
}

// wireTime is how long n bytes take on the link.
func (c *Chip) wireTime(n int) time.Duration {
	if c.cfg.LinkBitsPerSec < 0 {
		return 0
	}
	return time.Duration(int64(n) * 8 * int64(time.Second) / c.cfg.LinkBitsPerSec)
}

// send serialises one frame: preamble, frame, inter-frame gap. The frame
// is stamped when its first byte after the preamble leaves the MAC (the
// IEEE 802.1AS message timestamp point); it reaches the wire TxLatency
// later. Frames are scheduled on the line's own timeline: a frame starts
// when the previous one's gap ends (lineFree) or when it became ready
// (queued, TSN enabled, window open), whichever is later. A timer that
// wakes late in real time thus delays the transmitter goroutine but not
// the frames' emulated start times (by at most maxBackdate); in virtual
// time the goroutine wakes exactly then and nothing changes. It reports
// false if the chip stopped meanwhile.
func (c *Chip) send(e *txEntry) bool {
	timed := c.cfg.LinkBitsPerSec > 0
	start := time.Now()
	if timed {
		start = later(later(c.lineFree, e.ready), start.Add(-c.maxBackdate()))
	}
	sof := start.Add(c.wireTime(PreambleLen))

	c.mu.Lock()
	c.sending.Store(true)
	gap := int(regs.TxInterFrameGap.Get(c.regs.Get(regs.TSNTxControl)))
	c.regs.Add(regs.FTTotalTxFrameCnt, 1)
	c.regs.Add(regs.FTTotalTxByteCnt, uint64(len(e.frame)))
	c.regs.Set(regs.FTTxFrameStatus1, regs.FPFrameLength.Put(0, uint64(len(e.frame)))|
		regs.FPTimestampID.Put(0, uint64(e.meta.TimestampID)))
	if id := e.meta.TimestampID; id >= proto.TimestampGPTP && id <= proto.TimestampMaxID {
		// Only stamped frames need SYSCOUNT at their stamp point.
		c.regs.Set(regs.FTTxTstamp(int(id)), c.clock.At(sof))
	}
	phy := c.phy
	c.mu.Unlock()

	if phy != nil {
		phy.Send(e.frame, sof.Add(c.cfg.TxLatency))
	}
	ok := true
	if timed {
		c.lineFree = start.Add(c.wireTime(PreambleLen + len(e.frame) + gap))
		if d := time.Until(c.lineFree); d > 0 {
			t := c.cfg.Timer.NewTimer(d)
			select {
			case <-t.C:
			case <-c.stop:
				t.Stop()
				ok = false
			}
		}
	}
	c.sending.Store(false)
	return ok
}
