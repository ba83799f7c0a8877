package socket

import (
	"bufio"
	"context"
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

// clientConn is one connection of a Client to its server: a
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
	cl  *Client
	nc  net.Conn // requests and results
	br  *bufio.Reader
	inc net.Conn // interrupts; nil with NoInterrupts
	ibr *bufio.Reader
	w   serverHello
	log *zap.Logger

	wmu  sync.Mutex
	wdl  time.Time      // write deadline set on nc
	wwin time.Duration  // the shortest wait for a result: timeout of 1 byte + grace
	free chan *sockCall // the in-flight bound: a call is taken per transfer

	rtok chan struct{} // holding it (a send) is the right to read nc
	rdl  time.Time     // read deadline set on nc, under rtok

	lmu    sync.Mutex // guards leader against a late context callback
	leader *sockCall

	mu      sync.Mutex
	pending map[uint32]*sockCall
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

// sockCall is one transfer in flight. Its buffers grow to the transfer's
// size, never beyond the protocol's limit; they belong to the call, so a
// result that arrives after the caller gave up never touches the
// caller's rx.
type sockCall struct {
	id        uint32
	n         int
	timeout   time.Duration // the server's bus timeout for this length
	deadline  time.Time     // when the caller gives up waiting
	out       []byte        // request message: header, id, MOSI
	in        []byte        // MISO of an OK result
	status    uint8
	text      [MaxText]byte
	textLen   int
	err       error // the connection died with the call in flight
	state     callState
	abandoned bool // the caller left while a reader held the call
	done      chan struct{}
	timer     *time.Timer // armed only while the caller waits as a follower
}

// socketPast is a deadline in the past: it interrupts a blocked read.
var socketPast = time.Unix(1, 0)

// connect dials the request connection and, if the client wants
// interrupts, the interrupt connection, exchanging hellos on each.
func (c *Client) connect(ctx context.Context) (*clientConn, error) {
	dctx, cancel := context.WithTimeout(ctx, c.cfg.DialTimeout)
	defer cancel()
	var reqFlags uint16
	if !c.cfg.NoInterrupts {
		reqFlags = flagDriver // a driver: its requests use a driver's slot
	}
	nc, br, w, err := c.open(dctx, reqFlags)
	if err != nil {
		return nil, err
	}
	var (
		inc net.Conn
		ibr *bufio.Reader
	)
	if !c.cfg.NoInterrupts {
		var iw serverHello
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
		free:    make(chan *sockCall, bound),
		rtok:    make(chan struct{}, 1),
		pending: make(map[uint32]*sockCall, bound),
		deadCh:  make(chan struct{}),
	}
	for range bound {
		t := time.NewTimer(time.Hour)
		t.Stop()
		cc.free <- &sockCall{done: make(chan struct{}, 1), timer: t}
	}
	cc.log.Info("connected", zap.Int64("clock_hz", w.timing.ClockHz), zap.Duration("overhead", w.timing.Overhead),
		zap.Duration("timeout", w.timing.Timeout), zap.Int("in_flight", bound), zap.Bool("interrupts", inc != nil))
	return cc, nil
}

// startReading starts the interrupt connection's reader once cc is the
// client's connection: an edge read earlier would reach the driver while
// its transfers still fail with ENOTCONN. Edges sent meanwhile wait in the
// socket.
func (cc *clientConn) startReading() {
	if cc.inc != nil {
		cc.cl.readers.Add(1)
		go cc.interruptLoop()
	}
}

// open dials one connection and exchanges hellos.
func (c *Client) open(ctx context.Context, flags uint16) (net.Conn, *bufio.Reader, serverHello, error) {
	nc, err := c.dial(ctx)
	if err != nil {
		return nil, nil, serverHello{}, fmt.Errorf("spibridge: socket: connect: %w", err)
	}
	br, w, err := handshake(ctx, nc, flags)
	if err == nil && w.flags&flagOwnership != 0 {
		err = c.identify(ctx, nc)
	}
	if err != nil {
		nc.Close()
		return nil, nil, serverHello{}, err
	}
	return nc, br, w, nil
}

// identify tells a server that keeps one driver per chip who this client
// is: the same id on every connection and after every reconnect, so the
// chip stays this client's while it drives it.
func (c *Client) identify(ctx context.Context, nc net.Conn) error {
	if d, ok := ctx.Deadline(); ok {
		nc.SetWriteDeadline(d)
	}
	_, err := nc.Write(appendIdentify(nil, identify{id: c.id, takeover: c.cfg.Takeover, label: c.cfg.Label}))
	nc.SetWriteDeadline(time.Time{})
	if err != nil {
		return fmt.Errorf("spibridge: socket: sending the identify message: %w", timeoutErrno(err))
	}
	return nil
}

// handshake sends the client hello and reads the server's.
func handshake(ctx context.Context, nc net.Conn, flags uint16) (*bufio.Reader, serverHello, error) {
	if d, ok := ctx.Deadline(); ok {
		nc.SetDeadline(d)
	}
	stop := context.AfterFunc(ctx, func() { nc.SetDeadline(socketPast) })
	defer stop()
	if _, err := nc.Write(appendHello(nil, flags)); err != nil {
		return nil, serverHello{}, fmt.Errorf("spibridge: socket: sending the hello: %w", timeoutErrno(err))
	}
	br := bufio.NewReaderSize(nc, frameHeaderLen+resultHdrLen+MaxTransfer)
	var hdr [frameHeaderLen]byte
	typ, n, err := readHeader(br, &hdr, fromServer)
	if err == io.EOF {
		err = fmt.Errorf("spibridge: socket: server closed the connection before its hello: %w", syscall.ECONNRESET)
	}
	if err != nil {
		return nil, serverHello{}, helloErr(err)
	}
	if typ != msgWelcome && typ != msgError {
		return nil, serverHello{}, protoErr(reasonUnexpected, "server's first message of type 0x%02x, want its hello", uint8(typ))
	}
	var body [max(welcomeMaxLen, errorMinLen+MaxText)]byte
	if err := readBody(br, body[:n]); err != nil {
		return nil, serverHello{}, helloErr(err)
	}
	if typ == msgError {
		err := fmt.Errorf("spibridge: socket: server refused the connection: %s: %s: %w",
			closeReason(body[0]), body[1:n], syscall.ECONNREFUSED)
		if closeReason(body[0]) == reasonTooManyConns {
			err = serverFullError{err}
		}
		return nil, serverHello{}, err
	}
	w, err := parseWelcome(body[:n])
	if err != nil {
		return nil, serverHello{}, err
	}
	if err := nc.SetDeadline(time.Time{}); err != nil {
		return nil, serverHello{}, fmt.Errorf("spibridge: socket: %w", err)
	}
	return br, w, nil
}

// errServerFull is matched (errors.Is) by a refusal because the
// server's pool of connections was full: transient, unlike the others.
var errServerFull = errors.New("spibridge: socket: server full")

// serverFullError is such a refusal: its text is the server's, and it
// wraps ECONNREFUSED as every refusal does.
type serverFullError struct{ error }

func (e serverFullError) Unwrap() error { return e.error }
func (serverFullError) Is(t error) bool { return t == errServerFull }

// helloErr wraps an error met while waiting for the server's hello.
func helloErr(err error) error {
	var pe *ProtocolError
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
	calls := make([]*sockCall, 0, len(cc.pending))
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
	var pe *ProtocolError
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

// interruptLoop reads the interrupt connection until it dies, which
// kills the whole connection (the server went away).
func (cc *clientConn) interruptLoop() {
	defer cc.cl.readers.Done()
	cc.log.Debug("interrupt reader started")
	defer cc.log.Debug("interrupt reader stopped")
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
			socketSignal(cc.cl.irq)
			cc.cl.interrupts.Add(1)
		case msgError:
			return cc.serverError(cc.ibr, n)
		default:
			return protoErr(reasonUnexpected, "message type 0x%02x on the interrupt connection", uint8(typ))
		}
	}
}
