package socket

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
	"time"
)

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
	// Sent: like spi_sync, a transfer on the wire completes (or times
	// out, or the connection dies); cancelling ctx no longer abandons it,
	// so the caller always learns whether the chip acted.
	return cc.await(context.WithoutCancel(ctx), cl, rx)
}

// await waits for the call's result, reading results itself whenever
// nobody else does. Its timer is armed only if it has to wait as a
// follower.
func (cc *clientConn) await(ctx context.Context, cl *sockCall, rx []byte) error {
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
func (cc *clientConn) leadTurn(ctx context.Context, cl *sockCall) error {
	err := cc.lead(ctx, cl)
	<-cc.rtok
	if err == nil {
		<-cl.done
	}
	return err
}

func (cc *clientConn) timedOut(cl *sockCall) error {
	return fmt.Errorf("spibridge: socket: no result within %v (bus timeout %v + grace %v); dropping the connection: %w",
		cl.timeout+cc.cl.cfg.Grace, cl.timeout, cc.cl.cfg.Grace, syscall.ETIMEDOUT)
}

// lead reads results, holding the read token, until cl is resolved (nil:
// the caller then takes the result's signal, which a dying connection
// sends too). It returns an error only when the caller gives up with the
// stream intact (its deadline or its context, at a message boundary); any
// other failure kills the connection, which resolves cl.
func (cc *clientConn) lead(ctx context.Context, cl *sockCall) error {
	if ctx.Done() != nil {
		cc.lmu.Lock()
		cc.leader = cl
		cc.lmu.Unlock()
		stop := context.AfterFunc(ctx, func() {
			cc.lmu.Lock()
			if cc.leader == cl {
				cc.nc.SetReadDeadline(socketPast) // interrupt the read
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
func (cc *clientConn) keepReadDeadline(cl *sockCall) {
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
func (cl *sockCall) result(rx []byte) error {
	switch {
	case cl.err != nil:
		return cl.err
	case cl.status != statusOK:
		return &remoteError{text: string(cl.text[:cl.textLen]), errno: statusErrno[cl.status], held: cl.status == statusHeld}
	}
	copy(rx, cl.in[:cl.n])
	return nil
}

// remoteError is a transfer that failed on the server's bus.
type remoteError struct {
	text  string
	errno syscall.Errno
	held  bool // refused: another client drives the chip
}

func (e *remoteError) Error() string {
	if e.held {
		return "spibridge: socket: the server refused the transfer: " + e.text
	}
	return "spibridge: socket: the server's bus failed the transfer: " + e.text
}
func (e *remoteError) Unwrap() error { return e.errno }

// Permanent reports a refusal (another client drives the chip): retrying
// does not help until that client lets go (spibridge.Permanent).
func (e *remoteError) Permanent() bool { return e.held }

// acquire takes a call: a slot of the in-flight bound, waiting at most
// timeout (as a transfer waits for the bus).
func (cc *clientConn) acquire(ctx context.Context, timeout time.Duration) (*sockCall, error) {
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
func (cc *clientConn) abandon(cl *sockCall) bool {
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
func (cc *clientConn) resolve(cl *sockCall) {
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
		var claimed *sockCall
		if err := cc.readResult(n, &claimed); err != nil {
			if claimed != nil {
				claimed.err = lostErr(claimed.n, err, syscall.ECONNRESET)
				cc.resolve(claimed)
			}
			return err
		}
		return nil
	case msgIRQ:
		socketSignal(cc.cl.irq)
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
	var b [errorMinLen + MaxText]byte
	if err := readBody(br, b[:n]); err != nil {
		return err
	}
	return fmt.Errorf("spibridge: socket: server closed the connection: %s: %s: %w", closeReason(b[0]), b[1:n], syscall.ECONNRESET)
}

// readResult reads a result of body length n into the call it answers.
// A result for no pending call (its caller gave up) is skipped.
func (cc *clientConn) readResult(n int, claimed **sockCall) error {
	h := cc.rh[:]
	if err := readBody(cc.br, h); err != nil {
		return err
	}
	id, status := binary.BigEndian.Uint32(h[0:4]), h[4]
	m := n - resultHdrLen
	if status >= numStatuses {
		return protoErr(reasonBadResult, "unknown status %d", status)
	}
	if status != statusOK && m > MaxText {
		return protoErr(reasonBadResult, "error text of %d bytes, limit %d", m, MaxText)
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
