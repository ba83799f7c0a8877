package socket

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"tsnsim/spibridge"
)

// Defaults of ServerConfig fields left zero.
const (
	DefaultServerMaxConns       = 8
	DefaultServerMaxDriverConns = 4
	DefaultServerMaxPending     = 32
	DefaultServerMaxInFlight    = 16
	DefaultServerHelloTimeout   = 5 * time.Second
	DefaultServerMessageTimeout = 5 * time.Second
	DefaultServerIdleTimeout    = 30 * time.Second
	DefaultServerWriteTimeout   = 5 * time.Second
)

// acceptBackoffMax bounds the wait after a failed Accept (EMFILE...).
const acceptBackoffMax = time.Second

// ServerConfig sets up a Server. Zero fields take the defaults above.
type ServerConfig struct {
	// Name is the chip's name: in logs and in the server hello.
	Name   string
	Logger *zap.Logger
	// Timing is the bus timing the server advertises when the transport
	// has no Timing() method (an *InProcess has one, and it wins).
	Timing spibridge.Timing
	// MaxConns bounds the register-only connections (tools such as
	// tsnsim regs) served at once; more are refused with an error
	// message. They never take a driver's slot.
	MaxConns int
	// MaxDriverConns bounds the connections of drivers (a hello that asks
	// for interrupts or says it belongs to a driver) served at once,
	// apart from MaxConns. A driver uses two: one driver, and one that
	// takes over from it, fit in the default.
	MaxDriverConns int
	// MaxPending bounds the connections accepted whose hello has not
	// arrived yet; more are closed at once, unanswered, so a flood of
	// connections costs no more than this many goroutines and buffers.
	MaxPending int
	// IRQLevel, if set, reports whether the chip's interrupt line is
	// asserted (frames waiting). A connection that subscribes to
	// interrupts is sent one interrupt message at once if it is; without
	// IRQLevel it is sent one in any case (a spurious edge is harmless,
	// a lost one is not).
	IRQLevel func() bool
	// MaxInFlight bounds the requests in flight on one connection (at
	// most MaxInFlight); a request over it is answered EBUSY.
	MaxInFlight int
	// HelloTimeout bounds the wait for a client's hello.
	HelloTimeout time.Duration
	// MessageTimeout bounds each later message once its first byte has
	// arrived: a client that stops inside a message is disconnected.
	MessageTimeout time.Duration
	// IdleTimeout disconnects a connection that sends nothing for this
	// long and holds no interrupt subscription (nor belongs to a client
	// that holds one, or drives the chip): a register tool that went
	// quiet gives its slot back.
	IdleTimeout time.Duration
	// WriteTimeout bounds each write to a client; a client that does not
	// read its results for this long is disconnected.
	WriteTimeout time.Duration
}

func (c *ServerConfig) setDefaults() {
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	if c.MaxConns <= 0 {
		c.MaxConns = DefaultServerMaxConns
	}
	if c.MaxDriverConns <= 0 {
		c.MaxDriverConns = DefaultServerMaxDriverConns
	}
	if c.MaxPending <= 0 {
		c.MaxPending = DefaultServerMaxPending
	}
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = DefaultServerMaxInFlight
	}
	c.MaxInFlight = min(c.MaxInFlight, MaxInFlight)
	if c.HelloTimeout <= 0 {
		c.HelloTimeout = DefaultServerHelloTimeout
	}
	if c.MessageTimeout <= 0 {
		c.MessageTimeout = DefaultServerMessageTimeout
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = DefaultServerIdleTimeout
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = DefaultServerWriteTimeout
	}
}

// ServerStats is the accounting of one Server.
type ServerStats struct {
	Accepted uint64 // connections admitted to a pool after their hello
	Active   int    // connections being served now
	Refused  uint64 // connections refused: a pool (MaxConns, MaxDriverConns) or MaxPending full
	// Takeovers counts drivers replaced by a client that asked to take
	// the chip over; HeldRefused the driver transfers refused because
	// another client drives the chip.
	Takeovers, HeldRefused uint64
	Closed                 uint64 // connections ended: admitted ones, and those that failed their hello
	// ProtocolErrors counts connections closed because the client broke
	// the protocol, by reason ("short message", "oversized length", ...).
	ProtocolErrors map[string]uint64
	// IOErrors counts connections that ended on an I/O error (a reset,
	// a failed or timed-out write) rather than an orderly close.
	IOErrors   uint64
	Requests   uint64 // transfer requests answered (any status)
	Failed     uint64 // requests answered with an error status (busy included)
	Busy       uint64 // requests over the in-flight bound, answered EBUSY
	Interrupts uint64 // interrupt messages sent, all connections
}

// timedTransport is a transport that knows its bus timing (*InProcess).
type timedTransport interface{ Timing() spibridge.Timing }

// Server serves one chip's SPI bus and interrupt line to socket clients.
// Every request of every connection goes through the one Transport, so
// requests queue on the bus exactly as in-process; interrupt edges are
// fanned out to the connections that asked for them. A client going
// away changes no chip state. Close stops it; it does not close the
// transport.
type Server struct {
	tr     spibridge.Transport
	cfg    ServerConfig
	timing spibridge.Timing
	log    *zap.Logger

	mu        sync.Mutex
	closed    bool
	listeners map[net.Listener]struct{}
	conns     map[*serverConn]struct{}
	pending   map[net.Conn]struct{}    // connections waiting for their hello (or being refused)
	nDriver   int                      // connections in conns that belong to drivers
	subs      map[*serverConn]struct{} // connections that want interrupts
	fan       *fanout                  // running while subs is not empty
	irqLatch  bool                     // an edge arrived with no subscriber
	owner     *chipOwner               // the driver of the chip, nil when none
	ownerKey  atomic.Uint64            // owner's key, 0 when none: the hot path's check
	nextAnon  uint64                   // keys of connections that did not identify
	stats     ServerStats

	refusedWarn, brokenWarn, heldLog warnLimiter
	wg                               sync.WaitGroup // Serve and ServeConn calls

	requests, failed, busy, interrupts atomic.Uint64
}

// errServerClosed is returned by Serve and ServeConn after Close.
var errServerClosed = fmt.Errorf("spibridge: socket server closed: %w", net.ErrClosed)

// NewServer returns a server of tr, normally the chip's *InProcess bus,
// so that the SPI timing model and timeouts apply exactly as in-process.
func NewServer(tr spibridge.Transport, cfg ServerConfig) *Server {
	cfg.setDefaults()
	t := cfg.Timing
	if tt, ok := tr.(timedTransport); ok {
		t = tt.Timing()
	}
	return &Server{
		tr: tr, cfg: cfg, timing: t,
		log:       cfg.Logger.Named("socket").With(zap.String("chip", cfg.Name)),
		listeners: map[net.Listener]struct{}{},
		conns:     map[*serverConn]struct{}{},
		pending:   map[net.Conn]struct{}{},
		subs:      map[*serverConn]struct{}{},
		stats:     ServerStats{ProtocolErrors: map[string]uint64{}},
	}
}

// Serve accepts connections on ln and serves each in its own goroutine
// until ctx is done or Close is called; then it closes ln and the
// connections it accepted, waits for them, and returns nil. A listener
// that fails otherwise is an error.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		ln.Close()
		return errServerClosed
	}
	s.listeners[ln] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, ln)
		s.mu.Unlock()
	}()

	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(sctx, func() { ln.Close() })
	defer stop()
	var conns sync.WaitGroup
	defer conns.Wait()
	defer cancel() // before conns.Wait: end the connections of this Serve

	log := s.log.With(zap.Stringer("listen", ln.Addr()))
	log.Info("serving SPI bus")
	defer log.Info("stopped serving SPI bus")
	defer s.refusedWarn.flush(log, "connections refused")
	defer s.brokenWarn.flush(log, "connections closed")
	backoff := 5 * time.Millisecond
	for {
		nc, err := ln.Accept()
		if err != nil {
			if sctx.Err() != nil || s.isClosed() {
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return fmt.Errorf("spibridge: socket server: listener closed under it: %w", err)
			}
			log.Warn("accept failed, retrying", zap.Error(err), zap.Duration("backoff", backoff))
			if !socketSleep(sctx, backoff) {
				return nil
			}
			backoff = min(2*backoff, acceptBackoffMax)
			continue
		}
		backoff = 5 * time.Millisecond
		// Refused here, in the accept loop, when too many connections
		// wait for their hello: a flood then holds one descriptor at a
		// time instead of one per goroutine not yet run.
		if s.enterPending(nc) != nil {
			continue
		}
		conns.Go(func() { s.serveConn(sctx, nc) })
	}
}

// socketSleep waits d; false if ctx ended first.
func socketSleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// ServeConn serves one connection until the client goes away, ctx is
// done or Close is called, and closes it. It returns nil for an orderly
// end, a *ProtocolError if the client broke the protocol or could not be
// served (the connection is closed after an error message; other
// connections are not affected), or the I/O error that ended the
// connection.
func (s *Server) ServeConn(ctx context.Context, nc net.Conn) error {
	if err := s.enterPending(nc); err != nil {
		return err
	}
	return s.serveConn(ctx, nc)
}

// serveConn is ServeConn once nc holds a pending slot.
func (s *Server) serveConn(ctx context.Context, nc net.Conn) error {
	h, br, err := s.readHello(nc)
	if err != nil {
		s.leavePending(nc)
		var pe *ProtocolError
		if errors.As(err, &pe) {
			s.brokenWarn.warn(s.log, "closing connection: protocol error", zap.String("remote", socketPeer(nc)),
				zap.String("reason", pe.Reason), zap.String("detail", pe.Detail))
			nc.SetWriteDeadline(time.Now().Add(min(s.cfg.WriteTimeout, time.Second)))
			nc.Write(appendError(nil, pe.code, pe.Detail))
		}
		nc.Close()
		s.mu.Lock()
		s.stats.Closed++
		s.countErr(err)
		s.mu.Unlock()
		return err
	}
	sc, err := s.admit(ctx, nc, h, br)
	if err != nil {
		return err
	}
	defer s.wg.Done()
	return sc.serve(h)
}

// enterPending takes a pending slot for a connection that has yet to say
// its hello, or closes it at once when MaxPending are pending already.
func (s *Server) enterPending(nc net.Conn) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		nc.Close()
		return errServerClosed
	}
	if len(s.pending) >= s.cfg.MaxPending {
		s.stats.Refused++
		s.mu.Unlock()
		nc.Close()
		err := protoErr(reasonTooManyConns, "%d connections waiting for their hello already", s.cfg.MaxPending)
		s.refusedWarn.warn(s.log, "connection refused", zap.String("remote", socketPeer(nc)), zap.String("reason", err.Reason), zap.String("detail", err.Detail))
		return err
	}
	s.pending[nc] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	return nil
}

// leavePending gives the pending slot back.
func (s *Server) leavePending(nc net.Conn) {
	s.mu.Lock()
	delete(s.pending, nc)
	s.mu.Unlock()
	s.wg.Done()
}

// helloReaderSize is the buffer of a connection before its hello: small,
// so that connections that never say hello cost little.
const helloReaderSize = 16

// readHello reads a client's hello within HelloTimeout through a small
// buffer; the reader returned holds whatever the client sent after it.
func (s *Server) readHello(nc net.Conn) (clientHello, *bufio.Reader, error) {
	nc.SetReadDeadline(time.Now().Add(s.cfg.HelloTimeout))
	br := bufio.NewReaderSize(nc, helloReaderSize)
	var hdr [frameHeaderLen]byte
	var body [helloMaxLen]byte
	typ, n, err := readHeader(br, &hdr, fromClient)
	if err == nil && typ != msgHello {
		err = protoErr(reasonUnexpected, "first message of type 0x%02x, want a hello", uint8(typ))
	}
	if err == nil {
		err = readBody(br, body[:n])
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		err = protoErr(reasonHelloTimeout, "no hello within %v", s.cfg.HelloTimeout)
	}
	if err != nil {
		return clientHello{}, nil, err
	}
	h, err := parseHello(body[:n])
	if err != nil {
		return clientHello{}, nil, err
	}
	nc.SetReadDeadline(time.Time{})
	return h, br, nil
}

// isDriverHello reports whether a hello comes from a driver's connection.
func isDriverHello(h clientHello) bool { return h.flags&(flagInterrupts|flagDriver) != 0 }

// admit registers a connection whose hello has arrived in its pool
// (drivers' or register-only), or refuses it with an error message.
func (s *Server) admit(ctx context.Context, nc net.Conn, h clientHello, hbr *bufio.Reader) (*serverConn, error) {
	driver := isDriverHello(h)
	s.mu.Lock()
	delete(s.pending, nc)
	if s.closed {
		s.mu.Unlock()
		s.wg.Done()
		nc.Close()
		return nil, errServerClosed
	}
	var full error
	if driver && s.nDriver >= s.cfg.MaxDriverConns {
		full = protoErr(reasonTooManyConns, "%d driver connections served already", s.cfg.MaxDriverConns)
	} else if !driver && len(s.conns)-s.nDriver >= s.cfg.MaxConns {
		full = protoErr(reasonTooManyConns, "%d register-only connections served already (drivers have slots of their own)", s.cfg.MaxConns)
	}
	if full != nil {
		s.stats.Refused++
		s.mu.Unlock()
		defer s.wg.Done()
		pe := full.(*ProtocolError)
		s.refusedWarn.warn(s.log, "connection refused", zap.String("remote", socketPeer(nc)), zap.String("reason", pe.Reason), zap.String("detail", pe.Detail))
		nc.SetWriteDeadline(time.Now().Add(min(s.cfg.WriteTimeout, time.Second)))
		nc.Write(appendError(nil, reasonTooManyConns, pe.Detail))
		nc.Close()
		return nil, full
	}
	s.nextAnon++
	sc := newServerConn(s, nc, hbr, driver, anonKeyBit|s.nextAnon)
	sc.ctx, sc.cancel = context.WithCancel(ctx)
	s.conns[sc] = struct{}{}
	if driver {
		s.nDriver++
	}
	s.stats.Accepted++
	s.mu.Unlock() // the pending slot's wg count carries over to the connection
	return sc, nil
}

// countErr accounts for the error that ended a connection. Called under mu.
func (s *Server) countErr(err error) {
	var pe *ProtocolError
	switch {
	case err == nil:
	case errors.As(err, &pe):
		s.stats.ProtocolErrors[pe.Reason]++
	default:
		s.stats.IOErrors++
	}
}

// socketPeer is a connection's peer address for logs ("-" when the peer is
// an unnamed Unix socket).
func socketPeer(nc net.Conn) string {
	if a := nc.RemoteAddr(); a != nil && a.String() != "" && a.String() != "@" {
		return a.String()
	}
	return "-"
}

// closedConn accounts for a connection that has ended.
func (s *Server) closedConn(sc *serverConn, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.conns, sc)
	if sc.driver {
		s.nDriver--
	}
	s.stats.Closed++
	s.countErr(err)
	s.refreshExempt()
}

// Close closes every listener and connection and waits for the
// goroutines of the server; transfers on the wire complete first, those
// waiting for the bus are cancelled. The transport stays open.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	lns := make([]net.Listener, 0, len(s.listeners))
	for ln := range s.listeners {
		lns = append(lns, ln)
	}
	conns := make([]*serverConn, 0, len(s.conns))
	for sc := range s.conns {
		conns = append(conns, sc)
	}
	for nc := range s.pending {
		nc.Close()
	}
	s.mu.Unlock()
	for _, ln := range lns {
		ln.Close()
	}
	for _, sc := range conns {
		sc.cancel()
	}
	s.wg.Wait()
	return nil
}

// Stats returns the server's accounting.
func (s *Server) Stats() ServerStats {
	s.mu.Lock()
	st := s.stats
	st.ProtocolErrors = maps.Clone(s.stats.ProtocolErrors)
	st.Active = len(s.conns)
	s.mu.Unlock()
	st.Requests = s.requests.Load()
	st.Failed = s.failed.Load()
	st.Busy = s.busy.Load()
	st.Interrupts = s.interrupts.Load()
	return st
}
