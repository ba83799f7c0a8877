// Package gptp runs IEEE 802.1AS (gPTP) over a driver core's hardware
// timestamps: one port per node, a grandmaster that sends two-step
// Sync/Follow_Up, and a follower that measures its offset and steers its
// PHC through adjtime/adjfine with a PI servo. Both ports measure the
// link delay with the peer-delay mechanism (Pdelay_Req, Pdelay_Resp,
// Pdelay_Resp_Follow_Up), neighbour rate ratio included. Messages go to
// 01:80:C2:00:00:0E with EtherType 0x88F7.
//
// The message layouts are github.com/facebook/time's ptp/protocol and the
// servo is its servo.PiServo (the code behind Meta's production PTP), not
// written here. Best-master selection (Announce, BMCA) is not run: the
// roles are configured, as in 802.1AS's external port configuration.
package gptp

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/facebook/time/ptp/protocol"
	"github.com/facebook/time/servo"
	"go.uber.org/zap"

	"tsnsim/driver"
	"tsnsim/host"
)

// Role is a port's configured role.
type Role int

// Roles.
const (
	Master Role = iota // grandmaster: sends Sync/Follow_Up
	Slave              // follows the master's time
)

// DestMAC is the 802.1AS destination (nearest bridge group address).
var DestMAC = net.HardwareAddr{0x01, 0x80, 0xc2, 0x00, 0x00, 0x0e}

// Defaults of 802.1AS: Sync every 125 ms (logSyncInterval -3), Pdelay_Req
// every second (logPdelayReqInterval 0).
const (
	DefaultSyncInterval   = 125 * time.Millisecond
	DefaultPdelayInterval = time.Second
	sdoID                 = 1 // majorSdoId (transportSpecific) of 802.1AS
	version               = 0x12
	rxQueue               = 256
	pathDelayWindow       = 8
)

// Config sets up a port.
type Config struct {
	Role           Role
	MAC            net.HardwareAddr // the node's MAC: source address and clock identity
	SyncInterval   time.Duration    // default DefaultSyncInterval
	PdelayInterval time.Duration    // default DefaultPdelayInterval
	// OnSample, if set, is called on the port's goroutine for every
	// offset the follower measures.
	OnSample func(Sample)
	Logger   *zap.Logger
}

// Sample is one follower measurement: at a Sync's reception.
type Sample struct {
	At        time.Time   // host time
	Offset    int64       // measured offset from master, ns (slave - master)
	PathDelay float64     // mean path delay in use, ns
	State     servo.State // servo state after the sample
	FreqPPB   float64     // frequency adjustment applied, ppb
}

// Stats counts a port's messages.
type Stats struct {
	Sent, Received   map[string]uint64 // by message type name
	Dropped          uint64            // received messages the port queue could not take
	StampErrors      uint64            // TX stamps not obtained (skipped, timed out, lost)
	Malformed        uint64            // frames that did not decode
	PathDelay        float64           // current mean path delay, ns (0: not measured)
	NeighborRate     float64           // neighbour rate ratio
	Syncs            uint64            // follower: offsets measured
	Steps            uint64            // follower: PHC steps (adjtime)
	PdelayExchanges  uint64
	LastOffset       int64
	LastServoState   servo.State
	LastFreqPPB      float64
	PdelayNoResponse uint64 // Pdelay_Req with no complete answer before the next
}

// Port is one gPTP port on a driver.
type Port struct {
	d    *driver.Driver
	cfg  Config
	log  *zap.Logger
	id   protocol.PortIdentity
	rx   chan rxMsg
	txc  chan driver.TxStamp
	pi   *servo.PiServo
	mu   sync.Mutex
	st   Stats
	seq  map[protocol.MessageType]uint16
	evq  []event // event messages waiting for the stamp register
	busy *event  // the event message whose stamp is awaited

	// peer delay (requester side)
	pdReqSeq         uint16
	t1, t2, t4       int64
	haveResp, pdDone bool
	prevT3, prevT4   int64
	havePrev         bool
	rate             float64
	delays           []float64
	pending          map[uint16]*pdResp // responder: Pdelay_Resp sent, awaiting stamp
	syncT2           map[uint16]int64   // follower: Sync RX stamps by sequence
	cookie           uint64
}

type rxMsg struct {
	b  []byte
	st driver.HWStamp
}

type event struct {
	kind    protocol.MessageType
	frame   []byte
	cookie  uint64
	stamped func(driver.HWStamp)
}

type pdResp struct{ req protocol.PDelayReq }

// New returns a port on d. Wire its Receive and TxStamped into the
// driver's TSN callbacks (the node's host backend does this), then Run it.
func New(d *driver.Driver, cfg Config) (*Port, error) {
	if cfg.SyncInterval <= 0 {
		cfg.SyncInterval = DefaultSyncInterval
	}
	if cfg.PdelayInterval <= 0 {
		cfg.PdelayInterval = DefaultPdelayInterval
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	cid, err := protocol.NewClockIdentity(cfg.MAC)
	if err != nil {
		return nil, fmt.Errorf("gptp: %w", err)
	}
	sc := servo.DefaultServoConfig()
	sc.FirstUpdate = true
	// Gains per Sync interval T: proportional 0.5/T, integral 0.0625/T
	// (the discrete loop's poles are a double 0.75 per Sync: critically
	// damped). servo's defaults (0.7, 0.3, ptp4l's) take tens of
	// seconds to settle at 8 Sync/s.
	pc := servo.DefaultPiServoCfg()
	pc.PiKpScale, pc.PiKiScale = 0.5/cfg.SyncInterval.Seconds(), 0.0625/cfg.SyncInterval.Seconds()
	pi := servo.NewPiServo(sc, pc, 0)
	pi.SetMaxFreq(float64(driver.MaxAdjScaledPPM) * 1000 / 65536)
	pi.SyncInterval(cfg.SyncInterval.Seconds())
	return &Port{
		d: d, cfg: cfg, log: cfg.Logger.Named("gptp"),
		id:      protocol.PortIdentity{ClockIdentity: cid, PortNumber: 1},
		rx:      make(chan rxMsg, rxQueue),
		txc:     make(chan driver.TxStamp, rxQueue),
		pi:      pi,
		seq:     map[protocol.MessageType]uint16{},
		pending: map[uint16]*pdResp{},
		syncT2:  map[uint16]int64{},
		rate:    1,
		st:      Stats{Sent: map[string]uint64{}, Received: map[string]uint64{}, NeighborRate: 1},
	}, nil
}

// IsPTP reports whether frame (no FCS) is an untagged PTP-over-Ethernet
// frame.
func IsPTP(frame []byte) bool {
	return len(frame) >= 14+34 && binary.BigEndian.Uint16(frame[12:]) == driver.EtherTypePTP
}

// Receive takes a received frame with its RX stamp. It reports whether
// the frame was a PTP frame (taken by the port, even if its queue was
// full: then counted in Stats.Dropped). It runs on the driver's SPI
// worker and does not block.
func (p *Port) Receive(frame []byte, st driver.HWStamp) bool {
	if !IsPTP(frame) {
		return false
	}
	select {
	case p.rx <- rxMsg{frame[14:], st}:
	default:
		p.mu.Lock()
		p.st.Dropped++
		p.mu.Unlock()
	}
	return true
}

// TxStamped takes the outcome of a TX stamp request; it reports whether
// it was the port's. It does not block.
func (p *Port) TxStamped(s driver.TxStamp) bool {
	if !IsPTP(s.Frame) {
		return false
	}
	select {
	case p.txc <- s:
	default:
		p.mu.Lock()
		p.st.StampErrors++
		p.mu.Unlock()
	}
	return true
}

// Stats returns a snapshot of the port's counters.
func (p *Port) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.st
	s.Sent, s.Received = map[string]uint64{}, map[string]uint64{}
	for k, v := range p.st.Sent {
		s.Sent[k] = v
	}
	for k, v := range p.st.Received {
		s.Received[k] = v
	}
	return s
}

// Run runs the port until ctx ends.
func (p *Port) Run(ctx context.Context) error {
	syncT := time.NewTicker(p.cfg.SyncInterval)
	defer syncT.Stop()
	pdT := time.NewTicker(p.cfg.PdelayInterval)
	defer pdT.Stop()
	p.sendPdelayReq(ctx)
	for {
		var syncC <-chan time.Time
		if p.cfg.Role == Master {
			syncC = syncT.C
		}
		select {
		case <-ctx.Done():
			return nil
		case <-syncC:
			p.sendSync(ctx)
		case <-pdT.C:
			p.sendPdelayReq(ctx)
		case m := <-p.rx:
			p.handle(ctx, m)
		case s := <-p.txc:
			p.stamped(ctx, s)
		}
	}
}

func (p *Port) header(t protocol.MessageType, length int, flags uint16, logInterval int8) protocol.Header {
	s := p.seq[t]
	p.seq[t] = s + 1
	return protocol.Header{
		SdoIDAndMsgType:    protocol.NewSdoIDAndMsgType(t, sdoID),
		Version:            version,
		MessageLength:      uint16(length),
		FlagField:          flags | protocol.FlagPTPTimescale,
		SourcePortIdentity: p.id,
		SequenceID:         s,
		LogMessageInterval: protocol.LogInterval(logInterval),
	}
}

// frame wraps a PTP message in an Ethernet header.
func (p *Port) frame(msg []byte) []byte {
	f := make([]byte, 14+len(msg))
	copy(f, DestMAC)
	copy(f[6:], p.cfg.MAC)
	binary.BigEndian.PutUint16(f[12:], driver.EtherTypePTP)
	copy(f[14:], msg)
	return f
}

func ts(ns int64) protocol.Timestamp {
	return protocol.NewTimestamp(time.Unix(0, ns))
}

func nsOf(t protocol.Timestamp) int64 {
	return int64(t.Seconds.Seconds())*1e9 + int64(t.Nanoseconds)
}

func (p *Port) count(m map[string]uint64, t protocol.MessageType) {
	p.mu.Lock()
	m[t.String()]++
	p.mu.Unlock()
}

// sendEvent queues an event message; event messages go out one at a
// time because they share FT_TX_TSTAMP1.
func (p *Port) sendEvent(ctx context.Context, kind protocol.MessageType, msg []byte, stamped func(driver.HWStamp)) {
	p.cookie++
	p.evq = append(p.evq, event{kind: kind, frame: p.frame(msg), cookie: p.cookie, stamped: stamped})
	p.nextEvent(ctx)
}

func (p *Port) nextEvent(ctx context.Context) {
	for p.busy == nil && len(p.evq) > 0 {
		e := p.evq[0]
		p.evq = p.evq[1:]
		if err := host.OfferStamped(ctx, p.d, e.frame, driver.StampRequest{Cookie: e.cookie}); err != nil {
			p.log.Debug("event message not sent", zap.Stringer("type", e.kind), zap.Error(err))
			continue
		}
		p.count(p.st.Sent, e.kind)
		p.busy = &e
	}
}

func (p *Port) sendGeneral(ctx context.Context, kind protocol.MessageType, msg []byte) {
	if err := host.Offer(ctx, p.d, p.frame(msg)); err != nil {
		p.log.Debug("general message not sent", zap.Stringer("type", kind), zap.Error(err))
		return
	}
	p.count(p.st.Sent, kind)
}

// stamped handles a TX stamp completion.
func (p *Port) stamped(ctx context.Context, s driver.TxStamp) {
	if p.busy == nil || s.Cookie != p.busy.cookie {
		return
	}
	e := p.busy
	p.busy = nil
	if s.Err != nil || !s.Stamp.Valid {
		p.mu.Lock()
		p.st.StampErrors++
		p.mu.Unlock()
		p.log.Debug("no TX stamp", zap.Stringer("type", e.kind), zap.Error(s.Err))
	} else {
		e.stamped(s.Stamp)
	}
	p.nextEvent(ctx)
}

// followUpTLVLen is the size of 802.1AS's Follow_Up information TLV
// (IEEE 802.1AS-2020 11.4.4.3), which every gPTP Follow_Up carries and
// ptp/protocol does not model: tlvType ORGANIZATION_EXTENSION, length 28,
// organizationId 00-80-C2, subtype 1, cumulativeScaledRateOffset,
// gmTimeBaseIndicator, lastGmPhaseChange, scaledLastGmFreqChange (all 0
// from a grandmaster whose time base never changed).
const followUpTLVLen = 32

// withFollowUpTLV puts the Follow_Up information TLV after the 44 bytes
// of a marshalled Follow_Up.
func withFollowUpTLV(b []byte) []byte {
	tlv := make([]byte, followUpTLVLen)
	binary.BigEndian.PutUint16(tlv[0:], 0x0003) // ORGANIZATION_EXTENSION
	binary.BigEndian.PutUint16(tlv[2:], 28)
	copy(tlv[4:], []byte{0x00, 0x80, 0xc2, 0x00, 0x00, 0x01})
	return append(b[:44:44], tlv...)
}

func marshal(pk protocol.Packet) []byte {
	b, err := protocol.Bytes(pk)
	if err != nil {
		panic(fmt.Sprintf("gptp: marshalling %v: %v", pk.MessageType(), err)) // fixed-size messages: cannot fail
	}
	return b
}

func (p *Port) sendSync(ctx context.Context) {
	h := p.header(protocol.MessageSync, 44, protocol.FlagTwoStep, int8(math.Round(math.Log2(p.cfg.SyncInterval.Seconds()))))
	msg := marshal(&protocol.SyncDelayReq{Header: h})
	seq := h.SequenceID
	p.sendEvent(ctx, protocol.MessageSync, msg, func(st driver.HWStamp) {
		fh := h
		fh.SdoIDAndMsgType = protocol.NewSdoIDAndMsgType(protocol.MessageFollowUp, sdoID)
		fh.FlagField = protocol.FlagPTPTimescale
		fh.SequenceID = seq
		fh.ControlField = 2
		fh.MessageLength = 44 + followUpTLVLen
		fu := &protocol.FollowUp{Header: fh, FollowUpBody: protocol.FollowUpBody{PreciseOriginTimestamp: ts(st.PHC)}}
		p.sendGeneral(ctx, protocol.MessageFollowUp, withFollowUpTLV(marshal(fu)))
	})
}

func (p *Port) sendPdelayReq(ctx context.Context) {
	if p.t1 != 0 && !p.pdDone {
		p.mu.Lock()
		p.st.PdelayNoResponse++
		p.mu.Unlock()
	}
	h := p.header(protocol.MessagePDelayReq, 54, 0, 0)
	h.ControlField = 5
	p.pdReqSeq = h.SequenceID
	p.t1, p.haveResp, p.pdDone = 0, false, false
	msg := marshal(&protocol.PDelayReq{Header: h})
	seq := h.SequenceID
	p.sendEvent(ctx, protocol.MessagePDelayReq, msg, func(st driver.HWStamp) {
		if p.pdReqSeq == seq {
			p.t1 = st.PHC
		}
	})
}

// handle decodes and acts on one received message.
func (p *Port) handle(ctx context.Context, m rxMsg) {
	pk, err := protocol.DecodePacket(m.b)
	if err != nil {
		p.mu.Lock()
		p.st.Malformed++
		p.mu.Unlock()
		return
	}
	p.count(p.st.Received, pk.MessageType())
	switch v := pk.(type) {
	case *protocol.PDelayReq:
		if !m.st.Valid {
			return
		}
		t2 := m.st.PHC
		h := p.header(protocol.MessagePDelayResp, 54, protocol.FlagTwoStep, 0x7f)
		h.ControlField = 5
		h.SequenceID = v.SequenceID
		resp := &protocol.PDelayResp{Header: h, PDelayRespBody: protocol.PDelayRespBody{
			RequestReceiptTimestamp: ts(t2), RequestingPortIdentity: v.SourcePortIdentity}}
		req := *v
		p.sendEvent(ctx, protocol.MessagePDelayResp, marshal(resp), func(st driver.HWStamp) {
			fh := p.header(protocol.MessagePDelayRespFollowUp, 54, 0, 0x7f)
			fh.ControlField = 5
			fh.SequenceID = req.SequenceID
			fu := &protocol.PDelayRespFollowUp{Header: fh, PDelayRespFollowUpBody: protocol.PDelayRespFollowUpBody{
				ResponseOriginTimestamp: ts(st.PHC), RequestingPortIdentity: req.SourcePortIdentity}}
			p.sendGeneral(ctx, protocol.MessagePDelayRespFollowUp, marshal(fu))
		})
	case *protocol.PDelayResp:
		if v.SequenceID != p.pdReqSeq || v.RequestingPortIdentity != p.id || !m.st.Valid {
			return
		}
		p.t2, p.t4, p.haveResp = nsOf(v.RequestReceiptTimestamp), m.st.PHC, true
	case *protocol.PDelayRespFollowUp:
		if v.SequenceID != p.pdReqSeq || v.RequestingPortIdentity != p.id || !p.haveResp || p.t1 == 0 {
			return
		}
		p.peerDelay(nsOf(v.ResponseOriginTimestamp) + int64(v.CorrectionField.Nanoseconds()))
	case *protocol.SyncDelayReq:
		if p.cfg.Role != Slave || v.MessageType() != protocol.MessageSync || !m.st.Valid {
			return
		}
		p.syncT2 = map[uint16]int64{v.SequenceID: m.st.PHC}
	case *protocol.FollowUp:
		if p.cfg.Role != Slave {
			return
		}
		t2, ok := p.syncT2[v.SequenceID]
		if !ok {
			return
		}
		delete(p.syncT2, v.SequenceID)
		t1 := nsOf(v.PreciseOriginTimestamp) + int64(v.CorrectionField.Nanoseconds())
		p.follow(t1, t2)
	}
}

// peerDelay completes one peer-delay exchange with t3.
func (p *Port) peerDelay(t3 int64) {
	t1, t2, t4 := p.t1, p.t2, p.t4
	if p.havePrev && t4 != p.prevT4 {
		if r := float64(t3-p.prevT3) / float64(t4-p.prevT4); math.Abs(r-1) < 1e-3 {
			p.rate = r
		}
	}
	p.prevT3, p.prevT4, p.havePrev = t3, t4, true
	d := (float64(t4-t1)*p.rate - float64(t3-t2)) / 2
	p.haveResp, p.pdDone = false, true
	if d < 0 || d > 1e6 {
		return
	}
	p.delays = append(p.delays, d)
	if len(p.delays) > pathDelayWindow {
		p.delays = p.delays[1:]
	}
	var sum float64
	for _, x := range p.delays {
		sum += x
	}
	p.mu.Lock()
	p.st.PathDelay = sum / float64(len(p.delays))
	p.st.NeighborRate = p.rate
	p.st.PdelayExchanges++
	p.mu.Unlock()
}

// follow is the follower's servo step for one Sync/Follow_Up pair.
func (p *Port) follow(t1, t2 int64) {
	p.mu.Lock()
	delay := p.st.PathDelay
	p.mu.Unlock()
	if delay == 0 {
		return // no path delay yet
	}
	offset := t2 - t1 - int64(math.Round(delay))
	freq, state := p.pi.Sample(offset, uint64(t2))
	var err error
	switch state {
	case servo.StateJump:
		err = p.d.PHCAdjtime(-offset)
		p.mu.Lock()
		p.st.Steps++
		p.mu.Unlock()
	case servo.StateLocked:
		err = p.d.PHCAdjfine(int64(math.Round(-freq * 65536 / 1000)))
		p.pi.UnsetFirstUpdate()
	}
	if err != nil && !errors.Is(err, driver.ErrNoClock) {
		p.log.Warn("PHC adjustment failed", zap.Error(err))
	}
	p.mu.Lock()
	p.st.Syncs++
	p.st.LastOffset, p.st.LastServoState, p.st.LastFreqPPB = offset, state, -freq
	p.mu.Unlock()
	if p.cfg.OnSample != nil {
		p.cfg.OnSample(Sample{At: time.Now(), Offset: offset, PathDelay: delay, State: state, FreqPPB: -freq})
	}
}

// Demux routes a driver's received frames and TX stamp outcomes: PTP
// frames to the port (once Set), everything else to Other/OtherStamp. It
// exists before the driver (whose callbacks it is) and the port (which
// needs the driver).
type Demux struct {
	port       atomic.Pointer[Port]
	Other      func(frame []byte, st driver.HWStamp) bool // nil: non-PTP frames are refused
	OtherStamp func(driver.TxStamp)
	ptp        atomic.Uint64 // PTP frames received
}

// Set attaches the port.
func (m *Demux) Set(p *Port) { m.port.Store(p) }

// Wire sets cfg's stamped callbacks to m.
func (m *Demux) Wire(cfg *driver.Config) {
	cfg.TSN.ReceiveStamped = m.Receive
	cfg.TSN.TxStamped = m.TxStamped
}

// Receive is the driver's ReceiveStamped.
func (m *Demux) Receive(frame []byte, st driver.HWStamp) bool {
	if p := m.port.Load(); p != nil && p.Receive(frame, st) {
		m.ptp.Add(1)
		return true
	}
	if m.Other != nil {
		return m.Other(frame, st)
	}
	return false
}

// TxStamped is the driver's TxStamped.
func (m *Demux) TxStamped(s driver.TxStamp) {
	if p := m.port.Load(); p != nil && p.TxStamped(s) {
		return
	}
	if m.OtherStamp != nil {
		m.OtherStamp(s)
	}
}

// PTPReceived returns how many PTP frames the port took.
func (m *Demux) PTPReceived() uint64 { return m.ptp.Load() }
