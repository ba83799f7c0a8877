package driver

import (
	"context"
	"encoding/binary"
	"errors"
	"time"

	"go.uber.org/zap"

	"tsnsim/chip/proto"
	"tsnsim/chip/regs"
)

// Hardware timestamps.
//
// TX: TransmitStamped queues a frame with a stamp request. gPTP event
// messages (IsPTPEvent) use timestamp_id 1, every other frame 2, as the
// vendor driver does. Each FT_TX_TSTAMPn register holds the stamp of the
// last frame sent with its id, so at most one request per register is
// outstanding; a request that finds its register busy sends the frame
// without a stamp (TSNStats.TxStampSkipped, reported with ErrStampBusy,
// like igb's tx_hwtstamp_skipped). The worker reads the register before
// writing a stamped frame (unless it knows the value from the last stamp),
// then, after the write, polls it (from when the frame is due on the
// wire: its window and its wire time, then 20 us doubling to 1 ms) until
// it changes; the new value is the frame's stamp. A stamp not seen
// within TxStampTimeout is reported with ErrStampTimeout and counted
// (tx_hwtstamp_timeouts); the register's value is then unknown and read
// again before the next request.
//
// RX: every frame is handed up with the timestamp of its rx_metadata
// entry (frames whose entry was lost to an SPI fault have none).
//
// Both are converted to PHC time and moved from the chip's stamp point
// (chip.md: the first byte after the preamble, TX when it leaves the MAC,
// RX after the receiving PHY and MAC) to the wire: TX + TxLatency, RX -
// RxLatency. So RX stamp - TX stamp of one frame is the cable's
// propagation delay (when both PHCs agree).

// Errors of stamp completions.
var (
	ErrStampBusy    = errors.New("driver: TX stamp register busy with an earlier request; frame sent unstamped")
	ErrStampsOff    = errors.New("driver: hardware timestamps are off")
	ErrStampTimeout = errors.New("driver: TX stamp not seen in time (tx_hwtstamp_timeouts)")
	ErrStampLost    = errors.New("driver: frame with a stamp request was not sent")
)

// StampRequest asks for a TX stamp; Cookie comes back with it.
type StampRequest struct{ Cookie uint64 }

// HWStamp is a hardware timestamp: PHC ns at the wire, and the raw
// SYSCOUNT value the chip gave.
type HWStamp struct {
	PHC   int64
	Ticks uint64
	Valid bool
}

// TxStamp is the outcome of a stamp request (skb_tstamp_tx).
type TxStamp struct {
	Cookie uint64
	Frame  []byte // the frame as offered
	ID     uint16 // timestamp_id used (0: none)
	Stamp  HWStamp
	Err    error // nil when Stamp is valid
}

// IsPTPEvent reports whether frame (no FCS) is a PTP event message over
// Ethernet: EtherType 0x88F7 (optionally VLAN-tagged) with messageType
// Sync, Delay_Req, Pdelay_Req or Pdelay_Resp (0-3).
func IsPTPEvent(frame []byte) bool {
	off := 12
	if len(frame) >= 18 && binary.BigEndian.Uint16(frame[12:]) == 0x8100 {
		off = 16
	}
	if len(frame) < off+3 || binary.BigEndian.Uint16(frame[off:]) != EtherTypePTP {
		return false
	}
	return frame[off+2]&0x0f <= 3
}

// TransmitStamped is Transmit with a TX stamp request (SKBTX_HW_TSTAMP);
// the outcome comes to TSNConfig.TxStamped. A frame refused (ErrBusy) or
// dropped at once carries no request.
func (d *Driver) TransmitStamped(frame []byte, req StampRequest) error {
	return d.transmit(frame, &req)
}

type pendingStamp struct {
	id       uint16
	x        *txExtra
	prev     uint64
	prevOK   bool
	next     time.Time
	gap      time.Duration
	deadline time.Time
}

const (
	firstStampGap = 20 * time.Microsecond
	maxStampGap   = time.Millisecond
)

// tsnTxDone is the finishTx hook (d.mu held): a sent stamped frame
// starts its stamp wait; anything else completes its request.
func (d *Driver) tsnTxDone(s txSlot, sent bool) {
	x := s.x
	if x == nil || !x.req {
		return
	}
	t := d.tsn
	t.stats.TxStampRequests++
	switch {
	case sent && x.stampID != 0 && !d.up:
		// Written as the interface went down: nobody polls for it.
		t.busy[x.stampID] = false
		t.stats.TxStampLost++
		t.done = append(t.done, TxStamp{Cookie: x.cookie, Frame: x.frame, Err: ErrStampLost})
	case !sent:
		if x.stampID != 0 {
			t.busy[x.stampID] = false
		}
		t.stats.TxStampLost++
		t.done = append(t.done, TxStamp{Cookie: x.cookie, Frame: x.frame, Err: ErrStampLost})
	case x.skip != nil:
		t.stats.TxStampSkipped++
		t.done = append(t.done, TxStamp{Cookie: x.cookie, Frame: x.frame, Err: x.skip})
	default:
		t.stats.TxStampPending++
		x.sent = true
	}
}

// beforeStampedWrite reads the stamp register a frame will change, unless
// its value is known (worker).
func (w *worker) beforeStampedWrite(s txSlot) *pendingStamp {
	if s.x == nil || s.x.stampID == 0 {
		return nil
	}
	t := w.d.tsn
	id := s.x.stampID
	p := &pendingStamp{id: id, x: s.x}
	if t.lastKnown[id] {
		p.prev, p.prevOK = t.lastStamp[id], true
	} else if v, err := w.d.read64(w.ctx, regs.FTTxTstamp(int(id))); err == nil {
		p.prev, p.prevOK = v, true
	} else {
		w.failed("TX stamp register read", err)
	}
	return p
}

// stampWritten starts polling for a stamped frame just written.
func (w *worker) stampWritten(p *pendingStamp) {
	if p == nil || !p.x.sent {
		return
	}
	d, t := w.d, w.d.tsn
	now := time.Now()
	due := now
	if p.x.from != 0 {
		if h, ok := d.PHCHostTime(p.x.from); ok && h.After(due) {
			due = h
		}
	}
	_, withGap := t.wireNS(len(p.x.frame) + proto.FCSLen)
	p.next = due.Add(time.Duration(withGap))
	p.gap = firstStampGap
	p.deadline = now.Add(t.cfg.TxStampTimeout)
	t.pend = append(t.pend, p)
}

// pollStamps reads the stamp registers whose poll is due; it reports
// false when a read failed.
func (w *worker) pollStamps() bool {
	t := w.d.tsn
	if t == nil || len(t.pend) == 0 {
		return true
	}
	now := time.Now()
	ok := true
	keep := t.pend[:0]
	for _, p := range t.pend {
		if now.Before(p.next) {
			keep = append(keep, p)
			continue
		}
		v, err := w.d.read64(w.ctx, regs.FTTxTstamp(int(p.id)))
		switch {
		case err != nil:
			w.failed("TX stamp poll", err)
			ok = false
		case p.prevOK && v != p.prev, !p.prevOK && v != 0:
			w.completeStamp(p, v)
			continue
		}
		if !time.Now().Before(p.deadline) {
			w.timeoutStamp(p)
			continue
		}
		p.next = time.Now().Add(p.gap)
		p.gap = min(2*p.gap, maxStampGap)
		keep = append(keep, p)
	}
	clear(t.pend[len(keep):])
	t.pend = keep
	w.d.flushStamps()
	return ok
}

func (w *worker) completeStamp(p *pendingStamp, v uint64) {
	d, t := w.d, w.d.tsn
	t.lastStamp[p.id], t.lastKnown[p.id] = v, true
	st := HWStamp{PHC: d.PHCTime(v) + int64(t.cfg.TxLatency), Ticks: v, Valid: true}
	d.mu.Lock()
	t.busy[p.id] = false
	t.stats.TxStampPending--
	t.stats.TxStamps++
	t.done = append(t.done, TxStamp{Cookie: p.x.cookie, Frame: p.x.frame, ID: p.id, Stamp: st})
	d.mu.Unlock()
}

func (w *worker) timeoutStamp(p *pendingStamp) {
	d, t := w.d, w.d.tsn
	t.lastKnown[p.id] = false
	d.log.Debug("TX stamp timed out", zap.Uint16("id", p.id), zap.Uint64("cookie", p.x.cookie))
	d.mu.Lock()
	t.busy[p.id] = false
	t.stats.TxStampPending--
	t.stats.TxStampTimeouts++
	t.done = append(t.done, TxStamp{Cookie: p.x.cookie, Frame: p.x.frame, ID: p.id, Err: ErrStampTimeout})
	d.mu.Unlock()
}

// flushStamps reports the completed requests, outside the lock.
func (d *Driver) flushStamps() {
	if d.tsn == nil {
		return
	}
	d.mu.Lock()
	done := d.tsn.done
	d.tsn.done = nil
	d.mu.Unlock()
	if cb := d.tsn.cfg.TxStamped; cb != nil {
		for _, s := range done {
			cb(s)
		}
	}
}

// stopStamps completes the requests still pending when the interface
// goes down (TxStampLost) and forgets the registers' values.
func (d *Driver) stopStamps() {
	t := d.tsn
	if t == nil {
		return
	}
	d.mu.Lock()
	for _, p := range t.pend {
		t.busy[p.id] = false
		t.stats.TxStampPending--
		t.stats.TxStampLost++
		t.done = append(t.done, TxStamp{Cookie: p.x.cookie, Frame: p.x.frame, ID: p.id, Err: ErrStampLost})
	}
	t.pend = nil
	t.lastKnown = [proto.TimestampMaxID + 1]bool{}
	t.cursor = 0
	d.mu.Unlock()
	d.flushStamps()
}

// read64 reads a 64-bit register tear-safe: H, L, H, and L again under
// a new H.
func (d *Driver) read64(ctx context.Context, off uint16) (uint64, error) {
	hi, err := d.ReadRegister(ctx, off)
	if err != nil {
		return 0, err
	}
	lo, err := d.ReadRegister(ctx, off+4)
	if err != nil {
		return 0, err
	}
	hi2, err := d.ReadRegister(ctx, off)
	if err != nil {
		return 0, err
	}
	if hi2 != hi {
		if lo, err = d.ReadRegister(ctx, off+4); err != nil {
			return 0, err
		}
	}
	return uint64(hi2)<<32 | uint64(lo), nil
}

// rxStamp converts an rx_metadata timestamp to a reported stamp.
func (d *Driver) rxStamp(ticks uint64, ok bool) HWStamp {
	if d.tsn == nil || !d.tsn.cfg.Timestamps || !ok {
		return HWStamp{}
	}
	return HWStamp{PHC: d.PHCTime(ticks) - int64(d.tsn.cfg.RxLatency), Ticks: ticks, Valid: true}
}

// tsnRound is the worker's TSN work at the top of each round: the clock
// sample if due and the stamp polls. It reports false when a transfer
// failed.
func (w *worker) tsnRound() bool {
	if w.d.clk == nil {
		return true
	}
	ok := w.sampleClock()
	ok = w.pollStamps() && ok
	w.d.flushStamps()
	return ok
}

// tsnWake returns a channel that fires at the worker's next TSN deadline
// (nil: nothing to do).
func (w *worker) tsnWake() <-chan time.Time {
	d := w.d
	if d.clk == nil {
		return nil
	}
	next := d.clk.next
	if d.clk.stale {
		next = time.Now()
	}
	for _, p := range d.tsn.pend {
		if p.next.Before(next) {
			next = p.next
		}
	}
	dur := max(time.Until(next), time.Nanosecond)
	t := d.tsn
	if t.timer == nil {
		t.timer = time.NewTimer(dur)
	} else {
		t.timer.Reset(dur)
	}
	return t.timer.C
}
