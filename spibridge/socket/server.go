package socket

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"tsnsim/spibridge"
)

// Defaults of ServerConfig fields left zero.
const (
	DefaultServerMaxConns     = 8
	DefaultServerMaxInFlight  = 16
	DefaultServerHelloTimeout = 5 * time.Second
	DefaultServerWriteTimeout = 5 * time.Second
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
	// MaxConns bounds the connections served at once; more are refused
	// with an error message. A client that wants interrupts uses two.
	MaxConns int
	// MaxInFlight bounds the requests in flight on one connection (at
	// most MaxInFlight); a request over it is answered EBUSY.
	MaxInFlight int
	// HelloTimeout bounds the wait for a client's hello.
	HelloTimeout time.Duration
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
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = DefaultServerMaxInFlight
	}
	c.MaxInFlight = min(c.MaxInFlight, MaxInFlight)
	if c.HelloTimeout <= 0 {
		c.HelloTimeout = DefaultServerHelloTimeout
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = DefaultServerWriteTimeout
	}
}

// ServerStats is the accounting of one Server.
type ServerStats struct {
	Accepted uint64 // connections taken in (by Serve or ServeConn)
	Active   int    // connections being served now
	Refused  uint64 // connections refused: MaxConns reached
	Closed   uint64 // connections ended, for any reason
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
	refusing  map[net.Conn]struct{}    // connections over MaxConns being refused
	subs      map[*serverConn]struct{} // connections that want interrupts
	fan       *fanout                  // running while subs is not empty
	irqLatch  bool                     // an edge arrived with no subscriber
	stats     ServerStats
	wg        sync.WaitGroup // Serve and ServeConn calls

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
		refusing:  map[net.Conn]struct{}{},
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
		conns.Go(func() { s.ServeConn(sctx, nc) })
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
// end, a *ProtocolError if the client broke the protocol (the
// connection is closed after an error message; other connections are not
// affected), or the I/O error that ended the connection.
func (s *Server) ServeConn(ctx context.Context, nc net.Conn) error {
	sc, err := s.admit(ctx, nc)
	if err != nil {
		return err
	}
	defer s.wg.Done()
	return sc.serve()
}

// admit registers a connection, or refuses it.
func (s *Server) admit(ctx context.Context, nc net.Conn) (*serverConn, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		nc.Close()
		return nil, errServerClosed
	}
	if len(s.conns) >= s.cfg.MaxConns {
		s.stats.Refused++
		s.refusing[nc] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		defer s.wg.Done()
		err := s.refuse(nc)
		s.mu.Lock()
		delete(s.refusing, nc)
		s.mu.Unlock()
		return nil, err
	}
	sc := newServerConn(s, nc)
	sc.ctx, sc.cancel = context.WithCancel(ctx)
	s.conns[sc] = struct{}{}
	s.stats.Accepted++
	s.wg.Add(1)
	s.mu.Unlock()
	return sc, nil
}

// refuse answers a connection over MaxConns: it reads the client's hello
// (bounded, briefly) and answers it with an error message.
func (s *Server) refuse(nc net.Conn) error {
	defer nc.Close()
	err := protoErr(reasonTooManyConns, "%d connections served already", s.cfg.MaxConns)
	s.log.Warn("connection refused", zap.String("remote", socketPeer(nc)), zap.String("reason", err.Reason))
	wait := min(s.cfg.HelloTimeout, s.cfg.WriteTimeout, time.Second)
	nc.SetDeadline(time.Now().Add(wait))
	br := bufio.NewReaderSize(nc, 64)
	var hdr [frameHeaderLen]byte
	if _, n, rerr := readHeader(br, &hdr, fromClient); rerr == nil {
		discardBody(br, n)
	}
	nc.Write(appendError(nil, reasonTooManyConns, err.Detail))
	return err
}

// socketPeer is a connection's peer address for logs ("-" when the peer is
// an unnamed Unix socket).
func socketPeer(nc net.Conn) string {
	if a := nc.RemoteAddr(); a != nil && a.String() != "" {
		return a.String()
	}
	return "-"
}

// closedConn accounts for a connection that has ended.
func (s *Server) closedConn(sc *serverConn, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.conns, sc)
	s.stats.Closed++
	var pe *ProtocolError
	switch {
	case err == nil:
	case errors.As(err, &pe):
		s.stats.ProtocolErrors[pe.Reason]++
	default:
		s.stats.IOErrors++
	}
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
	for nc := range s.refusing {
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
