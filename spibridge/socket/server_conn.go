package socket

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// serverConn is one client connection of a Server: the ServeConn
// goroutine does the hellos and waits; a reading role decodes requests
// into bounded slots, handing itself on to a new goroutine each time it
// has read one and then running that request through the transport and
// writing its result; an interrupt writer runs if the client asked for
// interrupts. Writes are whole messages under wmu.
type serverConn struct {
	srv    *Server
	nc     net.Conn
	br     *bufio.Reader
	log    *zap.Logger
	ctx    context.Context
	cancel context.CancelFunc

	bound    int32          // in-flight bound of this connection
	inflight atomic.Int32   // requests read and not yet answered
	free     chan *sockSlot // 2*bound slots: bound in flight, bound writing
	workers  sync.WaitGroup

	readErr chan error // why reading stopped: sent once by the reading role

	// With an unthrottled bus the reading goroutine runs requests itself,
	// guarded by the watchdog (see runInline).
	inline    bool
	role      atomic.Uint64 // sequence<<2 | role state
	inlineSeq atomic.Uint64
	wdArmed   atomic.Bool
	watchdog  *time.Timer
	wdMu      sync.Mutex
	wdSeen    uint64 // sequence seen by the last tick
	wdStopped bool
	irq       chan struct{} // edges from the fan-out, coalesced
	irqDone   chan struct{} // closed when the interrupt writer has stopped

	hdr     [frameHeaderLen]byte
	idb     [transferHdrLen]byte // reader's scratch: a request's id
	helloB  [helloMaxLen]byte
	replyB  []byte // reader's own replies (busy, error)
	wmu     sync.Mutex
	wdl     time.Time    // write deadline set on nc
	wclosed bool         // no more writes: an error message went out, or a write failed
	wfail   atomic.Value // error: the write failure that ended the connection
}

// sockSlot holds one request in flight: its MOSI, and the result message whose
// MISO part the transport fills in place. Buffers grow to the request's
// size, never beyond the protocol's limit.
type sockSlot struct {
	id  uint32
	n   int
	tx  []byte
	out []byte // result header (10) + MISO
}

// resultPrefix is the header of a result message before its data.
const resultPrefix = frameHeaderLen + resultHdrLen

func newServerConn(s *Server, nc net.Conn) *serverConn {
	bound := s.cfg.MaxInFlight
	sc := &serverConn{
		srv: s, nc: nc,
		br:      bufio.NewReaderSize(nc, frameHeaderLen+transferHdrLen+MaxTransfer),
		log:     s.log.With(zap.String("remote", socketPeer(nc))),
		bound:   int32(bound),
		free:    make(chan *sockSlot, 2*bound),
		irq:     make(chan struct{}, 1),
		readErr: make(chan error, 1),
		replyB:  make([]byte, 0, resultPrefix+MaxText),
	}
	for range 2 * bound {
		sc.free <- &sockSlot{}
	}
	return sc
}

// serve runs the connection to its end and accounts for it.
func (sc *serverConn) serve() error {
	s := sc.srv
	stop := context.AfterFunc(sc.ctx, func() { sc.nc.Close() })
	sc.log.Debug("client connected")
	err := sc.handshake()
	if err == nil {
		sc.inline = !s.timing.Throttled()
		sc.watchdog = time.AfterFunc(time.Hour, sc.tick)
		sc.watchdog.Stop()
		sc.workers.Add(1)
		go sc.readRole()
		err = <-sc.readErr
	}
	var pe *ProtocolError
	if werr, ok := sc.wfail.Load().(error); ok && !errors.As(err, &pe) {
		err = werr // the reader only saw the connection the failed write closed
	}
	var we *writeError
	switch {
	case errors.As(err, &pe):
		sc.log.Warn("closing connection: protocol error", zap.String("reason", pe.Reason), zap.String("detail", pe.Detail))
		sc.sayError(pe)
	case errors.As(err, &we):
		sc.log.Warn("closing connection: write failed", zap.Error(we.err))
	case err == io.EOF:
		err = nil
		sc.log.Debug("client disconnected")
	case sc.ctx.Err() != nil:
		err = nil
		sc.log.Debug("connection closed by the server")
	default:
		sc.log.Info("connection lost", zap.Error(err))
	}
	sc.cancel()
	stop()
	sc.nc.Close()
	sc.stopWatchdog()
	sc.workers.Wait()
	s.unsubscribe(sc)
	if sc.irqDone != nil {
		<-sc.irqDone
	}
	s.closedConn(sc, err)
	return err
}

// handshake reads the client's hello and answers it.
func (sc *serverConn) handshake() error {
	s := sc.srv
	sc.nc.SetReadDeadline(time.Now().Add(s.cfg.HelloTimeout))
	typ, n, err := readHeader(sc.br, &sc.hdr, fromClient)
	if err == nil && typ != msgHello {
		err = protoErr(reasonUnexpected, "first message of type 0x%02x, want a hello", uint8(typ))
	}
	if err == nil {
		err = readBody(sc.br, sc.helloB[:n])
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		err = protoErr(reasonHelloTimeout, "no hello within %v", s.cfg.HelloTimeout)
	}
	if err != nil {
		return err
	}
	h, err := parseHello(sc.helloB[:n])
	if err != nil {
		return err
	}
	sc.nc.SetReadDeadline(time.Time{})
	w := serverHello{timing: s.timing, maxTransfer: MaxTransfer, maxInFlight: int(sc.bound), name: s.cfg.Name}
	wantIRQ := h.flags&flagInterrupts != 0
	if wantIRQ {
		w.flags |= flagInterrupts
	}
	if err := sc.write(appendWelcome(sc.replyB[:0], w)); err != nil {
		return err
	}
	sc.log.Debug("hello", zap.Bool("interrupts", wantIRQ))
	if wantIRQ {
		sc.irqDone = make(chan struct{})
		s.subscribe(sc)
		go sc.irqWriter()
	}

	return nil
}

// readRole reads requests until the stream ends or breaks the protocol,
// and reports why on readErr. The goroutine that has read a request
// passes the reading role on to a new goroutine and runs the request
// itself, so the transfer starts without waiting for a scheduling
// hand-off while the next request can still be read (and queue on the
// bus) during it.
func (sc *serverConn) readRole() {
	defer sc.workers.Done()
	for {
		typ, n, err := readHeader(sc.br, &sc.hdr, fromClient)
		if err == nil && typ != msgTransfer {
			err = protoErr(reasonUnexpected, "message type 0x%02x after the hello", uint8(typ))
		}
		var sl *sockSlot
		if err == nil {
			sl, err = sc.request(n)
		}
		if err != nil {
			sc.readErr <- err
			return
		}
		if sl == nil {
			continue
		}
		if sc.inline {
			if sc.runInline(sl) {
				continue
			}
			return // a takeover goroutine reads now
		}
		sc.workers.Add(1)
		go sc.readRole()
		sc.transfer(sl)
		return
	}
}

// request reads the body of a transfer request of n bytes into a slot,
// or answers EBUSY (nil slot) when the connection is over its in-flight
// bound.
func (sc *serverConn) request(n int) (*sockSlot, error) {
	m := n - transferHdrLen
	if err := readBody(sc.br, sc.idb[:]); err != nil {
		return nil, err
	}
	id := binary.BigEndian.Uint32(sc.idb[:])
	var sl *sockSlot
	if sc.inflight.Load() < sc.bound {
		select {
		case sl = <-sc.free:
		default:
		}
	}
	if sl == nil {
		if err := discardBody(sc.br, m); err != nil {
			return nil, err
		}
		sc.srv.busy.Add(1)
		sc.srv.failed.Add(1)
		sc.srv.requests.Add(1)
		return nil, sc.write(appendResultError(sc.replyB[:0], id, statusBusy, errBusy))
	}
	if cap(sl.tx) < m {
		sl.tx = make([]byte, m)
		sl.out = make([]byte, resultPrefix+max(m, MaxText))
	}
	if err := readBody(sc.br, sl.tx[:m]); err != nil {
		sc.free <- sl
		return nil, err
	}
	sl.id, sl.n = id, m
	sc.inflight.Add(1)
	return sl, nil
}

var errBusy = errors.New("spibridge: socket server: too many requests in flight on this connection")

// transfer runs one request through the transport and writes its result.
func (sc *serverConn) transfer(sl *sockSlot) {
	s := sc.srv
	err := s.tr.Transfer(sc.ctx, sl.tx[:sl.n], sl.out[resultPrefix:resultPrefix+sl.n])
	msg := sl.out[:resultPrefix+sl.n]
	if err == nil {
		putResultHeader(msg, sl.id, statusOK, sl.n)
	} else {
		msg = appendResultError(sl.out[:0], sl.id, statusOf(err), err)
		s.failed.Add(1)
	}
	// Out of flight before the write: the client may send its next
	// request as soon as it has read this result.
	sc.inflight.Add(-1)
	s.requests.Add(1)
	sc.write(msg)
	sc.free <- sl
}

// irqWriter sends an interrupt message for each (coalesced) edge.
func (sc *serverConn) irqWriter() {
	defer close(sc.irqDone)
	sc.log.Debug("interrupt writer started")
	defer sc.log.Debug("interrupt writer stopped")
	var msg [frameHeaderLen]byte
	putHeader(msg[:], msgIRQ, 0)
	for {
		select {
		case <-sc.ctx.Done():
			return
		case <-sc.irq:
			if sc.write(msg[:]) != nil {
				return
			}
			sc.srv.interrupts.Add(1)
		}
	}
}

// errConnDone is what writes return once the connection is ending.
var errConnDone = errors.New("spibridge: socket connection closing")

// write sends one whole message. A failed write ends the connection.
func (sc *serverConn) write(b []byte) error {
	sc.wmu.Lock()
	defer sc.wmu.Unlock()
	if sc.wclosed {
		return errConnDone
	}
	sc.refreshWriteDeadline()
	if _, err := sc.nc.Write(b); err != nil {
		sc.wclosed = true
		if sc.ctx.Err() == nil {
			sc.wfail.Store(error(&writeError{err}))
		}
		sc.cancel()
		return err
	}
	return nil
}

// writeError marks the write that ended a connection.
type writeError struct{ err error }

func (e *writeError) Error() string {
	return "spibridge: socket server: " + reasonWriteFailed.String() + ": " + e.err.Error()
}
func (e *writeError) Unwrap() error { return e.err }

// refreshWriteDeadline keeps a write deadline between half the write
// timeout and the write timeout ahead, so a stuck write fails in at most
// WriteTimeout without a deadline update (a runtime timer change) per
// message. Called under wmu.
func (sc *serverConn) refreshWriteDeadline() {
	wt := sc.srv.cfg.WriteTimeout
	if now := time.Now(); sc.wdl.Sub(now) < wt/2 {
		sc.wdl = now.Add(wt)
		sc.nc.SetWriteDeadline(sc.wdl)
	}
}

// sayError sends the error message that precedes closing the connection
// for a protocol error, and stops all later writes.
func (sc *serverConn) sayError(pe *ProtocolError) {
	sc.wmu.Lock()
	defer sc.wmu.Unlock()
	if sc.wclosed {
		return
	}
	sc.wclosed = true
	sc.nc.SetWriteDeadline(time.Now().Add(min(sc.srv.cfg.WriteTimeout, time.Second)))
	sc.nc.Write(appendError(sc.replyB[:0], pe.code, pe.Detail))
}
