package cable

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"go.uber.org/zap"

	"tsnsim/chip"
	"tsnsim/chip/proto"
	"tsnsim/chip/regs"
)

// SocketPort is a cable end carried over a socket: a Port that stands
// where a chip would, so that
//
//	cable.Connect(chipA, socketPort, cfg)
//
// joins chip A to whatever is at the other end of the socket (another
// tsnsim chip server's SocketPort, a QEMU guest NIC, any tool that speaks
// QEMU's -netdev stream or dgram framing).
//
// Frames chip A transmits cross the local cable (serialisation,
// propagation, faults) and reach ReceivePHY, which checks their FCS like
// a receiving PHY would, strips it and queues them for the socket writer.
// Frames read from the socket get an FCS appended and are sent into the
// chip.Wire the cable gave ConnectPHY, so they cross the local cable's
// other direction into chip A. A link between two chip servers is thus
// two cable segments joined store-and-forward at the socket: each
// segment models its own serialisation and propagation (see
// docs/cable-sockets.md).
type SocketPort struct {
	cfg  SocketEndConfig
	log  *zap.Logger
	addr net.Addr // bound local address (listen, dgram)

	ctx    context.Context // cancelled by Close: stops dials and waits
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
	closer func() error // closes the listener or the datagram socket

	wired chan struct{} // closed by the first ConnectPHY
	wire  chip.Wire     // set once, before wired is closed

	// lineFree is when the local line is free for the next frame read
	// from the socket; only the (single, sequential) reader uses it.
	lineFree time.Time

	mu      sync.Mutex
	cur     *socketPeer   // connected peer, nil while disconnected
	changed chan struct{} // closed and replaced when cur changes
	stats   SocketStats
}

// SocketStats is the accounting of a socket cable end. Every frame the
// cable hands to ReceivePHY ends in exactly one Tx counter after Close:
// TxOffered = TxFrames + TxBadFCS + TxRunt + TxLostDisconnected +
// TxQueueOverflow + TxWriteErrors. Every frame read from the socket is
// in RxFrames or one Rx drop counter.
type SocketStats struct {
	// Toward the socket (frames the local cable delivered to us).
	TxOffered          uint64 // frames handed to ReceivePHY
	TxFrames           uint64 // written to the socket, FCS stripped
	TxBytes            uint64 // their bytes, without FCS and framing
	TxBadFCS           uint64 // arrived with a bad FCS (cable bit error): dropped, as a receiving PHY would
	TxRunt             uint64 // nothing before the FCS: dropped
	TxLostDisconnected uint64 // no peer connected, or still queued when the peer went away or the port closed
	TxQueueOverflow    uint64 // the writer queue was full
	TxWriteErrors      uint64 // in a socket write that failed

	// From the socket (frames handed to the local cable).
	RxFrames    uint64 // handed to the cable with an FCS appended
	RxBytes     uint64 // their bytes as read, without FCS or padding
	RxPadded    uint64 // shorter than 60 bytes: zero-padded before the FCS, as a sending MAC does
	RxMalformed uint64 // zero-length frames (stream: the connection is closed)
	RxOversized uint64 // longer than MaxFrame (stream: the connection is closed)
	RxTruncated uint64 // stream closed in the middle of a frame
	RxForeign   uint64 // dgram: from an address other than the remote, dropped

	// Peers.
	Connects    uint64 // peers connected (accepted or dialled)
	Reconnects  uint64 // of those, after a previous peer went away
	Disconnects uint64 // peers that went away
	Rejected    uint64 // stream-listen: peers refused while another was connected
	DialErrors  uint64 // stream-connect: failed dials
	Connected   bool   // a peer is connected now (always true for dgram)
	Peer        string // its address, when connected
}

// socketPeer is one connected peer: the queue its writer goroutine
// drains into the socket.
type socketPeer struct {
	q      chan []byte // frames without FCS, for the writer
	closed bool        // q is closed; guarded by SocketPort.mu
	remote string
}

// OpenSocketEnd opens the socket cable end cfg describes: it binds the
// listener (stream-listen; a TCP listener with an empty host binds to
// 127.0.0.1) or the local datagram socket (dgram), or starts dialling
// (stream-connect, which keeps redialling with bounded exponential
// backoff). ctx bounds the opening only; the port then lives until
// Close. Frames are read from the socket only once a cable has called
// ConnectPHY. log may be nil.
func OpenSocketEnd(ctx context.Context, cfg SocketEndConfig, log *zap.Logger) (*SocketPort, error) {
	cfg.setDefaults()
	if log == nil {
		log = zap.NewNop()
	}
	pctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	p := &SocketPort{
		cfg:     cfg,
		log:     log.Named("socket-end").With(zap.Stringer("end", cfg)),
		ctx:     pctx,
		cancel:  cancel,
		wired:   make(chan struct{}),
		changed: make(chan struct{}),
	}
	var err error
	switch {
	case cfg.Mode == StreamListen && (cfg.Network == "unix" || cfg.Network == "tcp"):
		err = p.openListen(ctx)
	case cfg.Mode == StreamConnect && (cfg.Network == "unix" || cfg.Network == "tcp"):
		p.startDial()
	case cfg.Mode == Dgram && cfg.Network == "udp":
		err = p.openDgram(ctx)
	default:
		err = fmt.Errorf("cable: socket end %v: unsupported mode and network", cfg)
	}
	if err != nil {
		cancel()
		return nil, err
	}
	return p, nil
}

// ConnectPHY implements Port: w is where frames read from the socket go.
// Only the first call counts; a socket end belongs to one cable.
func (p *SocketPort) ConnectPHY(w chip.Wire) {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.wired:
		p.log.Warn("ConnectPHY called again: the socket end keeps its first cable")
	default:
		p.wire = w
		close(p.wired)
	}
}

// ReceivePHY implements Port: the cable delivers a frame (incl. FCS).
// It never blocks: the frame is checked, stripped of its FCS and queued
// for the socket writer, or dropped and counted.
func (p *SocketPort) ReceivePHY(frame []byte, _ time.Time) {
	runt := len(frame) <= proto.FCSLen
	badFCS := !runt && !proto.FCSValid(frame)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stats.TxOffered++
	switch {
	case runt:
		p.stats.TxRunt++
		return
	case badFCS:
		p.stats.TxBadFCS++
		return
	case p.cur == nil || p.cur.closed:
		p.stats.TxLostDisconnected++
		return
	}
	select {
	case p.cur.q <- frame[:len(frame)-proto.FCSLen]:
	default:
		p.stats.TxQueueOverflow++
	}
}

// Close stops the port's goroutines and closes its sockets; frames still
// queued are counted in TxLostDisconnected. It is safe to call more than
// once.
func (p *SocketPort) Close() error {
	var err error
	p.once.Do(func() {
		p.cancel()
		if p.closer != nil {
			if cerr := p.closer(); cerr != nil && !errors.Is(cerr, net.ErrClosed) {
				err = fmt.Errorf("cable: closing socket end %v: %w", p.cfg, cerr)
			}
		}
		p.wg.Wait()
		p.log.Debug("socket end closed")
	})
	return err
}

// Stats returns a snapshot of the port's counters.
func (p *SocketPort) Stats() SocketStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.statsLocked()
}

func (p *SocketPort) statsLocked() SocketStats {
	s := p.stats
	s.Connected = p.cur != nil && !p.cur.closed
	if s.Connected {
		s.Peer = p.cur.remote
	}
	return s
}

// Addr returns the bound local address: the listener's (stream-listen),
// the local datagram socket's (dgram), or the current connection's
// (stream-connect; nil while disconnected).
func (p *SocketPort) Addr() net.Addr {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.addr
}

// WaitConnected blocks until a peer is connected (at once for dgram),
// ctx is done or the port is closed.
func (p *SocketPort) WaitConnected(ctx context.Context) error {
	return p.waitFor(ctx, "a peer", func(s SocketStats) bool { return s.Connected })
}

// waitFor blocks until cond holds for the stats. It is woken by peer
// events (connect, disconnect, refusal, failed dial), so cond must
// depend on those only.
func (p *SocketPort) waitFor(ctx context.Context, what string, cond func(SocketStats) bool) error {
	for {
		p.mu.Lock()
		ok := cond(p.statsLocked())
		ch := p.changed
		p.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("cable: socket end %v: waiting for %s: %w", p.cfg, what, ctx.Err())
		case <-p.ctx.Done():
			return fmt.Errorf("cable: socket end %v: waiting for %s: %w", p.cfg, what, net.ErrClosed)
		}
	}
}

// attachLocked makes a peer current, unless one is already: it reports
// false then. Called with p.mu held.
func (p *SocketPort) attachLocked(remote string, local net.Addr) (*socketPeer, bool) {
	if p.cur != nil && !p.cur.closed {
		return nil, false
	}
	peer := &socketPeer{q: make(chan []byte, p.cfg.Queue), remote: remote}
	if p.stats.Connects > 0 {
		p.stats.Reconnects++
	}
	p.stats.Connects++
	p.cur = peer
	if local != nil {
		p.addr = local
	}
	p.notifyLocked()
	return peer, true
}

// detach ends peer: no more frames are queued for it and its writer
// drains what is left. It is idempotent.
func (p *SocketPort) detach(peer *socketPeer, clearAddr bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if peer.closed {
		return
	}
	peer.closed = true
	close(peer.q)
	p.stats.Disconnects++
	if p.cur == peer {
		p.cur = nil
		if clearAddr {
			p.addr = nil
		}
	}
	p.notifyLocked()
}

// peerEvent counts a peer event and wakes waitFor.
func (p *SocketPort) peerEvent(f func(*SocketStats)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	f(&p.stats)
	p.notifyLocked()
}

func (p *SocketPort) notifyLocked() {
	close(p.changed)
	p.changed = make(chan struct{})
}

// count updates the stats under the lock.
func (p *SocketPort) count(f func(*SocketStats)) {
	p.mu.Lock()
	f(&p.stats)
	p.mu.Unlock()
}

// waitWired blocks until a cable is connected; false if the port closed.
func (p *SocketPort) waitWired() bool {
	select {
	case <-p.wired:
		return true
	case <-p.ctx.Done():
		return false
	}
}

// newRxBuffer returns a buffer of n bytes with room for padding to the
// minimum frame length and the FCS, so deliver never reallocates.
func newRxBuffer(n int) []byte {
	return make([]byte, n, max(n, proto.MinFrameLen)+proto.FCSLen)
}

// deliver hands a frame read from the socket (without FCS; allocated by
// newRxBuffer and owned by the port) to the local cable: zero-padded to
// the minimum frame length, FCS appended, its start-of-frame placed on
// the local line's timeline. It blocks while the cable's queue is full,
// which pushes back on a stream peer.
func (p *SocketPort) deliver(frame []byte) {
	n := len(frame)
	padded := n < proto.MinFrameLen
	if padded {
		frame = frame[:proto.MinFrameLen] // capacity from newRxBuffer; zeros
	}
	wire := proto.AppendFCS(frame)
	sof := p.pace(len(wire))
	p.count(func(s *SocketStats) {
		s.RxFrames++
		s.RxBytes += uint64(n)
		if padded {
			s.RxPadded++
		}
	})
	p.wire.Send(wire, sof)
}

// pace returns the start-of-frame time of an n-byte frame (incl. FCS)
// sent onto the local cable now: after its preamble, and no earlier than
// the previous frame's end plus the inter-frame gap. The cable adds the
// frame's serialisation and propagation.
func (p *SocketPort) pace(n int) time.Time {
	now := time.Now()
	if p.cfg.LinkBitsPerSec < 0 {
		return now
	}
	byteTime := func(k int) time.Duration {
		return time.Duration(int64(k) * 8 * int64(time.Second) / p.cfg.LinkBitsPerSec)
	}
	start := now
	if p.lineFree.After(start) {
		start = p.lineFree
	}
	sof := start.Add(byteTime(chip.PreambleLen))
	p.lineFree = sof.Add(byteTime(n + regs.DefaultInterFrameGap))
	return sof
}

var _ Port = (*SocketPort)(nil)
