package cable

import (
	"bytes"
	"encoding/hex"
	"errors"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"

	"tsnsim/chip/proto"
)

// TestStreamGolden: a known frame from the cable leaves on the stream as
// exactly its 4-byte big-endian length and its bytes, FCS stripped; a
// frame from the stream reaches the wire with its FCS appended, least
// significant byte first, and a 42-byte frame is zero-padded to 60
// bytes before the FCS. Over TCP and unix sockets.
func TestStreamGolden(t *testing.T) {
	for _, spec := range []string{"stream-listen:tcp:127.0.0.1:0", "stream-listen:unix:" + filepath.Join(t.TempDir(), "g.sock")} {
		t.Run(spec[len("stream-listen:"):][:4], func(t *testing.T) {
			sockNoLeaks(t)
			p := sockOpen(t, spec, nil)
			rec := newSockRecorder()
			p.ConnectPHY(rec)
			conn := sockDial(t, p.Addr())
			if err := p.WaitConnected(sockCtx(t)); err != nil {
				t.Fatal(err)
			}

			// Cable to socket.
			frame := sockGoldenFrame()
			p.ReceivePHY(sockWireFrame(frame), time.Now())
			want, _ := hex.DecodeString("0000003c" + "ffffffffffff" + "020000000001" + "0806" +
				"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f" +
				"202122232425262728292a2b2c2d")
			if got := sockReadFull(t, conn, len(want)); !bytes.Equal(got, want) {
				t.Fatalf("stream bytes\n got % x\nwant % x", got, want)
			}

			// Socket to cable: the golden frame, then a short one.
			if _, err := conn.Write(append(want, sockStreamBytes(sockShortFrame())...)); err != nil {
				t.Fatal(err)
			}
			if got := rec.next(t).frame; !bytes.Equal(got, append(frame, sockGoldenFCS...)) {
				t.Fatalf("wire frame\n got % x\nwant % x + % x", got, frame, sockGoldenFCS)
			}
			padded := make([]byte, proto.MinFrameLen)
			copy(padded, sockShortFrame())
			if got := rec.next(t).frame; !bytes.Equal(got, append(padded, sockShortFCS...)) {
				t.Fatalf("short frame on the wire\n got % x\nwant % x + % x", got, padded, sockShortFCS)
			}
			if s := p.Stats(); !s.Connected || s.Connects != 1 {
				t.Fatalf("peer in stats %+v", s)
			}
			if err := p.Close(); err != nil { // the writer counts after its write returns
				t.Fatal(err)
			}
			s := p.Stats()
			if s.TxOffered != 1 || s.TxFrames != 1 || s.TxBytes != 60 || s.RxFrames != 2 || s.RxBytes != 60+42 ||
				s.RxPadded != 1 {
				t.Fatalf("stats %+v", s)
			}
		})
	}
}

// TestStreamMalformedInput: a zero length, a length over the bound and a
// stream that ends inside a frame each close that connection, with a
// counter, without allocating the announced length; a frame longer than
// the chip's maximum but within the bound is still delivered (the chip
// counts it as a jumbo drop); the listener accepts a new peer after each
// disconnect and refuses a second peer while one is connected.
func TestStreamMalformedInput(t *testing.T) {
	sockNoLeaks(t)
	const bound = 2000
	p := sockOpen(t, "stream-listen:tcp:127.0.0.1:0", func(c *SocketEndConfig) { c.MaxFrame = bound })
	rec := newSockRecorder()
	p.ConnectPHY(rec)

	for _, tc := range []struct {
		name  string
		input []byte
	}{
		{"zero length", []byte{0, 0, 0, 0}},
		{"length 0xffffffff", []byte{0xff, 0xff, 0xff, 0xff}},
		{"length bound+1", []byte{0, 0, (bound + 1) >> 8, (bound + 1) & 0xff}},
		{"truncated frame", []byte{0, 0, 0, 100, 1, 2, 3}},
		{"truncated length", []byte{0, 0}},
	} {
		conn := sockDial(t, p.Addr())
		if _, err := conn.Write(tc.input); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		// The stream ends here: the socket end must close it on the bad
		// length, or see it end inside a frame.
		if err := conn.(*net.TCPConn).CloseWrite(); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		sockExpectEOF(t, conn)
		if err := p.waitFor(sockCtx(t), "the disconnect", func(s SocketStats) bool { return !s.Connected }); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
	}
	s := p.Stats()
	if s.RxMalformed != 1 || s.RxOversized != 2 || s.RxTruncated != 2 || s.RxFrames != 0 {
		t.Fatalf("after bad input: %+v", s)
	}

	// A good peer: a jumbo frame within the bound is delivered as is.
	conn := sockDial(t, p.Addr())
	if err := p.WaitConnected(sockCtx(t)); err != nil {
		t.Fatal(err)
	}
	jumbo := bytes.Repeat([]byte{0x5a}, proto.MaxWireLen+40)
	if _, err := conn.Write(sockStreamBytes(jumbo)); err != nil {
		t.Fatal(err)
	}
	if got := rec.next(t).frame; len(got) != len(jumbo)+proto.FCSLen || !proto.FCSValid(got) {
		t.Fatalf("jumbo frame: %d bytes, FCS valid %v", len(got), proto.FCSValid(got))
	}

	// A second peer meanwhile is refused.
	extra := sockDial(t, p.Addr())
	sockExpectEOF(t, extra)

	s = p.Stats()
	if s.Connects != 6 || s.Reconnects != 5 || s.Disconnects != 5 || s.Rejected != 1 || s.RxFrames != 1 || !s.Connected {
		t.Fatalf("after a good peer: %+v", s)
	}
}

// TestStreamConnectReconnect: stream-connect dials, exchanges frames,
// notices the peer going away, counts frames offered meanwhile as lost,
// redials with backoff (failed dials counted) and carries frames again on
// the new connection. Over unix and TCP.
func TestStreamConnectReconnect(t *testing.T) {
	for _, network := range []string{"unix", "tcp"} {
		t.Run(network, func(t *testing.T) {
			sockNoLeaks(t)
			addr := filepath.Join(t.TempDir(), "peer.sock")
			if network == "tcp" {
				addr = "127.0.0.1:0"
			}
			ln, err := net.Listen(network, addr)
			if err != nil {
				t.Fatal(err)
			}
			addr = ln.Addr().String()
			p := sockOpen(t, "stream-connect:"+network+":"+addr, func(c *SocketEndConfig) {
				c.ReconnectMin, c.ReconnectMax = 5*time.Millisecond, 20*time.Millisecond
			})
			rec := newSockRecorder()
			p.ConnectPHY(rec)

			accept := func(ln net.Listener) net.Conn {
				t.Helper()
				type deadliner interface{ SetDeadline(time.Time) error }
				if err := ln.(deadliner).SetDeadline(time.Now().Add(sockTimeout)); err != nil {
					t.Fatal(err)
				}
				c, err := ln.Accept()
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = c.Close() })
				return c
			}
			exchange := func(c net.Conn, seed byte) {
				t.Helper()
				if err := p.WaitConnected(sockCtx(t)); err != nil {
					t.Fatal(err)
				}
				f := bytes.Repeat([]byte{seed}, 64)
				p.ReceivePHY(sockWireFrame(f), time.Now())
				if got := sockReadFull(t, c, 4+64); !bytes.Equal(got, sockStreamBytes(f)) {
					t.Fatalf("stream bytes % x", got)
				}
				if _, err := c.Write(sockStreamBytes(f)); err != nil {
					t.Fatal(err)
				}
				if got := rec.next(t).frame; !bytes.Equal(got, sockWireFrame(f)) {
					t.Fatalf("wire frame % x", got)
				}
			}

			c1 := accept(ln)
			exchange(c1, 1)
			if a := p.Addr(); network == "tcp" && (a == nil || a.String() != c1.RemoteAddr().String()) {
				t.Fatalf("Addr %v, want the connection's local address %v", a, c1.RemoteAddr())
			}

			// The peer goes away: frames meanwhile are lost, counted.
			if err := ln.Close(); err != nil {
				t.Fatal(err)
			}
			if err := c1.Close(); err != nil {
				t.Fatal(err)
			}
			if err := p.waitFor(sockCtx(t), "the disconnect", func(s SocketStats) bool { return !s.Connected }); err != nil {
				t.Fatal(err)
			}
			for range 3 {
				p.ReceivePHY(sockWireFrame(make([]byte, 60)), time.Now())
			}
			if s := p.Stats(); s.TxLostDisconnected != 3 || s.Connected || p.Addr() != nil {
				t.Fatalf("while disconnected: %+v, Addr %v", s, p.Addr())
			}

			// Let two dials fail, then come back on the same address.
			if err := p.waitFor(sockCtx(t), "failed dials", func(s SocketStats) bool { return s.DialErrors >= 2 }); err != nil {
				t.Fatal(err)
			}
			ln2, err := net.Listen(network, addr)
			if err != nil {
				t.Fatal(err)
			}
			defer ln2.Close()
			c2 := accept(ln2)
			exchange(c2, 2)

			if err := p.Close(); err != nil {
				t.Fatal(err)
			}
			s := p.Stats()
			if s.Connects != 2 || s.Reconnects != 1 || s.Disconnects != 2 || s.DialErrors < 2 {
				t.Fatalf("peer counters %+v", s)
			}
			if s.TxOffered != 5 || s.TxFrames != 2 || s.TxLostDisconnected != 3 || s.RxFrames != 2 {
				t.Fatalf("frame counters %+v", s)
			}
		})
	}
}

// TestStreamSlowPeerOverflow: a peer that stops reading never blocks
// the cable: ReceivePHY returns at once, the writer queue overflows
// (counted), the stuck write times out, the connection is closed with a
// reason, and after Close every offered frame is in exactly one counter.
func TestStreamSlowPeerOverflow(t *testing.T) {
	sockNoLeaks(t)
	p := sockOpen(t, "stream-listen:unix:"+filepath.Join(t.TempDir(), "slow.sock"), func(c *SocketEndConfig) {
		c.Queue = 4
		c.WriteTimeout = 200 * time.Millisecond
	})
	p.ConnectPHY(newSockRecorder())
	conn := sockDial(t, p.Addr()) // never reads
	if err := p.WaitConnected(sockCtx(t)); err != nil {
		t.Fatal(err)
	}
	big := sockWireFrame(make([]byte, 60000))
	const n = 200 // 12 MB: far more than the socket buffers hold
	for range n {
		p.ReceivePHY(big, time.Now())
	}
	if err := p.waitFor(sockCtx(t), "the disconnect", func(s SocketStats) bool { return !s.Connected }); err != nil {
		t.Fatal(err)
	}
	sockExpectEOF(t, conn)
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	s := p.Stats()
	if s.TxQueueOverflow == 0 || s.TxWriteErrors == 0 {
		t.Fatalf("want overflow and a timed-out write: %+v", s)
	}
	if sum := s.TxFrames + s.TxQueueOverflow + s.TxWriteErrors + s.TxLostDisconnected + s.TxBadFCS + s.TxRunt; sum != n || s.TxOffered != n {
		t.Fatalf("offered %d, accounted %d: %+v", s.TxOffered, sum, s)
	}
}

// TestSocketBadFCSAndRunt: a frame whose FCS a cable fault broke is not
// repaired by stripping it: it is dropped and counted, as is a frame
// with nothing before its FCS.
func TestSocketBadFCSAndRunt(t *testing.T) {
	sockNoLeaks(t)
	p := sockOpen(t, "stream-listen:tcp:127.0.0.1:0", nil)
	p.ConnectPHY(newSockRecorder())
	conn := sockDial(t, p.Addr())
	if err := p.WaitConnected(sockCtx(t)); err != nil {
		t.Fatal(err)
	}
	bad := sockWireFrame(sockGoldenFrame())
	bad[20] ^= 0x04
	p.ReceivePHY(bad, time.Now())
	p.ReceivePHY(proto.AppendFCS(nil), time.Now())
	p.ReceivePHY([]byte{1, 2}, time.Now())
	good := sockGoldenFrame()
	p.ReceivePHY(sockWireFrame(good), time.Now())
	// Only the good frame is on the stream.
	if got := sockReadFull(t, conn, 4+len(good)); !bytes.Equal(got, sockStreamBytes(good)) {
		t.Fatalf("stream % x", got)
	}
	if err := p.Close(); err != nil { // the writer counts after its write returns
		t.Fatal(err)
	}
	s := p.Stats()
	if s.TxOffered != 4 || s.TxBadFCS != 1 || s.TxRunt != 2 || s.TxFrames != 1 {
		t.Fatalf("stats %+v", s)
	}
}

// TestStreamListenUnixPath: a stale socket file left by a dead process
// is replaced; a live listener's path is refused with EADDRINUSE; a path
// that is not a socket is never removed.
func TestStreamListenUnixPath(t *testing.T) {
	sockNoLeaks(t)
	dir := t.TempDir()
	stale := filepath.Join(dir, "stale.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	p := sockOpen(t, "stream-listen:unix:"+stale, nil)
	if p.Addr().String() != stale {
		t.Fatalf("Addr %v", p.Addr())
	}

	cfg, _ := ParseSocketEnd("stream-listen:unix:" + stale)
	if _, err := OpenSocketEnd(sockCtx(t), cfg, zap.NewNop()); !errors.Is(err, syscall.EADDRINUSE) {
		t.Fatalf("second listener on a live path: %v, want EADDRINUSE", err)
	}

	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, _ = ParseSocketEnd("stream-listen:unix:" + file)
	if _, err := OpenSocketEnd(sockCtx(t), cfg, zap.NewNop()); !errors.Is(err, syscall.EADDRINUSE) {
		t.Fatalf("listener on a regular file: %v, want EADDRINUSE", err)
	}
	if b, err := os.ReadFile(file); err != nil || string(b) != "keep" {
		t.Fatalf("regular file touched: %q, %v", b, err)
	}
}
