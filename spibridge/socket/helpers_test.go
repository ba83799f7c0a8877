package socket

import (
	"context"
	"encoding/hex"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// unhex decodes a spaced hex string ("00 01 ...").
func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// pipeDialer returns a dialer that serves each connection it makes on
// srv over a net.Pipe, and counts the dials on dials (if not nil).
func pipeDialer(srv *Server, dials chan<- struct{}) func(ctx context.Context) (net.Conn, error) {
	return func(ctx context.Context) (net.Conn, error) {
		if dials != nil {
			dials <- struct{}{}
		}
		c, s := net.Pipe()
		go srv.ServeConn(context.Background(), s)
		return c, nil
	}
}

// rawConn opens a raw connection to srv: the client end and the result
// of ServeConn.
func rawConn(srv *Server) (net.Conn, <-chan error) {
	c, s := net.Pipe()
	res := make(chan error, 1)
	go func() { res <- srv.ServeConn(context.Background(), s) }()
	return c, res
}

// readN reads exactly n bytes from c, failing the test after a
// (virtual) second.
func readN(t *testing.T, c net.Conn, n int) []byte {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(time.Second))
	b := make([]byte, n)
	if _, err := io.ReadFull(c, b); err != nil {
		t.Fatalf("reading %d bytes: %v (got % x)", n, err, b)
	}
	return b
}

// writeAll writes b to c, failing the test after a (virtual) second.
func writeAll(t *testing.T, c net.Conn, b []byte) {
	t.Helper()
	c.SetWriteDeadline(time.Now().Add(time.Second))
	if _, err := c.Write(b); err != nil {
		t.Fatalf("writing % x: %v", b, err)
	}
}

// newPipeClient connects a client to srv over net.Pipe.
func newPipeClient(t *testing.T, srv *Server, cfg ClientConfig) *Client {
	t.Helper()
	cl, err := NewClient(pipeDialer(srv, nil), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cl
}

// fakeDev is a chip stand-in for the server's bus: it answers every byte
// with 0xA5, records when each transaction came, can block the next one
// for a while (block) and has an interrupt line the test drives (irq).
type fakeDev struct {
	mu    sync.Mutex
	at    []time.Time
	block time.Duration
	irq   chan struct{}
}

func newFakeDev() *fakeDev { return &fakeDev{irq: make(chan struct{}, 1)} }

func (d *fakeDev) Transact(mosi, miso []byte) error {
	d.mu.Lock()
	d.at = append(d.at, time.Now())
	block := d.block
	d.block = 0
	d.mu.Unlock()
	for i := range miso {
		miso[i] = 0xA5
	}
	if block > 0 {
		time.Sleep(block)
	}
	return nil
}

func (d *fakeDev) IRQ() <-chan struct{} { return d.irq }

func (d *fakeDev) calls() []time.Time {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]time.Time(nil), d.at...)
}

// pending drains c and returns how many values it held.
func pending(c <-chan struct{}) int {
	n := 0
	for {
		select {
		case <-c:
			n++
		default:
			return n
		}
	}
}
