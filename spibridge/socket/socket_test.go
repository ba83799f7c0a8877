package socket

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"tsnsim/chip"
	"tsnsim/chip/proto"
	"tsnsim/chip/regs"
	"tsnsim/spibridge"
)

// echoDev answers every byte with its complement, so each transfer's MISO
// proves it is the answer to that MOSI.
type echoDev struct{ irq chan struct{} }

func (d echoDev) Transact(mosi, miso []byte) error {
	for i := range mosi {
		miso[i] = ^mosi[i]
	}
	return nil
}
func (d echoDev) IRQ() <-chan struct{} { return d.irq }

// TestSocketTransferTiming: over the socket (net.Pipe, no latency), a
// transfer to a real chip takes exactly the in-process model's time and
// returns exactly the in-process MISO.
func TestSocketTransferTiming(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := chip.New(chip.Config{Name: "a"})
		defer c.Close()
		bus := spibridge.NewInProcess(c, spibridge.DefaultTiming(), nil)
		defer bus.Close()
		srv := NewServer(bus, ServerConfig{Name: "a"})
		defer srv.Close()
		cl := newPipeClient(t, srv, ClientConfig{})
		defer cl.Close()
		ctx := context.Background()

		tx, err := proto.TxFrameWrite(proto.SendNow(64+4, proto.PriorityBestEffort), make([]byte, 64))
		if err != nil {
			t.Fatal(err)
		}
		for _, mosi := range [][]byte{proto.RegRead(regs.TSNMACAddr + 4), proto.RxMetaRead(), proto.RegWrite(regs.TSNSystemControl+4, 1), tx} {
			local := make([]byte, len(mosi))
			start := time.Now()
			if err := bus.Transfer(ctx, mosi, local); err != nil {
				t.Fatal(err)
			}
			inProcess := time.Since(start)

			socketPeer := make([]byte, len(mosi))
			start = time.Now()
			if err := cl.Transfer(ctx, mosi, socketPeer); err != nil {
				t.Fatal(err)
			}
			overSocket := time.Since(start)
			want := spibridge.DefaultTiming().Duration(len(mosi))
			if overSocket != want || inProcess != want {
				t.Errorf("%d-byte transfer (% x...): %v over the socket, %v in-process, model %v", len(mosi), mosi[:3], overSocket, inProcess, want)
			}
			if !bytes.Equal(socketPeer, local) {
				t.Errorf("%d-byte transfer: MISO over the socket % x, in-process % x", len(mosi), socketPeer, local)
			}
		}
		if got := c.Register(regs.TSNSystemControl); got&1 != 1 {
			t.Errorf("register write over the socket not applied: TSN_SYSTEM_CONTROL = %#x", got)
		}
		// Two connections: requests, and interrupts.
		if st := srv.Stats(); st.Requests != 4 || st.Failed != 0 || st.Accepted != 2 || st.Active != 2 {
			t.Errorf("server stats %+v", st)
		}
	})
}

// holdTwice fails the first two transfers by timeout-after: each holds
// the bus for its whole timeout.
type holdTwice struct {
	mu sync.Mutex
	n  int
}

func (h *holdTwice) Decide(int, byte) spibridge.SPIFault {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.n++
	return spibridge.SPIFault{TimeoutAfter: h.n <= 2}
}

// TestSocketWaiterIsNotTimed: over the socket the bus follows Linux's
// timeout rule as in-process: a transfer queued behind two that each hold
// the bus for their whole 500 ms Linux timeout is not timed while it
// waits (about 1 s); it runs when they are done and succeeds.
func TestSocketWaiterIsNotTimed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		bus := spibridge.NewInProcess(newFakeDev(), spibridge.DefaultTiming(), nil)
		defer bus.Close()
		bus.SetFaults(&holdTwice{})
		srv := NewServer(bus, ServerConfig{})
		defer srv.Close()
		cl := newPipeClient(t, srv, ClientConfig{})
		defer cl.Close()
		ctx := context.Background()

		timeout := spibridge.DefaultTiming().TimeoutFor(7)
		start := time.Now()
		var wg sync.WaitGroup
		for range 2 {
			wg.Go(func() {
				if err := cl.Transfer(ctx, proto.RegWrite(0x0294, 1), make([]byte, 7)); !errors.Is(err, syscall.ETIMEDOUT) {
					t.Errorf("holder: %v, want ETIMEDOUT (injected timeout-after)", err)
				}
			})
			synctest.Wait()
		}
		err := cl.Transfer(ctx, proto.RegRead(0x0288), make([]byte, 8))
		if got, want := time.Since(start), 2*timeout+spibridge.DefaultTiming().Duration(8); err != nil || got != want {
			t.Errorf("queued transfer: %v at %v, want success at %v (waiting is not timed)", err, got, want)
		}
		wg.Wait()
		if st := cl.Stats(); st.Transfers != 1 || st.Errors[syscall.ETIMEDOUT] != 2 || st.Disconnects != 0 {
			t.Errorf("client stats %+v", st)
		}
		if st := srv.Stats(); st.Requests != 3 || st.Failed != 2 {
			t.Errorf("server stats %+v", st)
		}
	})
}

// TestSocketConcurrentInFlight: several goroutines share one connection;
// each gets the answer to its own MOSI, and the transfers queue on the
// bus exactly as in-process. More callers than the client's in-flight
// bound wait for a slot.
func TestSocketConcurrentInFlight(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		bus := spibridge.NewInProcess(echoDev{make(chan struct{})}, spibridge.DefaultTiming(), nil)
		defer bus.Close()
		srv := NewServer(bus, ServerConfig{})
		defer srv.Close()
		cl := newPipeClient(t, srv, ClientConfig{MaxInFlight: 3})
		defer cl.Close()
		const callers, each = 6, 20
		start := time.Now()
		var wg sync.WaitGroup
		for g := range callers {
			wg.Go(func() {
				for i := range each {
					tx := []byte{proto.CmdWrite, byte(g), byte(i), 1, 2, 3, 4}
					rx := make([]byte, len(tx))
					if err := cl.Transfer(context.Background(), tx, rx); err != nil {
						t.Error(err)
						return
					}
					for k := range tx {
						if rx[k] != ^tx[k] {
							t.Errorf("caller %d transfer %d: MISO % x is not the answer to % x", g, i, rx, tx)
							return
						}
					}
				}
			})
		}
		wg.Wait()
		if got, want := time.Since(start), callers*each*spibridge.DefaultTiming().Duration(7); got != want {
			t.Errorf("%d transfers took %v, want back to back on the bus: %v", callers*each, got, want)
		}
		if st := cl.Stats(); st.Transfers != callers*each || len(st.Errors) != 0 {
			t.Errorf("client stats %+v", st)
		}
		if st := bus.Stats(); st.Transfers != callers*each || st.Timeouts != 0 {
			t.Errorf("bus stats %+v", st)
		}
	})
}

// TestSocketServerBusy: a raw client over the server's in-flight bound
// gets EBUSY results; the connection stays up and serves the rest.
func TestSocketServerBusy(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dev := newFakeDev()
		dev.block = 10 * time.Millisecond
		bus := spibridge.NewInProcess(dev, spibridge.DefaultTiming(), nil)
		defer bus.Close()
		srv := NewServer(bus, ServerConfig{MaxInFlight: 1})
		defer srv.Close()
		c, res := rawConn(srv)
		writeAll(t, c, appendHello(nil, 0))
		w := readN(t, c, 45)
		if w[42] != 0 || w[43] != 1 {
			t.Errorf("server hello advertises in-flight % x, want 00 01", w[42:44])
		}
		req := func(id byte) []byte {
			return unhex(t, fmt.Sprintf("00 00 00 0d 03  00 00 00 %02x  02 32 88 00 00 00 00 00", id))
		}
		writeAll(t, c, req(1))
		writeAll(t, c, req(2))
		busy := readN(t, c, 10)
		if want := unhex(t, "04  00 00 00 02  04"); !bytes.Equal(busy[4:], want) {
			t.Errorf("second request: % x, want a busy result (status 4) for id 2", busy)
		}
		readN(t, c, int(busy[3])-6) // its text
		ok := readN(t, c, 18)
		if ok[8] != 1 || ok[9] != statusOK {
			t.Errorf("first request: % x, want an OK result for id 1", ok)
		}
		writeAll(t, c, req(3))
		if ok := readN(t, c, 18); ok[8] != 3 || ok[9] != statusOK {
			t.Errorf("third request: % x, want an OK result for id 3", ok)
		}
		c.Close()
		if err := <-res; err != nil {
			t.Errorf("ServeConn: %v", err)
		}
		if st := srv.Stats(); st.Busy != 1 || st.Requests != 3 || st.Failed != 1 || len(st.ProtocolErrors) != 0 {
			t.Errorf("server stats %+v", st)
		}
	})
}

// TestSocketClientGivesUp: a server that never answers: the transfer
// fails with ETIMEDOUT at the advertised timeout plus the grace, the
// client drops the connection, fails fast with ENOTCONN while it
// reconnects with exponential backoff (10, 20, 40... ms, at most the
// configured maximum), then resumes and signals an interrupt edge.
func TestSocketClientGivesUp(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		type attempt struct{ at time.Duration }
		var (
			mu       sync.Mutex
			attempts []time.Duration
			refuse   = false
			mute     = true
		)
		start := time.Now()
		bus := spibridge.NewInProcess(echoDev{make(chan struct{})}, spibridge.DefaultTiming(), nil)
		defer bus.Close()
		srv := NewServer(bus, ServerConfig{})
		defer srv.Close()
		var servers sync.WaitGroup
		defer servers.Wait()
		dial := func(ctx context.Context) (net.Conn, error) {
			mu.Lock()
			defer mu.Unlock()
			attempts = append(attempts, time.Since(start))
			if refuse {
				return nil, &net.OpError{Op: "dial", Net: "pipe", Err: syscall.ECONNREFUSED}
			}
			c, s := net.Pipe()
			if mute {
				// Answers the hello, then reads requests and never answers.
				servers.Go(func() {
					defer s.Close()
					readN(t, s, 13)
					writeAll(t, s, unhex(t, goldenWelcome))
					buf := make([]byte, 64)
					for {
						if _, err := s.Read(buf); err != nil {
							return
						}
					}
				})
			} else {
				go srv.ServeConn(context.Background(), s)
			}
			return c, nil
		}
		cl, err := NewClient(dial, ClientConfig{BackoffMin: 10 * time.Millisecond, BackoffMax: 50 * time.Millisecond, Grace: 100 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		mu.Lock()
		refuse, mute = true, false
		mu.Unlock()

		issued := time.Now()
		err = cl.Transfer(context.Background(), proto.RegRead(0x0288), make([]byte, 8))
		if got := time.Since(issued); !errors.Is(err, syscall.ETIMEDOUT) || got != 600*time.Millisecond {
			t.Errorf("unanswered transfer: %v after %v, want ETIMEDOUT after 500ms + 100ms grace", err, got)
		}
		err = cl.Transfer(context.Background(), proto.RegRead(0x0288), make([]byte, 8))
		if !errors.Is(err, syscall.ENOTCONN) || time.Since(issued) != 600*time.Millisecond {
			t.Errorf("transfer while disconnected: %v, want ENOTCONN at once", err)
		}
		time.Sleep(200 * time.Millisecond)
		mu.Lock()
		refuse = false
		mu.Unlock()
		select {
		case <-cl.Interrupt():
		case <-time.After(time.Second):
			t.Fatal("no interrupt edge after the reconnect")
		}
		if err := cl.Transfer(context.Background(), proto.RegRead(0x0288), make([]byte, 8)); err != nil {
			t.Errorf("transfer after the reconnect: %v", err)
		}
		mu.Lock()
		// Dial (requests, interrupts) at 0, then after the loss at 600ms,
		// retries 10, 20, 40, 50, 50... ms apart; the one after 800ms
		// succeeds (both connections).
		want := []time.Duration{0, 0, 600, 610, 630, 670, 720, 770, 820, 820}
		for i := range want {
			want[i] *= time.Millisecond
		}
		if fmt.Sprint(attempts) != fmt.Sprint(want) {
			t.Errorf("dial attempts at %v, want %v", attempts, want)
		}
		mu.Unlock()
		st := cl.Stats()
		if st.Disconnects != 1 || st.Reconnects != 1 || st.DialFailures != 6 || st.Errors[syscall.ETIMEDOUT] != 1 ||
			st.Errors[syscall.ENOTCONN] != 1 || st.Transfers != 1 || !st.Connected {
			t.Errorf("client stats %+v", st)
		}
	})
}

// TestSocketInterrupts: edges go to the connections that asked for them
// only; an edge raised while nobody listens waits on the line for the
// first subscriber, as in-process.
func TestSocketInterrupts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dev := newFakeDev()
		bus := spibridge.NewInProcess(dev, spibridge.DefaultTiming(), nil)
		defer bus.Close()
		srv := NewServer(bus, ServerConfig{})
		defer srv.Close()
		dev.irq <- struct{}{} // before anyone connects

		tool := newPipeClient(t, srv, ClientConfig{NoInterrupts: true})
		defer tool.Close()
		drv := newPipeClient(t, srv, ClientConfig{})
		defer drv.Close()
		synctest.Wait()
		if !edgePending(drv.Interrupt()) {
			t.Error("driver missed the edge raised before it connected")
		}
		for range 3 {
			dev.irq <- struct{}{}
			synctest.Wait()
			if !edgePending(drv.Interrupt()) {
				t.Error("driver missed an edge")
			}
		}
		if edgePending(tool.Interrupt()) {
			t.Error("register tool got an edge it did not ask for")
		}
		drv.Close()
		synctest.Wait()
		dev.irq <- struct{}{} // nobody listening: stays on the line
		synctest.Wait()
		drv2 := newPipeClient(t, srv, ClientConfig{})
		defer drv2.Close()
		synctest.Wait()
		if !edgePending(drv2.Interrupt()) {
			t.Error("new driver missed the edge raised while nobody listened")
		}
		// 5 edges; the level a subscriber is told at its hello may come
		// as a message of its own or coalesce with the pending edge.
		if st := srv.Stats(); st.Interrupts < 5 || st.Interrupts > 7 {
			t.Errorf("server sent %d interrupt messages, want 5-7", st.Interrupts)
		}
	})
}

func edgePending(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// TestSocketContextCancel: a transfer already sent completes even if its
// context ends meanwhile (like spi_sync, so the caller always learns
// whether the chip acted).
func TestSocketContextCancel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dev := newFakeDev()
		dev.block = 10 * time.Millisecond
		bus := spibridge.NewInProcess(dev, spibridge.DefaultTiming(), nil)
		defer bus.Close()
		srv := NewServer(bus, ServerConfig{})
		defer srv.Close()
		cl := newPipeClient(t, srv, ClientConfig{MaxInFlight: 1})
		defer cl.Close()
		ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
		defer cancel()
		rx := make([]byte, 8)
		start := time.Now()
		if err := cl.Transfer(ctx, proto.RegRead(0x0288), rx); err != nil || rx[4] != 0xA5 {
			t.Errorf("transfer whose context ended on the wire: % x, %v", rx, err)
		}
		if took := time.Since(start); took < dev.block {
			t.Errorf("returned after %v, before the chip answered", took)
		}
		if st := cl.Stats(); st.Transfers != 1 || st.Cancelled != 0 || st.Disconnects != 0 {
			t.Errorf("client stats %+v", st)
		}
	})
}

// TestSocketClientErrors: bad buffers, oversized transfers and Close.
func TestSocketClientErrors(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dev := newFakeDev()
		dev.block = 10 * time.Millisecond
		bus := spibridge.NewInProcess(dev, spibridge.DefaultTiming(), nil)
		defer bus.Close()
		srv := NewServer(bus, ServerConfig{})
		defer srv.Close()
		cl := newPipeClient(t, srv, ClientConfig{})
		ctx := context.Background()
		for _, tc := range []struct {
			tx, rx []byte
			want   syscall.Errno
		}{
			{nil, nil, syscall.EINVAL},
			{proto.RegRead(0), make([]byte, 7), syscall.EINVAL},
			{make([]byte, MaxTransfer+1), make([]byte, MaxTransfer+1), syscall.EMSGSIZE},
		} {
			if err := cl.Transfer(ctx, tc.tx, tc.rx); !errors.Is(err, tc.want) {
				t.Errorf("transfer of %d into %d bytes: %v, want %v", len(tc.tx), len(tc.rx), err, tc.want)
			}
		}
		// The largest transfer goes through.
		big := make([]byte, MaxTransfer)
		if err := cl.Transfer(ctx, big, make([]byte, len(big))); err != nil {
			t.Errorf("%d-byte transfer: %v", len(big), err)
		}
		// Close with a transfer in flight: it fails with EBADF.
		var wg sync.WaitGroup
		var inFlight error
		wg.Go(func() { inFlight = cl.Transfer(ctx, proto.RegRead(0), make([]byte, 8)) })
		synctest.Wait()
		if err := cl.Close(); err != nil {
			t.Fatal(err)
		}
		wg.Wait()
		if !errors.Is(inFlight, syscall.EBADF) {
			t.Errorf("transfer in flight at Close: %v, want EBADF", inFlight)
		}
		if err := cl.Transfer(ctx, proto.RegRead(0), make([]byte, 8)); !errors.Is(err, syscall.EBADF) {
			t.Errorf("transfer after Close: %v, want EBADF", err)
		}
		if err := cl.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
	})
}

// TestSocketServerClose: Close ends the connections (in-flight transfers
// fail with ECONNRESET), waits for its goroutines and refuses later
// connections; the bus stays open.
func TestSocketServerClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dev := newFakeDev()
		dev.block = 10 * time.Millisecond
		bus := spibridge.NewInProcess(dev, spibridge.DefaultTiming(), nil)
		defer bus.Close()
		srv := NewServer(bus, ServerConfig{})
		cl, err := NewClient(pipeDialer(srv, nil), ClientConfig{BackoffMin: time.Hour, BackoffMax: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		var wg sync.WaitGroup
		var inFlight error
		wg.Go(func() { inFlight = cl.Transfer(context.Background(), proto.RegRead(0), make([]byte, 8)) })
		synctest.Wait()
		srv.Close()
		wg.Wait()
		if !errors.Is(inFlight, syscall.ECONNRESET) {
			t.Errorf("transfer in flight at server Close: %v, want ECONNRESET", inFlight)
		}
		if len(dev.calls()) != 1 {
			t.Errorf("the transfer on the wire did not complete on the bus")
		}
		c, res := rawConn(srv)
		if err := <-res; err == nil {
			t.Error("ServeConn after Close succeeded")
		}
		c.Close()
		ln, _ := net.Listen("tcp", "127.0.0.1:0")
		if err := srv.Serve(context.Background(), ln); err == nil {
			t.Error("Serve after Close succeeded")
		}
		if st := srv.Stats(); st.Active != 0 || st.Closed != 2 || st.IOErrors != 0 {
			t.Errorf("server stats %+v", st)
		}
	})
}

// TestSocketMaxConns: each pool (drivers', register-only) is bounded on
// its own; over its bound a connection is refused with an error message
// and the client's error wraps ECONNREFUSED. Register-only clients that
// fill their pool do not keep a driver out.
func TestSocketMaxConns(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		bus := spibridge.NewInProcess(newFakeDev(), spibridge.DefaultTiming(), nil)
		defer bus.Close()
		srv := NewServer(bus, ServerConfig{MaxConns: 2, MaxDriverConns: 2})
		defer srv.Close()
		var tools []*Client
		for range 2 {
			tl := newPipeClient(t, srv, ClientConfig{NoInterrupts: true})
			defer tl.Close()
			tools = append(tools, tl)
		}
		// FullWait -1: the refusals themselves are under test, not the
		// retry (TestFullPoolWaited).
		if _, err := NewClient(pipeDialer(srv, nil), ClientConfig{NoInterrupts: true, FullWait: -1}); !errors.Is(err, syscall.ECONNREFUSED) ||
			!strings.Contains(err.Error(), "register-only") {
			t.Errorf("third register tool: %v, want ECONNREFUSED", err)
		}
		cl := newPipeClient(t, srv, ClientConfig{}) // requests and interrupts: both driver slots
		defer cl.Close()
		_, err := NewClient(pipeDialer(srv, nil), ClientConfig{FullWait: -1})
		if !errors.Is(err, syscall.ECONNREFUSED) || !strings.Contains(err.Error(), "driver connections") {
			t.Errorf("second driver: %v, want ECONNREFUSED", err)
		}
		if err := cl.Transfer(context.Background(), proto.RegRead(0), make([]byte, 8)); err != nil {
			t.Errorf("first client after the refusals: %v", err)
		}
		for _, tl := range tools {
			if err := tl.Transfer(context.Background(), proto.RegRead(0), make([]byte, 8)); err != nil {
				t.Errorf("register tool after the refusals: %v", err)
			}
		}
		if st := srv.Stats(); st.Refused != 2 || st.Accepted != 4 {
			t.Errorf("server stats %+v", st)
		}
	})
}

// TestFullPoolWaited: a driver refused because the server's driver pool
// is full keeps trying for FullWait, and gets in when a slot frees (a
// driver that was refused and exits a moment earlier); with the pool
// full for longer than FullWait the refusal stands.
func TestFullPoolWaited(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		bus := spibridge.NewInProcess(newFakeDev(), spibridge.DefaultTiming(), nil)
		defer bus.Close()
		srv := NewServer(bus, ServerConfig{MaxDriverConns: 2})
		defer srv.Close()
		first := newPipeClient(t, srv, ClientConfig{}) // both driver slots
		start := time.Now()
		time.AfterFunc(300*time.Millisecond, func() { first.Close() })
		second, err := NewClient(pipeDialer(srv, nil), ClientConfig{})
		if err != nil {
			t.Fatalf("driver after a slot freed: %v", err)
		}
		defer second.Close()
		if took := time.Since(start); took < 300*time.Millisecond || took > 700*time.Millisecond {
			t.Errorf("got in after %v, want soon after the slot freed at 300ms", took)
		}
		if err := second.Transfer(context.Background(), proto.RegRead(0), make([]byte, 8)); err != nil {
			t.Errorf("transfer: %v", err)
		}
		start = time.Now()
		_, err = NewClient(pipeDialer(srv, nil), ClientConfig{FullWait: time.Second})
		if !errors.Is(err, syscall.ECONNREFUSED) || !errors.Is(err, errServerFull) || !strings.Contains(err.Error(), "driver connections") {
			t.Errorf("driver with the pool full throughout: %v, want ECONNREFUSED", err)
		}
		if took := time.Since(start); took > time.Second {
			t.Errorf("gave up after %v, want within FullWait (1s)", took)
		}
	})
}

// TestSocketMalformedInput: each malformed stream closes only its own
// connection, after an error message naming the reason, and is counted by
// reason; a client on another connection keeps working throughout.
func TestSocketMalformedInput(t *testing.T) {
	const clientHello = goldenHello
	for _, tc := range []struct {
		name, in string
		reason   closeReason
		hangUp   bool // close our end after writing (a stream cut short)
	}{
		{"short header", clientHello + " 00 00 00", reasonShort, true},
		{"short body", clientHello + " 00 00 00 0d 03 00 00 00 01 02 32", reasonShort, true},
		{"short hello", "00 00 00 09 01 54 53", reasonShort, true},
		{"oversized length", clientHello + " ff ff ff ff 03", reasonOversized, false},
		{"oversized before hello", "00 10 00 00 01", reasonOversized, false},
		{"length zero", clientHello + " 00 00 00 00 03", reasonBadLength, false},
		{"bad magic", "00 00 00 09 01 58 58 58 58 00 01 00 01", reasonBadMagic, false},
		{"bad version", "00 00 00 09 01 54 53 4e 42 00 02 00 01", reasonBadVersion, false},
		{"long version 1 hello", "00 00 00 0b 01 54 53 4e 42 00 01 00 01 00 00", reasonBadLength, false},
		{"hello without version", "00 00 00 05 01 54 53 4e 42", reasonBadLength, false},
		{"unknown type", clientHello + " 00 00 00 01 7f", reasonUnknownType, false},
		{"server message from a client", clientHello + " 00 00 00 01 05", reasonUnexpected, false},
		{"transfer before hello", goldenRequest, reasonUnexpected, false},
		{"second hello", clientHello + " " + clientHello, reasonUnexpected, false},
		{"empty transfer", clientHello + " 00 00 00 05 03 00 00 00 01", reasonBadLength, false},
		{"transfer over the limit", clientHello + " 00 00 10 06 03 00 00 00 01", reasonBadLength, false},
		{"silence", "", reasonHelloTimeout, false},
		{"length zero, no type byte yet", clientHello + " 00 00 00 00", reasonBadLength, false},
		{"oversized, no type byte yet", clientHello + " 00 01 00 00", reasonOversized, false},
		{"quiet after the hello", goldenHelloNoIRQ, reasonIdle, false},
		{"stops inside a message", clientHello + " 00 00 00 0d 03 00 00", reasonMessageTimeout, false},
		{"stops inside a header", clientHello + " 00 00", reasonMessageTimeout, false},
		{"stops inside the hello", "00 00 00 09 01 54", reasonHelloTimeout, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				bus := spibridge.NewInProcess(echoDev{make(chan struct{})}, spibridge.DefaultTiming(), nil)
				defer bus.Close()
				srv := NewServer(bus, ServerConfig{})
				defer srv.Close()
				good := newPipeClient(t, srv, ClientConfig{})
				defer good.Close()

				c, res := rawConn(srv)
				defer c.Close()
				got := make(chan []byte, 1)
				go func() {
					var all []byte
					buf := make([]byte, 256)
					for {
						n, err := c.Read(buf)
						all = append(all, buf[:n]...)
						if err != nil {
							got <- all
							return
						}
					}
				}()
				c.Write(unhex(t, tc.in))
				if tc.hangUp {
					synctest.Wait() // the server hello has been read
					c.Close()
				}
				err := <-res
				var pe *ProtocolError
				if !errors.As(err, &pe) || pe.Reason != tc.reason.String() || !errors.Is(err, syscall.EPROTO) {
					t.Fatalf("ServeConn: %v, want a protocol error %q", err, tc.reason)
				}
				reply := <-got
				if !tc.hangUp {
					// The last message is the error message with the reason's code.
					var last []byte
					for len(reply) >= frameHeaderLen {
						n := int(reply[3]) + 4 // all replies here are short
						last, reply = reply[:n], reply[n:]
					}
					if len(last) < 6 || msgType(last[4]) != msgError || closeReason(last[5]) != tc.reason {
						t.Errorf("server's last message % x, want an error message with code %d", last, tc.reason)
					}
				}
				tx := proto.RegRead(0x0288)
				if err := good.Transfer(context.Background(), tx, make([]byte, len(tx))); err != nil {
					t.Errorf("the other connection broke: %v", err)
				}
				st := srv.Stats()
				if st.ProtocolErrors[tc.reason.String()] != 1 || len(st.ProtocolErrors) != 1 || st.Active != 2 || st.Closed != 1 {
					t.Errorf("server stats %+v", st)
				}
				if st := good.Stats(); st.Disconnects != 0 || st.Transfers != 1 {
					t.Errorf("other client's stats %+v", st)
				}
			})
		})
	}
}

// TestSocketUnthrottledStuckRequest: with an unthrottled bus the reading
// goroutine runs requests itself; when one blocks (here a device that
// holds the bus 100 ms), the watchdog passes the reading role on within
// two of its 1 ms periods, so the next request on the same connection
// still reaches the bus and queues there. Waiting for the bus is not
// timed (Linux's rule, 50 ms bus timeout here), so it completes right
// after the stuck one, as it would in-process.
func TestSocketUnthrottledStuckRequest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dev := newFakeDev()
		dev.block = 100 * time.Millisecond
		bus := spibridge.NewInProcess(dev, spibridge.Timing{Timeout: 50 * time.Millisecond}, nil)
		defer bus.Close()
		srv := NewServer(bus, ServerConfig{})
		defer srv.Close()
		cl := newPipeClient(t, srv, ClientConfig{})
		defer cl.Close()
		start := time.Now()
		var wg sync.WaitGroup
		var stuckErr error
		var stuckDone time.Duration
		wg.Go(func() {
			stuckErr = cl.Transfer(context.Background(), proto.RegWrite(0x0294, 1), make([]byte, 7))
			stuckDone = time.Since(start)
		})
		synctest.Wait()
		err := cl.Transfer(context.Background(), proto.RegRead(0x0288), make([]byte, 8))
		if got, want := time.Since(start), 100*time.Millisecond; err != nil || got != want {
			t.Errorf("request behind the stuck one: %v after %v, want success after %v", err, got, want)
		}
		wg.Wait()
		if stuckErr != nil || stuckDone != 100*time.Millisecond {
			t.Errorf("stuck request: %v after %v, want success after 100ms", stuckErr, stuckDone)
		}
		// Back to the cheap path: later requests run in the reading goroutine.
		for range 3 {
			if err := cl.Transfer(context.Background(), proto.RegRead(0x0288), make([]byte, 8)); err != nil {
				t.Fatal(err)
			}
		}
		if st := cl.Stats(); st.Transfers != 5 || st.Disconnects != 0 {
			t.Errorf("client stats %+v", st)
		}
	})
}
