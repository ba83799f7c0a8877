package socket

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.uber.org/zap"

	"tsnsim/spibridge"
)

// Defaults of ClientConfig fields left zero.
const (
	DefaultClientDialTimeout = time.Second
	DefaultClientBackoffMin  = 10 * time.Millisecond
	DefaultClientBackoffMax  = time.Second
	DefaultClientGrace       = time.Second
	DefaultClientMaxInFlight = 16
	DefaultClientFullWait    = 2 * time.Second
)

// ClientConfig sets up a Client. Zero fields take the defaults
// above.
type ClientConfig struct {
	Logger *zap.Logger
	// DialTimeout bounds each connection attempt: dial and hellos.
	DialTimeout time.Duration
	// BackoffMin and BackoffMax bound the exponential backoff between
	// reconnection attempts.
	BackoffMin, BackoffMax time.Duration
	// Grace is added to the server's timeout for a transfer of that
	// length to bound the wait for its result; a result later than that
	// fails the transfer with ETIMEDOUT and drops the connection (the
	// server is not answering).
	Grace time.Duration
	// MaxInFlight bounds the transfers in flight on the connection; the
	// server's bound wins when lower. Transfers over it wait for a slot.
	MaxInFlight int
	// NoInterrupts asks the server not to send interrupt edges (register
	// tools); Interrupt then only sees the edge after each reconnect.
	// A client with interrupts is a driver: its connections use the
	// server's driver slots.
	NoInterrupts bool
	// Takeover lets this client become the chip's driver even though
	// another client drives it (one that died without letting the chip
	// go): the server closes the old driver's connections when this
	// one enables the chip. Without it, enabling a chip another client
	// drives fails with EBUSY and a text naming that client.
	Takeover bool
	// Label says who this client is, in the server's logs and in the
	// refusals other clients get (at most MaxLabel bytes); empty means
	// "pid N (PROGRAM)".
	Label string
	// FullWait is how long the first connection keeps trying, with
	// backoff, a server that refuses it because its pool of connections
	// is full ("too many connections"): a slot frees as soon as the
	// server reaps a connection that just ended, e.g. of a driver that
	// was refused and exited a moment ago. Zero: DefaultClientFullWait;
	// negative: no retry. Other refusals fail at once.
	FullWait time.Duration
}

func (c *ClientConfig) setDefaults() {
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	if c.DialTimeout <= 0 {
		c.DialTimeout = DefaultClientDialTimeout
	}
	if c.BackoffMin <= 0 {
		c.BackoffMin = DefaultClientBackoffMin
	}
	if c.BackoffMax <= 0 {
		c.BackoffMax = DefaultClientBackoffMax
	}
	c.BackoffMax = max(c.BackoffMax, c.BackoffMin)
	if c.Grace <= 0 {
		c.Grace = DefaultClientGrace
	}
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = DefaultClientMaxInFlight
	}
	if c.FullWait == 0 {
		c.FullWait = DefaultClientFullWait
	}
	if c.Label == "" {
		c.Label = fmt.Sprintf("pid %d (%s)", os.Getpid(), filepath.Base(os.Args[0]))
	}
	c.MaxInFlight = min(c.MaxInFlight, MaxInFlight)
}

// ClientStats is the accounting of one Client.
type ClientStats struct {
	Connected bool             // a connection is up now
	Server    string           // chip name from the last server hello
	Timing    spibridge.Timing // the server's bus timing from the last server hello
	Transfers uint64           // transfers completed
	// Errors counts failed transfers by the errno their error wraps
	// (EIO for the rare error that wraps none).
	Errors    map[syscall.Errno]uint64
	Cancelled uint64 // transfers ended by their context
	// Disconnects counts connections lost; Reconnects connections made
	// again after one; DialFailures failed attempts (dial or hellos).
	Disconnects, Reconnects, DialFailures uint64
	// ProtocolErrors counts connections dropped because the server broke
	// the protocol or sent an error message.
	ProtocolErrors uint64
	Interrupts     uint64 // interrupt messages received
}

// Client is a Transport to a chip served by a Server in another
// process. Several goroutines may have transfers in flight at once. It
// reconnects by itself; while disconnected, transfers fail fast with
// ENOTCONN.
type Client struct {
	dial func(ctx context.Context) (net.Conn, error)
	cfg  ClientConfig
	id   uint64 // this client's id in identify messages: random, never 0
	log  *zap.Logger
	irq  chan struct{}

	ctx    context.Context // the client's lifetime; Close cancels it
	cancel context.CancelFunc
	down   chan struct{} // the current connection died: reconnect
	done   chan struct{} // closed when the reconnect loop has stopped

	cur     atomic.Pointer[clientConn] // nil while disconnected
	closed  atomic.Bool
	readers sync.WaitGroup

	mu    sync.Mutex
	stats ClientStats

	transfers, cancelled, interrupts atomic.Uint64
}

// Dial connects to the server at addr ("unix:PATH" or
// "tcp:HOST:PORT") and returns a client. The first connection must
// succeed within ctx and cfg.DialTimeout (its error wraps the dial's
// errno, e.g. ECONNREFUSED or ENOENT); after that the client reconnects by
// itself until Close.
func Dial(ctx context.Context, addr string, cfg ClientConfig) (*Client, error) {
	network, address, err := ParseAddr(addr)
	if err != nil {
		return nil, err
	}
	var d net.Dialer
	dial := func(ctx context.Context) (net.Conn, error) { return d.DialContext(ctx, network, address) }
	return newSocketClient(ctx, dial, cfg)
}

// NewClient is Dial with an injectable dialer (tests pass one
// end of a net.Pipe).
func NewClient(dial func(ctx context.Context) (net.Conn, error), cfg ClientConfig) (*Client, error) {
	return newSocketClient(context.Background(), dial, cfg)
}

func newSocketClient(ctx context.Context, dial func(ctx context.Context) (net.Conn, error), cfg ClientConfig) (*Client, error) {
	cfg.setDefaults()
	c := &Client{
		dial: dial, cfg: cfg, id: rand.Uint64()&^anonKeyBit | 1,
		log:  cfg.Logger.Named("socket-client"),
		irq:  make(chan struct{}, 1),
		down: make(chan struct{}, 1),
		done: make(chan struct{}),
	}
	c.stats.Errors = map[syscall.Errno]uint64{}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	cctx, stop := mergeCancel(ctx, c.ctx)
	cc, err := c.connectWaiting(cctx)
	stop()
	if err != nil {
		c.cancel()
		return nil, err
	}
	c.install(cc)
	cc.startReading()
	go c.reconnectLoop()
	return c, nil
}

// connectWaiting is connect, tried again with backoff for up to
// cfg.FullWait while the server refuses the connection because its pool
// is full (errServerFull).
func (c *Client) connectWaiting(ctx context.Context) (*clientConn, error) {
	end := time.Now().Add(c.cfg.FullWait)
	wait := c.cfg.BackoffMin
	for {
		cc, err := c.connect(ctx)
		if err == nil || !errors.Is(err, errServerFull) || time.Now().Add(wait).After(end) {
			return cc, err
		}
		c.log.Debug("server full, trying again", zap.Duration("in", wait), zap.Error(err))
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, err
		}
		wait = min(2*wait, c.cfg.BackoffMax)
	}
}

// mergeCancel returns a context cancelled when either a or b is.
func mergeCancel(a, b context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(a)
	stop := context.AfterFunc(b, cancel)
	return ctx, func() { stop(); cancel() }
}

// install makes cc the current connection; false if the client is closed.
func (c *Client) install(cc *clientConn) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed.Load() {
		return false
	}
	c.cur.Store(cc)
	c.stats.Server = cc.w.name
	c.stats.Timing = cc.w.timing
	return true
}

// lost is called once by a dying connection.
func (c *Client) lost(cc *clientConn, cause error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var pe *ProtocolError
	if errors.As(cause, &pe) {
		c.stats.ProtocolErrors++
	}
	if !c.cur.CompareAndSwap(cc, nil) {
		return
	}
	c.stats.Disconnects++
	c.log.Warn("connection lost", zap.Error(cause))
	socketSignal(c.down)
}

// reconnectLoop reconnects after each lost connection, with exponential
// backoff, until Close.
func (c *Client) reconnectLoop() {
	defer close(c.done)
	c.log.Debug("reconnect loop started")
	defer c.log.Debug("reconnect loop stopped")
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-c.down:
		}
		backoff := c.cfg.BackoffMin
		for {
			cc, err := c.connect(c.ctx)
			if err == nil {
				if !c.install(cc) {
					cc.kill(errClientClosed, syscall.EBADF)
					return
				}
				c.mu.Lock()
				c.stats.Reconnects++
				c.mu.Unlock()
				c.log.Info("reconnected", zap.String("chip", cc.w.name))
				cc.startReading()
				socketSignal(c.irq) // the driver re-checks the chip: edges may have been lost
				break
			}
			if c.ctx.Err() != nil {
				return
			}
			c.mu.Lock()
			c.stats.DialFailures++
			c.mu.Unlock()
			c.log.Debug("reconnect failed", zap.Error(err), zap.Duration("backoff", backoff))
			if !socketSleep(c.ctx, backoff) {
				return
			}
			backoff = min(2*backoff, c.cfg.BackoffMax)
		}
	}
}

var errClientClosed = errors.New("spibridge: socket client closed")

// Transfer implements Transport. Errors wrap the errno the server's bus
// returned (ETIMEDOUT, EINVAL, EBADF...), ENOTCONN while disconnected,
// ECONNRESET or EPIPE when the connection is lost with the transfer in
// flight (the chip may or may not have acted), ETIMEDOUT when no result
// comes within the server's timeout plus the grace, EMSGSIZE over
// MaxTransfer, EBADF after Close.
func (c *Client) Transfer(ctx context.Context, tx, rx []byte) error {
	err := c.transfer(ctx, tx, rx)
	c.count(err)
	return err
}

func (c *Client) transfer(ctx context.Context, tx, rx []byte) error {
	if len(tx) == 0 || len(rx) != len(tx) {
		return fmt.Errorf("spibridge: socket: transfer of %d bytes into a %d-byte buffer: %w", len(tx), len(rx), syscall.EINVAL)
	}
	if len(tx) > MaxTransfer {
		return fmt.Errorf("spibridge: socket: transfer of %d bytes, the limit is %d: %w", len(tx), MaxTransfer, syscall.EMSGSIZE)
	}
	cc := c.cur.Load()
	if cc == nil {
		if c.closed.Load() {
			return fmt.Errorf("spibridge: socket: transport closed: %w", syscall.EBADF)
		}
		return fmt.Errorf("spibridge: socket: not connected to the chip (reconnecting): %w", syscall.ENOTCONN)
	}
	return cc.transfer(ctx, tx, rx)
}

// count accounts for one finished transfer.
func (c *Client) count(err error) {
	if err == nil {
		c.transfers.Add(1)
		return
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		c.cancelled.Add(1)
		return
	}
	errno := syscall.EIO
	errors.As(err, &errno)
	c.mu.Lock()
	c.stats.Errors[errno]++
	c.mu.Unlock()
}

// Interrupt implements Transport: the edges the server pushes, plus one
// after each reconnect. The channel is the same across reconnects.
func (c *Client) Interrupt() <-chan struct{} { return c.irq }

// Close implements Transport: it drops the connection (transfers in
// flight fail with EBADF), stops reconnecting and waits for its
// goroutines.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed.Swap(true) {
		c.mu.Unlock()
		return nil
	}
	cc := c.cur.Swap(nil)
	c.mu.Unlock()
	c.cancel()
	if cc != nil {
		cc.kill(errClientClosed, syscall.EBADF)
	}
	<-c.done
	c.readers.Wait()
	return nil
}

// Stats returns the client's accounting.
func (c *Client) Stats() ClientStats {
	c.mu.Lock()
	s := c.stats
	s.Errors = maps.Clone(c.stats.Errors)
	c.mu.Unlock()
	s.Connected = c.cur.Load() != nil
	s.Transfers = c.transfers.Load()
	s.Cancelled = c.cancelled.Load()
	s.Interrupts = c.interrupts.Load()
	return s
}

var _ spibridge.Transport = (*Client)(nil)
