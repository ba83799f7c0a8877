package driver

import (
	"context"
	"sync/atomic"
	"time"

	"tsnsim/chip/clock"
	"tsnsim/chip/proto"
	"tsnsim/spibridge"
)

// TSNConfig turns on the driver's TSN features (design.md, "TSN"). Any
// of Timestamps, Taprio or PHC turns the SYSCOUNT model on.
type TSNConfig struct {
	Clock ClockConfig
	// PHC turns on the PTP hardware clock (PHCGettime and friends); the
	// other features use it and turn it on.
	PHC bool
	// Timestamps turns on hardware timestamps: TX stamps for frames
	// sent with TransmitStamped, RX stamps on every received frame.
	Timestamps bool
	// TxStampTimeout is how long after its write a TX stamp may take
	// (default DefaultTxStampTimeout, or the taprio horizon plus that
	// when longer); a stamp not read by then is counted in
	// TSNStats.TxStampTimeouts (ethtool's tx_hwtstamp_timeouts).
	TxStampTimeout time.Duration
	// TxLatency and RxLatency are the MAC+PHY latencies between the
	// chip's stamp point and the wire (chip.md section 5: 300 and 512 ns,
	// the defaults): reported stamps are when the frame's first bit
	// after the SFD crossed the wire, as linuxptp expects.
	TxLatency, RxLatency time.Duration
	// Taprio, if set, gives every frame the window of its class.
	Taprio *Taprio
	// LinkBitsPerSec is the link speed for wire times (default 100
	// Mbit/s).
	LinkBitsPerSec int64
	// SPI is the bus timing the taprio host-to-chip estimate uses
	// (default spibridge.DefaultTiming()).
	SPI spibridge.Timing
	// ReceiveStamped, if set, replaces Config.Receive: each received
	// frame comes with its RX stamp (skb_hwtstamps).
	ReceiveStamped func(frame []byte, rx HWStamp) bool
	// TxStamped is called on the SPI worker with the outcome of every
	// stamp request (skb_tstamp_tx); it must not block for long.
	TxStamped func(TxStamp)
}

// enabled reports whether any TSN feature is on.
func (c TSNConfig) enabled() bool {
	return c.Clock.Enabled || c.PHC || c.Timestamps || c.Taprio != nil
}

// DefaultTxStampTimeout bounds a TX stamp's wait.
const DefaultTxStampTimeout = 20 * time.Millisecond

// h2cBudget is the host-to-chip latency budget of chip.md section 5.
const h2cBudget = 30 * time.Microsecond

// TSNStats are the counters of the TSN features.
//
// Every stamp request ends in exactly one of TxStamps, TxStampSkipped,
// TxStampTimeouts, TxStampLost, or is pending (TxStampPending).
type TSNStats struct {
	TxStampRequests uint64 // TransmitStamped calls that took the frame
	TxStamps        uint64 // stamps read and reported
	TxStampSkipped  uint64 // the stamp register was busy (one request per register) or stamps are off
	TxStampTimeouts uint64 // tx_hwtstamp_timeouts: no stamp within TxStampTimeout
	TxStampLost     uint64 // the frame was not sent (TX error, drop, interface down)
	TxStampPending  int
	RxStamped       uint64 // frames handed up with an RX stamp
	RxUnstamped     uint64 // frames whose metadata entry was lost to a fault (handed up without)
	// XmitTransfers counts SPI transfers issued from Transmit (the
	// field mode's clock reads); the TSN features issue none.
	XmitTransfers uint64
	// Taprio per traffic class: frames given a window, frames dropped
	// because no window fitted within the horizon (also in TxDropped).
	TaprioScheduled [MaxTC]uint64
	TaprioDropped   [MaxTC]uint64
}

// txExtra is what a TSN frame on the ring carries besides its bytes.
type txExtra struct {
	stampID uint16 // 0: no stamp register reserved
	req     bool   // a stamp was requested
	skip    error  // requested but not possible
	cookie  uint64
	frame   []byte // copy, for the completion
	from    int64  // PHC time of the window's start (taprio), else 0
	sent    bool   // written with a stamp register reserved: poll for it (worker)
}

// tsnState is the driver's TSN state; fields under Driver.mu unless noted.
type tsnState struct {
	cfg    TSNConfig
	cursor int64 // taprio: predicted end (gap included) of the last frame given a window, PHC ns
	busy   [proto.TimestampMaxID + 1]bool
	stats  TSNStats
	done   []TxStamp // completions to report, outside the lock

	// Worker only.
	pend      []*pendingStamp
	lastStamp [proto.TimestampMaxID + 1]uint64
	lastKnown [proto.TimestampMaxID + 1]bool
	timer     *time.Timer
}

func (c *TSNConfig) setDefaults() {
	if c.LinkBitsPerSec <= 0 {
		c.LinkBitsPerSec = 100_000_000
	}
	if c.SPI == (spibridge.Timing{}) {
		c.SPI = spibridge.DefaultTiming()
	}
	if c.TxLatency == 0 {
		c.TxLatency = 300 * time.Nanosecond
	}
	if c.RxLatency == 0 {
		c.RxLatency = 512 * time.Nanosecond
	}
	if c.TxStampTimeout <= 0 {
		c.TxStampTimeout = DefaultTxStampTimeout
		if c.Taprio != nil {
			c.TxStampTimeout += c.Taprio.Horizon
		}
	}
	c.Clock.Enabled = true
	c.PHC = true
}

// setupTSN builds the TSN state of a new driver.
func (d *Driver) setupTSN() {
	if !d.cfg.TSN.enabled() {
		return
	}
	d.cfg.TSN.setDefaults()
	d.clk = newSysClock(d.cfg.TSN.Clock)
	d.phc = newPHC(d.clk.cfg.TickPeriod)
	d.tsn = &tsnState{cfg: d.cfg.TSN}
}

// xmitPath marks the contexts of transfers issued from Transmit.
type xmitPath struct{}

// xmitContext returns ctx marked as Transmit's.
func xmitContext(ctx context.Context) context.Context {
	return context.WithValue(ctx, xmitPath{}, true)
}

// countingTransport counts the transfers issued under an xmitContext.
type countingTransport struct {
	spibridge.Transport
	marked bool // XmitClockSPI: Transmit issues transfers (else no context is marked)
	xmit   atomic.Uint64
}

func (c *countingTransport) Transfer(ctx context.Context, tx, rx []byte) error {
	if c.marked && ctx.Value(xmitPath{}) != nil {
		c.xmit.Add(1)
	}
	return c.Transport.Transfer(ctx, tx, rx)
}

// TSNStats returns the TSN counters (zero when TSN is off, except
// XmitTransfers).
func (d *Driver) TSNStats() TSNStats {
	d.mu.Lock()
	var s TSNStats
	if d.tsn != nil {
		s = d.tsn.stats
	}
	d.mu.Unlock()
	s.XmitTransfers = d.ctr.xmit.Load()
	return s
}

// wireNS is how long a frame of wire bytes (incl. FCS) occupies the
// line from its preamble to its last FCS byte, and with the gap after.
func (t *tsnState) wireNS(wire int) (busy, withGap int64) {
	bps := t.cfg.LinkBitsPerSec
	return int64(preambleBytes+wire) * 8 * 1e9 / bps, int64(preambleBytes+wire+ifgBytes) * 8 * 1e9 / bps
}

// h2c estimates how long until the worker has written a frame of wire
// bytes queued behind ahead (bytes of each frame ahead on the ring): each
// write, and an RX metadata and frame read of the same size interleaved
// with it, plus the register work the worker may do first (a SYSCOUNT
// sample, and the reads of the stamp registers: 3 tear-safe 64-bit
// reads), plus the H2C budget.
func (t *tsnState) h2c(wire int, ahead []int) int64 {
	sp := t.cfg.SPI
	one := func(n int) time.Duration {
		return sp.Duration(proto.TxWriteHeader+n) + sp.Duration(proto.RxMetaReadLen) + sp.Duration(proto.ReadDataStart+n)
	}
	total := one(wire) + h2cBudget + 9*sp.Duration(proto.RegReadLen)
	for _, n := range ahead {
		total += one(n)
	}
	return int64(total)
}

// tsnMeta fills the TSN parts of a frame's metadata: the vendor's
// priority, the taprio windows and the stamp request. Called with d.mu
// held; on error the frame is dropped by the caller.
func (d *Driver) tsnMeta(frame []byte, wire int, meta proto.TxMetadata, req *StampRequest) (proto.TxMetadata, *txExtra, error) {
	t := d.tsn
	prio, mp := Classify(frame)
	meta.From.Priority, meta.To.Priority, meta.DelayFrom.Priority, meta.DelayTo.Priority = mp, mp, mp, mp
	x := &txExtra{}
	if tp := t.cfg.Taprio; tp != nil {
		c := int(tp.Map[prio])
		nowTicks, ok := d.SysCountModel(time.Now())
		if !ok {
			t.stats.TaprioDropped[c]++
			return meta, nil, ErrNoClock
		}
		ph := d.phc.get()
		now := ph.at(nowTicks)
		ahead := make([]int, 0, d.queued+d.inFlight)
		for i := range d.queued {
			ahead = append(ahead, len(d.ring[(d.head+i)%len(d.ring)].mosi)-proto.TxWriteHeader)
		}
		for range d.inFlight {
			ahead = append(ahead, wire) // being written: unknown size, guess alike
		}
		busy, withGap := t.wireNS(wire)
		earliest := max(now+t.h2c(wire, ahead), t.cursor)
		limit := now + min(int64(tp.Horizon), maxHorizonNS(ph))
		from, to, closeAt, ok := tp.window(c, earliest, busy, limit)
		if !ok {
			t.stats.TaprioDropped[c]++
			return meta, nil, ErrNoWindow
		}
		meta.From.Tick, meta.To.Tick = ceilTick(ph, from), clock.Low29(ph.ticks(to))
		meta.DelayFrom, meta.DelayTo = meta.From, meta.To
		meta.FailPolicy = proto.FailDrop
		if tp.FailPolicy[c] == proto.FailRetry {
			if df, dt, _, ok := tp.window(c, closeAt, busy, closeAt+min(int64(tp.Horizon), maxHorizonNS(ph))/2); ok {
				meta.DelayFrom.Tick, meta.DelayTo.Tick = ceilTick(ph, df), clock.Low29(ph.ticks(dt))
				meta.FailPolicy = proto.FailRetry
			}
		}
		t.cursor = from + withGap
		t.stats.TaprioScheduled[c]++
		x.from = from
	}
	if req != nil {
		x.req, x.cookie, x.frame = true, req.Cookie, append([]byte(nil), frame...)
		id := proto.TimestampNormal
		if IsPTPEvent(frame) {
			id = proto.TimestampGPTP
		}
		switch {
		case !t.cfg.Timestamps:
			x.skip = ErrStampsOff
		case t.busy[id]:
			x.skip = ErrStampBusy
		default:
			t.busy[id] = true
			x.stampID = id
			meta.TimestampID = id
		}
	}
	return meta, x, nil
}

// ceilTick is the 29-bit tick of the first SYSCOUNT value at which the
// PHC has reached ns.
func ceilTick(ph phcMath, ns int64) uint32 {
	t := ph.ticks(ns)
	if ph.at(t) < ns {
		t++
	}
	return clock.Low29(t)
}

// maxHorizonTicks keeps windows within half the 29-bit tick range, where
// the chip still reads them as ahead.
const maxHorizonTicks = 1 << 28

func maxHorizonNS(ph phcMath) int64 { return (maxHorizonTicks - 1<<20) * ph.period }
