package spibridge

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"
)

// clientConn is one connection of a SocketClient: callers write whole
// request messages under wmu and wait on their call; one reader goroutine
// decodes results into the calls' bounded buffers and interrupt edges
// into the client's channel.
type clientConn struct {
	cl  *SocketClient
	nc  net.Conn
	br  *bufio.Reader
	w   welcome
	log *zap.Logger

	wmu  sync.Mutex
	wdl  time.Time     // write deadline set on nc
	wwin time.Duration // the shortest wait for a result: timeout of 1 byte + grace
	free chan *call    // the in-flight bound: a call is taken per transfer

	mu      sync.Mutex
	pending map[uint32]*call
	nextID  uint32
	dead    bool
	deadCh  chan struct{} // closed when the connection dies

	hdr [frameHeaderLen]byte
	rh  [resultHdrLen]byte // reader's scratch: a result's id and status
}

// callState is where a call is between its caller and the reader.
type callState uint8

const (
	callIdle    callState = iota // in the free list or with its caller, not sent
	callPending                  // sent, in pending: the caller may abandon it
	callClaimed                  // taken by the reader (or kill): it will resolve it
	callDone                     // resolved: done holds a value
)

// call is one transfer in flight. Its buffers grow to the transfer's
// size, never beyond the protocol's limit; they belong to the call, so a
// result that arrives after the caller gave up never touches the
// caller's rx.
type call struct {
	id        uint32
	n         int
	out       []byte // request message: header, id, MOSI
	in        []byte // MISO of an OK result
	status    uint8
	text      [SocketMaxText]byte
	textLen   int
	err       error // the connection died with the call in flight
	state     callState
	abandoned bool // the caller left while the reader held the call
	done      chan struct{}
	timer     *time.Timer
}

// connect dials and exchanges hellos; on success the reader is running.
func (c *SocketClient) connect(ctx context.Context) (*clientConn, error) {
	dctx, cancel := context.WithTimeout(ctx, c.cfg.DialTimeout)
	defer cancel()
	nc, err := c.dial(dctx)
	if err != nil {
		return nil, fmt.Errorf("spibridge: socket: connect: %w", err)
	}
	cc, err := c.handshake(dctx, nc)
	if err != nil {
		nc.Close()
		return nil, err
	}
	c.readers.Add(1)
	go cc.readLoop()
	return cc, nil
}

// handshake sends the client hello and reads the server's.
func (c *SocketClient) handshake(ctx context.Context, nc net.Conn) (*clientConn, error) {
	if d, ok := ctx.Deadline(); ok {
		nc.SetDeadline(d)
	}
	stop := context.AfterFunc(ctx, func() { nc.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	var flags uint16
	if !c.cfg.NoInterrupts {
		flags |= flagInterrupts
	}
	if _, err := nc.Write(appendHello(nil, flags)); err != nil {
		return nil, fmt.Errorf("spibridge: socket: sending the hello: %w", timeoutErrno(err))
	}
	br := bufio.NewReaderSize(nc, frameHeaderLen+resultHdrLen+SocketMaxTransfer)
	var hdr [frameHeaderLen]byte
	typ, n, err := readHeader(br, &hdr, fromServer)
	if err == io.EOF {
		err = fmt.Errorf("spibridge: socket: server closed the connection before its hello: %w", syscall.ECONNRESET)
	}
	if err != nil {
		return nil, helloErr(err)
	}
	if typ != msgWelcome && typ != msgError {
		return nil, protoErr(reasonUnexpected, "server's first message of type 0x%02x, want its hello", uint8(typ))
	}
	var body [max(welcomeMaxLen, errorMinLen+SocketMaxText)]byte
	if err := readBody(br, body[:n]); err != nil {
		return nil, helloErr(err)
	}
	if typ == msgError {
		return nil, fmt.Errorf("spibridge: socket: server refused the connection: %s: %s: %w",
			closeReason(body[0]), body[1:n], syscall.ECONNREFUSED)
	}
	w, err := parseWelcome(body[:n])
	if err != nil {
		return nil, err
	}
	if err := nc.SetDeadline(time.Time{}); err != nil {
		return nil, fmt.Errorf("spibridge: socket: %w", err)
	}
	bound := min(c.cfg.MaxInFlight, w.maxInFlight)
	cc := &clientConn{
		cl: c, nc: nc, br: br, w: w,
		log:     c.log.With(zap.String("chip", w.name)),
		free:    make(chan *call, bound),
		pending: make(map[uint32]*call, bound),
		deadCh:  make(chan struct{}),
		wwin:    w.timing.TimeoutFor(1) + c.cfg.Grace,
	}
	for range bound {
		t := time.NewTimer(time.Hour)
		t.Stop()
		cc.free <- &call{done: make(chan struct{}, 1), timer: t}
	}
	cc.log.Info("connected", zap.Int64("clock_hz", w.timing.ClockHz), zap.Duration("overhead", w.timing.Overhead),
		zap.Duration("timeout", w.timing.Timeout), zap.Int("in_flight", bound),
		zap.Bool("interrupts", w.flags&flagInterrupts != 0))
	return cc, nil
}

// helloErr wraps an error met while waiting for the server's hello.
func helloErr(err error) error {
	var pe *SocketProtocolError
	if errors.As(err, &pe) {
		return err
	}
	return fmt.Errorf("spibridge: socket: waiting for the server's hello: %w", timeoutErrno(err))
}

// timeoutErrno turns a deadline error into one wrapping ETIMEDOUT.
func timeoutErrno(err error) error {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return fmt.Errorf("%v: %w", err, syscall.ETIMEDOUT)
	}
	return err
}

// transfer sends one request and waits for its result.
func (cc *clientConn) transfer(ctx context.Context, tx, rx []byte) error {
	n := len(tx)
	if n > cc.w.maxTransfer {
		return fmt.Errorf("spibridge: socket: transfer of %d bytes, the server's limit is %d: %w", n, cc.w.maxTransfer, syscall.EMSGSIZE)
	}
	timeout := cc.w.timing.TimeoutFor(n)
	cl, err := cc.acquire(ctx, timeout)
	if err != nil {
		return err
	}
	if cap(cl.in) < n {
		cl.in = make([]byte, n)
		cl.out = make([]byte, frameHeaderLen+transferHdrLen+n)
	}
	msg := cl.out[:frameHeaderLen+transferHdrLen+n]
	putHeader(msg, msgTransfer, transferHdrLen+n)
	copy(msg[frameHeaderLen+transferHdrLen:], tx)

	cc.mu.Lock()
	if cc.dead {
		cc.mu.Unlock()
		cc.free <- cl
		return fmt.Errorf("spibridge: socket: not connected to the chip (connection lost, not sent): %w", syscall.ENOTCONN)
	}
	for {
		cc.nextID++
		if _, busy := cc.pending[cc.nextID]; !busy {
			break
		}
	}
	cl.id, cl.n, cl.state = cc.nextID, n, callPending
	cl.err, cl.status, cl.textLen = nil, statusOK, 0
	cc.pending[cl.id] = cl
	cc.mu.Unlock()
	binary.BigEndian.PutUint32(msg[frameHeaderLen:], cl.id)

	wait := timeout + cc.cl.cfg.Grace
	cl.timer.Reset(wait)
	cc.wmu.Lock()
	if now := time.Now(); cc.wdl.Sub(now) < cc.wwin/2 {
		// Between half the window and the window ahead: a stuck write
		// fails within the shortest wait of any transfer, without a
		// deadline update (a runtime timer change) per request.
		cc.wdl = now.Add(cc.wwin)
		cc.nc.SetWriteDeadline(cc.wdl)
	}
	_, werr := cc.nc.Write(msg)
	cc.wmu.Unlock()
	if werr != nil {
		// The call is pending: kill resolves it with the cause.
		if errors.Is(werr, os.ErrDeadlineExceeded) {
			cc.kill(fmt.Errorf("sending a request: %w", werr), syscall.ETIMEDOUT)
		} else {
			cc.kill(fmt.Errorf("sending a request: %w", werr), syscall.EPIPE)
		}
	}

	var gaveUp error
	select {
	case <-cl.done:
	case <-cl.timer.C:
		gaveUp = fmt.Errorf("spibridge: socket: no result within %v (bus timeout %v + grace %v); dropping the connection: %w",
			wait, timeout, cc.cl.cfg.Grace, syscall.ETIMEDOUT)
	case <-ctx.Done():
		gaveUp = fmt.Errorf("spibridge: socket: transfer abandoned, the chip may or may not act on it: %w", ctx.Err())
	}
	cl.timer.Stop()
	if gaveUp != nil && !cc.abandon(cl) {
		if errors.Is(gaveUp, syscall.ETIMEDOUT) {
			cc.kill(gaveUp, syscall.ECONNRESET)
		}
		return gaveUp
	}
	err = cl.result(rx)
	cl.state = callIdle
	cc.free <- cl
	return err
}

// result is the outcome of a resolved call; an OK result fills rx.
func (cl *call) result(rx []byte) error {
	switch {
	case cl.err != nil:
		return cl.err
	case cl.status != statusOK:
		return &remoteError{text: string(cl.text[:cl.textLen]), errno: statusErrno[cl.status]}
	}
	copy(rx, cl.in[:cl.n])
	return nil
}

// remoteError is a transfer that failed on the server's bus.
type remoteError struct {
	text  string
	errno syscall.Errno
}

func (e *remoteError) Error() string {
	return "spibridge: socket: the server's bus failed the transfer: " + e.text
}
func (e *remoteError) Unwrap() error { return e.errno }

// acquire takes a call: a slot of the in-flight bound, waiting at most
// timeout (as a transfer waits for the bus).
func (cc *clientConn) acquire(ctx context.Context, timeout time.Duration) (*call, error) {
	select {
	case cl := <-cc.free:
		return cl, nil
	default:
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case cl := <-cc.free:
		return cl, nil
	case <-t.C:
		return nil, fmt.Errorf("spibridge: socket: no request slot free within %v (%d in flight): %w", timeout, cap(cc.free), syscall.ETIMEDOUT)
	case <-ctx.Done():
		return nil, fmt.Errorf("spibridge: socket: waiting for a request slot: %w", ctx.Err())
	case <-cc.deadCh:
		return nil, fmt.Errorf("spibridge: socket: not connected to the chip (connection lost, not sent): %w", syscall.ENOTCONN)
	}
}

// abandon withdraws a call whose caller gives up. It reports true if the
// call was resolved meanwhile: its result is then there to take.
func (cc *clientConn) abandon(cl *call) bool {
	cc.mu.Lock()
	switch cl.state {
	case callPending:
		delete(cc.pending, cl.id)
		cl.state = callIdle
		cc.mu.Unlock()
		cc.free <- cl
		return false
	case callClaimed:
		cl.abandoned = true // the reader frees it
		cc.mu.Unlock()
		return false
	default: // callDone
		cc.mu.Unlock()
		<-cl.done
		return true
	}
}

// resolve hands a claimed call back to its caller, or frees it if the
// caller has left.
func (cc *clientConn) resolve(cl *call) {
	cc.mu.Lock()
	if cl.abandoned {
		cl.abandoned = false
		cl.state = callIdle
		cc.mu.Unlock()
		cc.free <- cl
		return
	}
	cl.state = callDone
	cc.mu.Unlock()
	cl.done <- struct{}{}
}

// kill ends the connection once: calls in flight fail with errno, the
// client starts reconnecting.
func (cc *clientConn) kill(cause error, errno syscall.Errno) {
	cc.mu.Lock()
	if cc.dead {
		cc.mu.Unlock()
		return
	}
	cc.dead = true
	close(cc.deadCh)
	calls := make([]*call, 0, len(cc.pending))
	for id, cl := range cc.pending {
		delete(cc.pending, id)
		cl.state = callClaimed
		calls = append(calls, cl)
	}
	cc.mu.Unlock()
	cc.nc.Close()
	for _, cl := range calls {
		cl.err = lostErr(cl.n, cause, errno)
		cc.resolve(cl)
	}
	cc.cl.lost(cc, cause)
}

// lostErr is the error of a transfer in flight when its connection died.
func lostErr(n int, cause error, errno syscall.Errno) error {
	if errno == syscall.EBADF {
		return fmt.Errorf("spibridge: socket: transport closed with the %d-byte transfer in flight; the chip may or may not have acted: %w", n, errno)
	}
	return fmt.Errorf("spibridge: socket: connection lost with the %d-byte transfer in flight; the chip may or may not have acted (%v): %w", n, cause, errno)
}

// readLoop decodes the server's messages until the connection dies.
func (cc *clientConn) readLoop() {
	defer cc.cl.readers.Done()
	var claimed *call
	err := cc.readMessages(&claimed)
	errno := syscall.ECONNRESET
	var pe *SocketProtocolError
	switch {
	case errors.As(err, &pe):
		cc.log.Warn("dropping the connection: protocol error", zap.String("reason", pe.Reason), zap.String("detail", pe.Detail))
	case err == io.EOF:
		err = fmt.Errorf("server closed the connection: %w", err)
	}
	if claimed != nil {
		claimed.err = lostErr(claimed.n, err, errno)
		cc.resolve(claimed)
	}
	cc.kill(err, errno)
}

// readMessages reads until an error; claimed is the call whose result is
// being read, if any.
func (cc *clientConn) readMessages(claimed **call) error {
	for {
		typ, n, err := readHeader(cc.br, &cc.hdr, fromServer)
		if err != nil {
			return err
		}
		switch typ {
		case msgResult:
			if err := cc.readResult(n, claimed); err != nil {
				return err
			}
		case msgIRQ:
			signal(cc.cl.irq)
			cc.cl.interrupts.Add(1)
		case msgError:
			var b [errorMinLen + SocketMaxText]byte
			if err := readBody(cc.br, b[:n]); err != nil {
				return err
			}
			return fmt.Errorf("spibridge: socket: server closed the connection: %s: %s: %w", closeReason(b[0]), b[1:n], syscall.ECONNRESET)
		default:
			return protoErr(reasonUnexpected, "message type 0x%02x after the hello", uint8(typ))
		}
	}
}

// readResult reads a result of body length n into the call it answers.
// A result for no pending call (its caller gave up) is skipped.
func (cc *clientConn) readResult(n int, claimed **call) error {
	h := cc.rh[:]
	if err := readBody(cc.br, h); err != nil {
		return err
	}
	id, status := binary.BigEndian.Uint32(h[0:4]), h[4]
	m := n - resultHdrLen
	if status >= numStatuses {
		return protoErr(reasonBadResult, "unknown status %d", status)
	}
	if status != statusOK && m > SocketMaxText {
		return protoErr(reasonBadResult, "error text of %d bytes, limit %d", m, SocketMaxText)
	}
	cc.mu.Lock()
	cl := cc.pending[id]
	if cl != nil {
		delete(cc.pending, id)
		cl.state = callClaimed
	}
	cc.mu.Unlock()
	if cl == nil {
		return discardBody(cc.br, m)
	}
	*claimed = cl
	if status == statusOK {
		if m != cl.n {
			return protoErr(reasonBadResult, "result of %d bytes for the %d-byte transfer %d", m, cl.n, id)
		}
		if err := readBody(cc.br, cl.in[:m]); err != nil {
			return err
		}
	} else {
		if err := readBody(cc.br, cl.text[:m]); err != nil {
			return err
		}
		cl.textLen = m
	}
	cl.status = status
	*claimed = nil
	cc.resolve(cl)
	return nil
}
