package socket

import (
	"bufio"
	"bytes"
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

	driver    bool          // admitted in the drivers' pool
	key       atomic.Uint64 // the client's id, or a key of its own (anonKeyBit)
	label     string        // who the client is, for logs and refusals; under srv.mu
	takeover  bool          // the client asked to take the chip over; under srv.mu
	exempt    atomic.Bool   // spared by the idle limit (see refreshExempt)
	takenOver atomic.Bool   // closed because another client took the chip over
	// known is set once the client's identity is read; replacedKeys
	// are the drivers taken over before that, whose connection this may
	// be. Both under srv.mu.
	known        bool
	replacedKeys []uint64
	rdl          time.Time // read deadline set on nc, by the reading role

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
	edgeLost  bool          // the interrupt writer failed to send an edge; read after irqDone

	hdr     [frameHeaderLen]byte
	idb     [transferHdrLen]byte // reader's scratch: a request's id
	replyB  []byte               // reader's own replies (busy, error)
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

// newServerConn makes the connection of an admitted client; hbr is the
// small reader its hello came through (it may hold what the client sent
// after the hello).
func newServerConn(s *Server, nc net.Conn, hbr *bufio.Reader, driver bool, key uint64) *serverConn {
	bound := s.cfg.MaxInFlight
	var r io.Reader = nc
	if n := hbr.Buffered(); n > 0 {
		rest, _ := hbr.Peek(n)
		r = io.MultiReader(bytes.NewReader(bytes.Clone(rest)), nc)
	}
	sc := &serverConn{
		srv: s, nc: nc, driver: driver,
		label:   "an unidentified client (peer " + socketPeer(nc) + ")",
		br:      bufio.NewReaderSize(r, frameHeaderLen+transferHdrLen+MaxTransfer),
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
	sc.key.Store(key)
	return sc
}

// serve runs the connection to its end and accounts for it.
func (sc *serverConn) serve(h clientHello) error {
	s := sc.srv
	stop := context.AfterFunc(sc.ctx, func() { sc.nc.Close() })
	sc.log.Debug("client connected")
	err := sc.handshake(h)
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
		s.brokenWarn.warn(sc.log, "closing connection: protocol error", zap.String("reason", pe.Reason), zap.String("detail", pe.Detail))
		sc.sayError(pe)
	case errors.As(err, &we):
		s.brokenWarn.warn(sc.log, "closing connection: write failed", zap.Error(we.err))
	case sc.takenOver.Load():
		err = protoErr(reasonTakenOver, "another client took the chip over")
		sc.log.Info("connection closed: another client took the chip over")
		sc.sayError(err.(*ProtocolError))
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
	if sc.irqDone != nil {
		<-sc.irqDone
	}
	s.unsubscribe(sc)
	s.closedConn(sc, err)
	return err
}

// handshake answers the client's hello (read by the server before
// admission) and subscribes the connection to interrupts if it asked.
func (sc *serverConn) handshake(h clientHello) error {
	s := sc.srv
	w := serverHello{timing: s.timing, maxTransfer: MaxTransfer, maxInFlight: int(sc.bound), name: s.cfg.Name, flags: flagOwnership}
	wantIRQ := h.flags&flagInterrupts != 0
	if wantIRQ {
		w.flags |= flagInterrupts
	}
	if err := sc.write(appendWelcome(sc.replyB[:0], w)); err != nil {
		return err
	}
	sc.log.Debug("hello", zap.Bool("interrupts", wantIRQ), zap.Bool("driver", sc.driver))
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
		err := sc.awaitMessage()
		var typ msgType
		var n int
		if err == nil {
			typ, n, err = readHeader(sc.br, &sc.hdr, fromClient)
		}
		if err == nil && typ == msgIdentify {
			err = sc.readIdentify(n)
			if err == nil {
				continue
			}
		}
		if err == nil && typ != msgTransfer {
			err = protoErr(reasonUnexpected, "message type 0x%02x after the hello", uint8(typ))
		}
		var sl *sockSlot
		if err == nil {
			sl, err = sc.request(n)
		}
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				err = protoErr(reasonMessageTimeout, "message not complete %v after its first byte", sc.srv.cfg.MessageTimeout)
			}
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

// awaitMessage waits for the first byte of the next message and sets
// the read deadline for the rest: none when the whole message is in the
// buffer already (the common case: no timer is touched), MessageTimeout
// from its first byte otherwise. While it waits for the first byte, a
// connection the idle limit does not spare has IdleTimeout to send it.
func (sc *serverConn) awaitMessage() error {
	cfg := &sc.srv.cfg
	for sc.br.Buffered() == 0 {
		var want time.Time
		exempt := sc.exempt.Load()
		if !exempt {
			want = time.Now().Add(cfg.IdleTimeout)
		}
		sc.setReadDeadline(want)
		_, err := sc.br.Peek(1)
		if err == nil {
			break
		}
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			return err // io.EOF at a message boundary: an orderly end
		}
		if exempt || sc.exempt.Load() {
			continue // became exempt while waiting (subscribed, or the chip's driver)
		}
		return protoErr(reasonIdle, "nothing sent for %v and no interrupt subscription", cfg.IdleTimeout)
	}
	if b, err := sc.br.Peek(min(sc.br.Buffered(), 4)); err == nil && len(b) == 4 {
		if l := binary.BigEndian.Uint32(b); l <= socketMaxLength && sc.br.Buffered() >= 4+int(l) {
			if !sc.rdl.IsZero() && sc.exempt.Load() {
				sc.setReadDeadline(time.Time{})
			}
			return nil // the whole message is in: no blocking read follows
		}
	}
	sc.setReadDeadline(time.Now().Add(cfg.MessageTimeout))
	return nil
}

// setReadDeadline sets the read deadline unless it is set already.
func (sc *serverConn) setReadDeadline(t time.Time) {
	if t.Equal(sc.rdl) {
		return
	}
	sc.rdl = t
	sc.nc.SetReadDeadline(t)
}

// readIdentify reads the body of an identify message.
func (sc *serverConn) readIdentify(n int) error {
	var b [identifyMaxLen]byte
	if err := readBody(sc.br, b[:n]); err != nil {
		return err
	}
	m, err := parseIdentify(b[:n])
	if err != nil {
		return err
	}
	sc.identified(m)
	return nil
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
	var err error
	status := statusOK
	if op := classify(sl.tx[:sl.n]); op != opNone {
		if err = sc.checkOwner(op); err != nil {
			status = statusHeld
		}
	}
	if err == nil {
		err = s.tr.Transfer(sc.ctx, sl.tx[:sl.n], sl.out[resultPrefix:resultPrefix+sl.n])
		status = statusOf(err)
	}
	msg := sl.out[:resultPrefix+sl.n]
	if err == nil {
		putResultHeader(msg, sl.id, statusOK, sl.n)
	} else {
		msg = appendResultError(sl.out[:0], sl.id, status, err)
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
				sc.edgeLost = true
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
