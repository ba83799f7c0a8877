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

// clientConn is one connection of a SocketClient to its server: a
// request connection and, unless the client wants no interrupts, an
// interrupt connection.
//
// On the request connection callers write whole request messages under
// wmu, then either wait for their call to be resolved or, if nobody is
// reading, take the read token and read results themselves until their
// own arrives, resolving the others' on the way (leader/follower). A lone
// caller thus gets its result straight from the network poller, with no
// goroutine hand-off and no timer armed. The interrupt connection has
// its own reader goroutine, which also notices a server that went away
// while the client is idle.
type clientConn struct {
	cl  *SocketClient
	nc  net.Conn // requests and results
	br  *bufio.Reader
	inc net.Conn // interrupts; nil with NoInterrupts
	ibr *bufio.Reader
	w   welcome
	log *zap.Logger

	wmu  sync.Mutex
	wdl  time.Time     // write deadline set on nc
	wwin time.Duration // the shortest wait for a result: timeout of 1 byte + grace
	free chan *call    // the in-flight bound: a call is taken per transfer

	rtok chan struct{} // holding it (a send) is the right to read nc
	rdl  time.Time     // read deadline set on nc, under rtok

	lmu    sync.Mutex // guards leader against a late context callback
	leader *call

	mu      sync.Mutex
	pending map[uint32]*call
	nextID  uint32
	dead    bool
	deadCh  chan struct{} // closed when the connection dies

	hdr  [frameHeaderLen]byte // under rtok
	rh   [resultHdrLen]byte   // under rtok: a result's id and status
	ihdr [frameHeaderLen]byte // interrupt reader's
}

// callState is where a call is between its caller and the readers.
type callState uint8

const (
	callIdle    callState = iota // in the free list or with its caller, not sent
	callPending                  // sent, in pending: the caller may abandon it
	callClaimed                  // taken by a reader (or kill): it will resolve it
	callDone                     // resolved: done holds a value
)

// call is one transfer in flight. Its buffers grow to the transfer's
// size, never beyond the protocol's limit; they belong to the call, so a
// result that arrives after the caller gave up never touches the
// caller's rx.
type call struct {
	id        uint32
	n         int
	timeout   time.Duration // the server's bus timeout for this length
	deadline  time.Time     // when the caller gives up waiting
	out       []byte        // request message: header, id, MOSI
	in        []byte        // MISO of an OK result
	status    uint8
	text      [SocketMaxText]byte
	textLen   int
	err       error // the connection died with the call in flight
	state     callState
	abandoned bool // the caller left while a reader held the call
	done      chan struct{}
	timer     *time.Timer // armed only while the caller waits as a follower
}

// aLongTimeAgo is a deadline in the past: it interrupts a blocked read.
var aLongTimeAgo = time.Unix(1, 0)

// connect dials the request connection and, if the client wants
// interrupts, the interrupt connection, exchanging hellos on each.
func (c *SocketClient) connect(ctx context.Context) (*clientConn, error) {
	dctx, cancel := context.WithTimeout(ctx, c.cfg.DialTimeout)
	defer cancel()
	nc, br, w, err := c.open(dctx, 0)
	if err != nil {
		return nil, err
	}
	var (
		inc net.Conn
		ibr *bufio.Reader
	)
	if !c.cfg.NoInterrupts {
		var iw welcome
		inc, ibr, iw, err = c.open(dctx, flagInterrupts)
		switch {
		case err != nil:
		case iw.flags&flagInterrupts == 0:
			err = fmt.Errorf("spibridge: socket: the server did not grant interrupts: %w", syscall.EPROTO)
		case iw.name != w.name || iw.timing != w.timing:
			err = fmt.Errorf("spibridge: socket: the two connections reached different chips (%q, %q): %w", w.name, iw.name, syscall.EPROTO)
		}
		if err != nil {
			if inc != nil {
				inc.Close()
			}
			nc.Close()
			return nil, err
		}
	}
	bound := min(c.cfg.MaxInFlight, w.maxInFlight)
	cc := &clientConn{
		cl: c, nc: nc, br: br, inc: inc, ibr: ibr, w: w,
		log:     c.log.With(zap.String("chip", w.name)),
		wwin:    w.timing.TimeoutFor(1) + c.cfg.Grace,
		free:    make(chan *call, bound),
		rtok:    make(chan struct{}, 1),
		pending: make(map[uint32]*call, bound),
		deadCh:  make(chan struct{}),
	}
	for range bound {
		t := time.NewTimer(time.Hour)
		t.Stop()
		cc.free <- &call{done: make(chan struct{}, 1), timer: t}
	}
	if inc != nil {
		c.readers.Add(1)
		go cc.interruptLoop()
	}
	cc.log.Info("connected", zap.Int64("clock_hz", w.timing.ClockHz), zap.Duration("overhead", w.timing.Overhead),
		zap.Duration("timeout", w.timing.Timeout), zap.Int("in_flight", bound), zap.Bool("interrupts", inc != nil))
	return cc, nil
}

// open dials one connection and exchanges hellos.
func (c *SocketClient) open(ctx context.Context, flags uint16) (net.Conn, *bufio.Reader, welcome, error) {
	nc, err := c.dial(ctx)
	if err != nil {
		return nil, nil, welcome{}, fmt.Errorf("spibridge: socket: connect: %w", err)
	}
	br, w, err := handshake(ctx, nc, flags)
	if err != nil {
		nc.Close()
		return nil, nil, welcome{}, err
	}
	return nc, br, w, nil
}

// handshake sends the client hello and reads the server's.
func handshake(ctx context.Context, nc net.Conn, flags uint16) (*bufio.Reader, welcome, error) {
	if d, ok := ctx.Deadline(); ok {
		nc.SetDeadline(d)
	}
	stop := context.AfterFunc(ctx, func() { nc.SetDeadline(aLongTimeAgo) })
	defer stop()
	if _, err := nc.Write(appendHello(nil, flags)); err != nil {
		return nil, welcome{}, fmt.Errorf("spibridge: socket: sending the hello: %w", timeoutErrno(err))
	}
	br := bufio.NewReaderSize(nc, frameHeaderLen+resultHdrLen+SocketMaxTransfer)
	var hdr [frameHeaderLen]byte
	typ, n, err := readHeader(br, &hdr, fromServer)
	if err == io.EOF {
		err = fmt.Errorf("spibridge: socket: server closed the connection before its hello: %w", syscall.ECONNRESET)
	}
	if err != nil {
		return nil, welcome{}, helloErr(err)
	}
	if typ != msgWelcome && typ != msgError {
		return nil, welcome{}, protoErr(reasonUnexpected, "server's first message of type 0x%02x, want its hello", uint8(typ))
	}
	var body [max(welcomeMaxLen, errorMinLen+SocketMaxText)]byte
	if err := readBody(br, body[:n]); err != nil {
		return nil, welcome{}, helloErr(err)
	}
	if typ == msgError {
		return nil, welcome{}, fmt.Errorf("spibridge: socket: server refused the connection: %s: %s: %w",
			closeReason(body[0]), body[1:n], syscall.ECONNREFUSED)
	}
	w, err := parseWelcome(body[:n])
	if err != nil {
		return nil, welcome{}, err
	}
	if err := nc.SetDeadline(time.Time{}); err != nil {
		return nil, welcome{}, fmt.Errorf("spibridge: socket: %w", err)
	}
	return br, w, nil
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

	now := time.Now()
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
	cl.timeout, cl.deadline = timeout, now.Add(timeout+cc.cl.cfg.Grace)
	cl.err, cl.status, cl.textLen = nil, statusOK, 0
	cc.pending[cl.id] = cl
	cc.mu.Unlock()
	binary.BigEndian.PutUint32(msg[frameHeaderLen:], cl.id)

	cc.wmu.Lock()
	if cc.wdl.Sub(now) < cc.wwin/2 {
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
		errno := syscall.EPIPE
		if errors.Is(werr, os.ErrDeadlineExceeded) {
			errno = syscall.ETIMEDOUT
		}
		cc.kill(fmt.Errorf("sending a request: %w", werr), errno)
	}
	return cc.await(ctx, cl, rx)
}

// await waits for the call's result, reading results itself whenever
// nobody else does. Its timer is armed only if it has to wait as a
// follower.
func (cc *clientConn) await(ctx context.Context, cl *call, rx []byte) error {
	armed := false
	var gaveUp error
	select {
	case <-cl.done:
	case cc.rtok <- struct{}{}:
		gaveUp = cc.leadTurn(ctx, cl)
	default:
		armed = true
		cl.timer.Reset(time.Until(cl.deadline))
		select {
		case <-cl.done:
		case cc.rtok <- struct{}{}:
			gaveUp = cc.leadTurn(ctx, cl)
		case <-cl.timer.C:
			armed = false
			gaveUp = cc.timedOut(cl)
		case <-ctx.Done():
			gaveUp = fmt.Errorf("spibridge: socket: transfer abandoned, the chip may or may not act on it: %w", ctx.Err())
		}
	}
	if armed {
		cl.timer.Stop()
	}
	if gaveUp != nil && !cc.abandon(cl) {
		if errors.Is(gaveUp, syscall.ETIMEDOUT) {
			cc.kill(gaveUp, syscall.ECONNRESET)
		}
		return gaveUp
	}
	err := cl.result(rx)
	cl.state = callIdle
	cc.free <- cl
	return err
}

// leadTurn reads results with the read token just taken, until cl is
// resolved (then it takes the result's signal) or the caller gives up.
func (cc *clientConn) leadTurn(ctx context.Context, cl *call) error {
	err := cc.lead(ctx, cl)
	<-cc.rtok
	if err == nil {
		<-cl.done
	}
	return err
}

func (cc *clientConn) timedOut(cl *call) error {
	return fmt.Errorf("spibridge: socket: no result within %v (bus timeout %v + grace %v); dropping the connection: %w",
		cl.timeout+cc.cl.cfg.Grace, cl.timeout, cc.cl.cfg.Grace, syscall.ETIMEDOUT)
}

// lead reads results, holding the read token, until cl is resolved (nil:
// the caller then takes the result's signal, which a dying connection
// sends too). It returns an error only when the caller gives up with the
// stream intact (its deadline or its context, at a message boundary); any
// other failure kills the connection, which resolves cl.
func (cc *clientConn) lead(ctx context.Context, cl *call) error {
	if ctx.Done() != nil {
		cc.lmu.Lock()
		cc.leader = cl
		cc.lmu.Unlock()
		stop := context.AfterFunc(ctx, func() {
			cc.lmu.Lock()
			if cc.leader == cl {
				cc.nc.SetReadDeadline(aLongTimeAgo) // interrupt the read
				cc.rdl = time.Time{}
			}
			cc.lmu.Unlock()
		})
		defer func() {
			stop()
			cc.lmu.Lock()
			cc.leader = nil
			cc.lmu.Unlock()
		}()
	}
	for {
		cc.mu.Lock()
		done := cl.state == callDone
		cc.mu.Unlock()
		if done {
			return nil
		}
		cc.keepReadDeadline(cl)
		err := cc.readOne()
		if err == nil {
			continue
		}
		var mm *midMessageError
		if errors.Is(err, os.ErrDeadlineExceeded) && !errors.As(err, &mm) {
			// At a message boundary: the stream is intact.
			if ctx.Err() != nil {
				return fmt.Errorf("spibridge: socket: transfer abandoned, the chip may or may not act on it: %w", ctx.Err())
			}
			if !time.Now().Before(cl.deadline) {
				return cc.timedOut(cl)
			}
			cc.lmu.Lock()
			cc.rdl = time.Time{} // an early deadline: set it again
			cc.lmu.Unlock()
			continue
		}
		errno := syscall.ECONNRESET
		if errors.Is(err, os.ErrDeadlineExceeded) {
			errno = syscall.ETIMEDOUT
		}
		cc.kill(err, errno) // resolves cl, now or as kill finishes elsewhere
		return nil
	}
}

// keepReadDeadline keeps the read deadline between half the window and
// the window ahead (so a lone caller rarely touches it), and never after
// the leader's own deadline.
func (cc *clientConn) keepReadDeadline(cl *call) {
	cc.lmu.Lock()
	defer cc.lmu.Unlock()
	now := time.Now()
	if cc.rdl.Sub(now) < cc.wwin/2 {
		cc.rdl = now.Add(cc.wwin)
		if cc.rdl.After(cl.deadline) {
			cc.rdl = cl.deadline
		}
		cc.nc.SetReadDeadline(cc.rdl)
	} else if cc.rdl.After(cl.deadline) {
		cc.rdl = cl.deadline
		cc.nc.SetReadDeadline(cc.rdl)
	}
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
	if cc.inc != nil {
		cc.inc.Close()
	}
	for _, cl := range calls {
		cl.err = lostErr(cl.n, cause, errno)
		cc.resolve(cl)
	}
	var pe *SocketProtocolError
	if errors.As(cause, &pe) {
		cc.log.Warn("dropping the connection: protocol error", zap.String("reason", pe.Reason), zap.String("detail", pe.Detail))
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

// readOne reads one message from the request connection, under the read
// token, and resolves the call a result answers. A call claimed when the
// stream breaks is resolved with the error.
func (cc *clientConn) readOne() error {
	typ, n, err := readHeader(cc.br, &cc.hdr, fromServer)
	if err == io.EOF {
		err = fmt.Errorf("server closed the connection: %w", err)
	}
	if err != nil {
		return err
	}
	switch typ {
	case msgResult:
		var claimed *call
		if err := cc.readResult(n, &claimed); err != nil {
			if claimed != nil {
				claimed.err = lostErr(claimed.n, err, syscall.ECONNRESET)
				cc.resolve(claimed)
			}
			return err
		}
		return nil
	case msgIRQ:
		signal(cc.cl.irq)
		cc.cl.interrupts.Add(1)
		return nil
	case msgError:
		return cc.serverError(cc.br, n)
	default:
		return protoErr(reasonUnexpected, "message type 0x%02x after the hello", uint8(typ))
	}
}

// serverError reads the error message the server closes with.
func (cc *clientConn) serverError(br *bufio.Reader, n int) error {
	var b [errorMinLen + SocketMaxText]byte
	if err := readBody(br, b[:n]); err != nil {
		return err
	}
	return fmt.Errorf("spibridge: socket: server closed the connection: %s: %s: %w", closeReason(b[0]), b[1:n], syscall.ECONNRESET)
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

// interruptLoop reads the interrupt connection until it dies, which
// kills the whole connection (the server went away).
func (cc *clientConn) interruptLoop() {
	defer cc.cl.readers.Done()
	err := cc.readInterrupts()
	if err == io.EOF {
		err = fmt.Errorf("server closed the connection: %w", err)
	}
	cc.kill(err, syscall.ECONNRESET)
}

func (cc *clientConn) readInterrupts() error {
	for {
		typ, n, err := readHeader(cc.ibr, &cc.ihdr, fromServer)
		if err != nil {
			return err
		}
		switch typ {
		case msgIRQ:
			signal(cc.cl.irq)
			cc.cl.interrupts.Add(1)
		case msgError:
			return cc.serverError(cc.ibr, n)
		default:
			return protoErr(reasonUnexpected, "message type 0x%02x on the interrupt connection", uint8(typ))
		}
	}
}
