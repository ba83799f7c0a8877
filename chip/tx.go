package chip

import (
	"time"

	"go.uber.org/zap"

	"tsnsim/chip/clock"
	"tsnsim/chip/proto"
	"tsnsim/chip/regs"
	"tsnsim/rtimer"
)

// transmitter is the scheduler and transmitter: it takes frames from the
// host FIFO in order, holds the head frame until its window opens, drops
// or delays it when its window has passed (fail_policy), and serialises
// released frames onto the wire at link speed.
//
// It looks at the host FIFO only once the line is free (lineFree), as a
// transmitter that waits out each frame's wire time; but when the FIFO
// is empty after a frame it does not wait for the line on a timer of
// its own: it waits for work, and a frame written before the line is
// free then waits for the line. An idle link thus costs no wake-up per
// frame beyond the one that brings the next frame.
func (c *Chip) transmitter() {
	defer close(c.done)
	c.log.Debug("transmitter started")
	defer c.log.Debug("transmitter stopped")
	var line *rtimer.Timer // waits for lineFree, reused
	defer func() {
		if line != nil {
			line.Stop()
		}
	}()
	for {
		if !c.waitLine(&line) {
			return
		}
		e, st, ok, wait := c.takeNext()
		if !ok {
			if !c.waitForWork(wait) {
				return
			}
			continue
		}
		c.finishSend(&e, st)
		if !st.more && !c.waitForWork(0) {
			return
		}
	}
}

// takeNext takes the frame to send now off the host FIFO and starts it
// (schedule, startSend), under c.mu; or it reports how long to wait, as
// schedule.
func (c *Chip) takeNext() (e txEntry, st sendStart, ok bool, wait time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok, wait = c.schedule(); ok {
		st = c.startSend(&e)
	}
	return e, st, ok, wait
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
	c.host.Discard()
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

// sendStart is what startSend decided about a frame, for finishSend.
type sendStart struct {
	sof  time.Time // first byte after the preamble leaves the MAC
	phy  Wire
	more bool // the host FIFO held more frames
}

// startSend begins serialising one frame, preamble, frame, inter-frame
// gap, in the same critical section that scheduled it: it counts it,
// stamps it and sets lineFree. The frame is stamped when its first byte
// after the preamble leaves the MAC (the IEEE 802.1AS message timestamp
// point); it reaches the wire TxLatency later (finishSend). Frames are
// scheduled on the line's own timeline: a frame starts when the previous
// one's gap ends (lineFree) or when it became ready (queued, TSN enabled,
// window open), whichever is later. A timer that wakes late in real time
// thus delays the transmitter goroutine but not the frames' emulated
// start times (by at most maxBackdate); in virtual time the goroutine
// wakes exactly then and nothing changes. Called with c.mu held.
func (c *Chip) startSend(e *txEntry) sendStart {
	timed := c.cfg.LinkBitsPerSec > 0
	start := c.now()
	if timed {
		start = later(later(c.lineFree, e.ready), start.Add(-c.maxBackdate()))
	}
	sof := start
	if timed {
		sof = start.Add(c.wireTime(PreambleLen))
	}

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
	if timed {
		c.lineFree = start.Add(c.wireTime(PreambleLen + len(e.frame) + gap))
	}
	more := c.host.Len() > 0
	if timed && !more {
		// Kicks sent so far (under c.mu) are about what this looks at:
		// taken now, so the empty FIFO is not looked at again, after a
		// line wait, for a kick that was already served. (Without line
		// timing a stale kick costs one look, no wait; a busy FIFO keeps
		// the kick pending, which writers then find full at no cost.)
		select {
		case <-c.kick:
		default:
		}
	}
	return sendStart{sof: sof, phy: c.phy, more: more}
}

// finishSend hands the frame started by startSend to the wire.
func (c *Chip) finishSend(e *txEntry, st sendStart) {
	if st.phy != nil {
		at := st.sof
		if c.cfg.TxLatency != 0 {
			at = at.Add(c.cfg.TxLatency) // skipped at 0, as Add is not free (about 75 instructions; issue 13)
		}
		st.phy.Send(e.frame, at)
	}
	c.sending.Store(false)
}

// waitLine waits until the line is free for the next preamble (lineFree;
// at once with serialisation timing off), through *t, which it creates
// on first use. It reports false if the chip stopped meanwhile.
func (c *Chip) waitLine(t **rtimer.Timer) bool {
	if c.cfg.LinkBitsPerSec <= 0 {
		return true
	}
	d := time.Until(c.lineFree)
	if d <= 0 {
		return true
	}
	if *t == nil {
		*t = c.cfg.Timer.NewTimer(d)
	} else {
		(*t).Reset(d)
	}
	select {
	case <-(*t).C:
		return true
	case <-c.stop:
		return false
	}
}

// transmitting reports whether the transmitter is serialising a frame:
// handing it to the wire, or its preamble, bytes or gap still on the
// line. Called with c.mu held.
func (c *Chip) transmitting() bool {
	return c.sending.Load() || (c.cfg.LinkBitsPerSec > 0 && time.Now().Before(c.lineFree))
}
