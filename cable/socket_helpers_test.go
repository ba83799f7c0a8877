package cable

import (
	"context"
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap/zaptest"

	"tsnsim/chip/proto"
)

// sockTimeout bounds every wait on real sockets in these tests: a
// failure bound, not a timing claim.
const sockTimeout = 10 * time.Second

// sockNoLeaks checks, after every other cleanup of t has run, that no
// goroutine is left behind.
func sockNoLeaks(t *testing.T) {
	t.Helper()
	t.Cleanup(func() { goleak.VerifyNone(t) })
}

// sockCtx returns a context bounded by sockTimeout.
func sockCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), sockTimeout)
	t.Cleanup(cancel)
	return ctx
}

// sockOpen parses spec, applies tweak and opens the socket end; it is
// closed when the test ends.
func sockOpen(t *testing.T, spec string, tweak func(*SocketEndConfig)) *SocketPort {
	t.Helper()
	cfg, err := ParseSocketEnd(spec)
	if err != nil {
		t.Fatal(err)
	}
	if tweak != nil {
		tweak(&cfg)
	}
	p, err := OpenSocketEnd(sockCtx(t), cfg, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return p
}

// sockRecv is one frame a socket end sent into its wire.
type sockRecv struct {
	frame []byte
	sof   time.Time
}

// sockRecorder is a chip.Wire standing for the local cable: it records
// what a socket end read from its socket.
type sockRecorder struct{ ch chan sockRecv }

func newSockRecorder() *sockRecorder { return &sockRecorder{ch: make(chan sockRecv, 1024)} }

// Send implements chip.Wire.
func (r *sockRecorder) Send(frame []byte, sof time.Time) { r.ch <- sockRecv{frame, sof} }

// next returns the next recorded frame or fails the test.
func (r *sockRecorder) next(t *testing.T) sockRecv {
	t.Helper()
	select {
	case v := <-r.ch:
		return v
	case <-time.After(sockTimeout):
		t.Fatal("no frame reached the wire")
		return sockRecv{}
	}
}

// sockGoldenFrame is a 60-byte broadcast ARP-typed frame without FCS:
// ff*6, 02:00:00:00:00:01, 0806, then bytes 00..2d.
func sockGoldenFrame() []byte {
	f := []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0, 0, 0, 0, 0x01, 0x08, 0x06}
	for i := range 46 {
		f = append(f, byte(i))
	}
	return f
}

// sockGoldenFCS is the FCS of sockGoldenFrame as on the wire (CRC-32
// IEEE, least significant byte first).
var sockGoldenFCS = []byte{0x01, 0x84, 0x31, 0x2b}

// sockShortFrame is a 42-byte frame (an unpadded ARP as a QEMU guest
// sends it); sockShortFCS is the FCS of it zero-padded to 60 bytes.
func sockShortFrame() []byte {
	f := []byte{0x02, 0, 0, 0, 0, 0x01, 0x02, 0, 0, 0, 0, 0x02, 0x08, 0x06}
	for i := range 28 {
		f = append(f, byte(0xa0+i))
	}
	return f
}

var sockShortFCS = []byte{0xbf, 0x97, 0x4d, 0x13}

// sockWireFrame returns frame with a valid FCS, as a cable delivers it.
func sockWireFrame(frame []byte) []byte {
	return proto.AppendFCS(append([]byte(nil), frame...))
}

// sockReadFull reads exactly n bytes from conn or fails the test.
func sockReadFull(t *testing.T, conn net.Conn, n int) []byte {
	t.Helper()
	if err := conn.SetReadDeadline(time.Now().Add(sockTimeout)); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(conn, b); err != nil {
		t.Fatalf("reading %d bytes: %v", n, err)
	}
	return b
}

// sockExpectEOF reads conn until the far side closes it, or fails.
func sockExpectEOF(t *testing.T, conn net.Conn) {
	t.Helper()
	if err := conn.SetReadDeadline(time.Now().Add(sockTimeout)); err != nil {
		t.Fatal(err)
	}
	// A reset also ends it: closing a socket with unread input sends RST.
	if _, err := io.Copy(io.Discard, conn); err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("want the socket end to close the connection, got %v", err)
	}
}

// sockDial dials addr or fails the test; the connection is closed when
// the test ends.
func sockDial(t *testing.T, addr net.Addr) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: sockTimeout}
	c, err := d.DialContext(sockCtx(t), addr.Network(), addr.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// sockStreamBytes frames payload the QEMU stream way.
func sockStreamBytes(payload []byte) []byte {
	n := len(payload)
	return append([]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}, payload...)
}

// sockFreeUDPPort returns a UDP port on 127.0.0.1 that was free a
// moment ago.
func sockFreeUDPPort(t testing.TB) int {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}
