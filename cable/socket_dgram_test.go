package cable

import (
	"bytes"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"tsnsim/chip/proto"
)

// sockUDPPeer is a plain UDP socket on 127.0.0.1 standing for the far
// end (a QEMU -netdev dgram).
func sockUDPPeer(t *testing.T) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// sockReadDatagram reads one datagram from c or fails the test.
func sockReadDatagram(t *testing.T, c *net.UDPConn) []byte {
	t.Helper()
	if err := c.SetReadDeadline(time.Now().Add(sockTimeout)); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 65536)
	n, err := c.Read(b)
	if err != nil {
		t.Fatal(err)
	}
	return b[:n]
}

// TestDgramGolden: a frame from the cable leaves as one datagram holding
// exactly the frame without FCS, sent to the remote; a datagram from the
// remote reaches the wire with its FCS appended (short ones padded
// first); datagrams from any other address and empty ones are dropped
// and counted.
func TestDgramGolden(t *testing.T) {
	sockNoLeaks(t)
	peer := sockUDPPeer(t)
	p := sockOpen(t, "dgram:udp:127.0.0.1:0:"+peer.LocalAddr().String(), nil)
	rec := newSockRecorder()
	p.ConnectPHY(rec)
	if err := p.WaitConnected(sockCtx(t)); err != nil {
		t.Fatal(err)
	}

	frame := sockGoldenFrame()
	p.ReceivePHY(sockWireFrame(frame), time.Now())
	if got := sockReadDatagram(t, peer); !bytes.Equal(got, frame) {
		t.Fatalf("datagram\n got % x\nwant % x", got, frame)
	}

	to := p.Addr().(*net.UDPAddr)
	stranger := sockUDPPeer(t)
	for _, tc := range []struct {
		from *net.UDPConn
		b    []byte
	}{
		{stranger, frame}, // not the remote: dropped
		{peer, nil},       // empty: dropped
		{peer, frame},
		{peer, sockShortFrame()},
	} {
		if _, err := tc.from.WriteToUDP(tc.b, to); err != nil {
			t.Fatal(err)
		}
	}
	if got := rec.next(t).frame; !bytes.Equal(got, append(frame, sockGoldenFCS...)) {
		t.Fatalf("wire frame\n got % x\nwant % x + % x", got, frame, sockGoldenFCS)
	}
	padded := make([]byte, proto.MinFrameLen)
	copy(padded, sockShortFrame())
	if got := rec.next(t).frame; !bytes.Equal(got, append(padded, sockShortFCS...)) {
		t.Fatalf("short frame\n got % x\nwant % x + % x", got, padded, sockShortFCS)
	}
	if s := p.Stats(); !s.Connected || s.Peer != peer.LocalAddr().String() {
		t.Fatalf("peer in stats %+v", s)
	}
	if err := p.Close(); err != nil { // the writer counts after its write returns
		t.Fatal(err)
	}
	s := p.Stats()
	if s.TxFrames != 1 || s.TxBytes != 60 || s.RxFrames != 2 || s.RxPadded != 1 || s.RxForeign != 1 ||
		s.RxMalformed != 1 || s.Connects != 1 || s.Disconnects != 1 {
		t.Fatalf("stats %+v", s)
	}
}

// TestDgramOpenErrors: a multicast remote is refused as not implemented,
// an unspecified one as meaningless, and a busy local port with the OS
// error.
func TestDgramOpenErrors(t *testing.T) {
	sockNoLeaks(t)
	busy := sockUDPPeer(t)
	for _, tc := range []struct{ spec, want string }{
		{"dgram:udp:127.0.0.1:0:239.1.2.3:5555", "not implemented"},
		{"dgram:udp:127.0.0.1:0:0.0.0.0:5555", "want a concrete address"},
		{fmt.Sprintf("dgram:udp:%s:127.0.0.1:5555", busy.LocalAddr()), "address already in use"},
	} {
		cfg, err := ParseSocketEnd(tc.spec)
		if err != nil {
			t.Fatal(err)
		}
		_, err = OpenSocketEnd(sockCtx(t), cfg, zap.NewNop())
		if err == nil || !strings.HasPrefix(err.Error(), "cable: ") || !strings.Contains(err.Error(), tc.want) {
			t.Fatalf("%s: %v, want %q", tc.spec, err, tc.want)
		}
	}
}
