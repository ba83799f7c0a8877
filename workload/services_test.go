package workload

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"tsnsim/host"
	"tsnsim/host/netstack"
)

// wire is a host.NIC that hands every frame straight to another stack.
type wire struct{ peer *netstack.Stack }

func (w wire) Transmit(f []byte) error { w.peer.Receive(f); return nil }
func (wire) QueueStopped() bool        { return false }
func (wire) Wake() <-chan struct{}     { return nil }

var _ host.NIC = wire{}

func stackPair(t *testing.T) (a, b *netstack.Stack) {
	t.Helper()
	mk := func(i byte) *netstack.Stack {
		s, err := netstack.New(netstack.Config{Name: string('a' + i - 1), MAC: []byte{2, 0, 0, 0, 0, i},
			Addrs: []netip.Prefix{netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 8, 0, i}), 24),
				netip.PrefixFrom(netip.AddrFrom16([16]byte{0: 0xfd, 1: 8, 15: i}), 64)}})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	a, b = mk(1), mk(2)
	if err := a.Attach(wire{b}); err != nil {
		t.Fatal(err)
	}
	if err := b.Attach(wire{a}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// TestServices drives every service from a peer stack: TCP echo both
// ways at once (IPv4 and IPv6), discard, source checked against the
// character generator's pattern, UDP echo and discard; then Close ends
// an open connection and the stats add up.
func TestServices(t *testing.T) {
	defer goleak.VerifyNone(t)
	node, peer := stackPair(t)
	var mu sync.Mutex
	var lines []string
	svc, err := Serve(node, true, func(l string) { mu.Lock(); lines = append(lines, l); mu.Unlock() })
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const n = 1 << 20
	for _, addr := range []string{"10.8.0.1", "fd08::1"} {
		c, err := peer.DialTCP(ctx, netip.AddrPortFrom(netip.MustParseAddr(addr), EchoPort))
		if err != nil {
			t.Fatal(err)
		}
		data := make([]byte, n)
		rand.NewChaCha8([32]byte{1}).Read(data)
		go func() {
			c.Write(data)
			c.(interface{ CloseWrite() error }).CloseWrite()
		}()
		got, err := io.ReadAll(c)
		c.Close()
		if err != nil || !bytes.Equal(got, data) {
			t.Errorf("echo %s: %d bytes back, want %d identical (%v)", addr, len(got), n, err)
		}
	}

	c, err := peer.DialTCP(ctx, netip.MustParseAddrPort("10.8.0.1:9"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write(make([]byte, n)); err != nil {
		t.Fatal(err)
	}
	c.Close()

	c, err = peer.DialTCP(ctx, netip.MustParseAddrPort("10.8.0.1:19"))
	if err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 200_000)
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	want := make([]byte, len(got))
	SourceReader().Read(want)
	if !bytes.Equal(got, want) {
		t.Error("source: stream differs from the character generator's")
	}
	if !bytes.HasPrefix(got, []byte(" !\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefg\r\n!\"#")) {
		t.Errorf("source: starts %q", got[:80])
	}
	c.Close()

	u, err := peer.DialUDP(netip.MustParseAddrPort("10.8.0.1:7"))
	if err != nil {
		t.Fatal(err)
	}
	u.SetReadDeadline(time.Now().Add(5 * time.Second))
	for i := range 3 {
		msg := []byte(strings.Repeat("x", 100+i))
		if _, err := u.Write(msg); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 2000)
		k, err := u.Read(buf)
		if err != nil || !bytes.Equal(buf[:k], msg) {
			t.Errorf("udp echo %d: %q %v", i, buf[:k], err)
		}
	}
	u.Close()
	u, err = peer.DialUDP(netip.MustParseAddrPort("10.8.0.1:9"))
	if err != nil {
		t.Fatal(err)
	}
	u.Write([]byte("gone"))
	u.Close()

	// Wait for the four TCP connections to end (the discard service may
	// still be reading what the peer sent before it closed).
	waitFor(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(lines) == 4 })
	// An open connection is closed by Close.
	open, err := peer.DialTCP(ctx, netip.MustParseAddrPort("10.8.0.1:9"))
	if err != nil {
		t.Fatal(err)
	}
	open.Write([]byte("hello"))
	waitFor(t, func() bool { s := svc.Stats(); return s[1].Conns == 2 && s[4].Conns == 1 })
	svc.Close()
	open.Close()
	node.Close()
	peer.Close()

	byName := map[string]ServiceStats{}
	for _, s := range svc.Stats() {
		byName[s.Name] = s
	}
	if s := byName["tcp echo"]; s.Conns != 2 || s.BytesIn != 2*n || s.BytesOut != 2*n || s.Errors != 0 {
		t.Errorf("tcp echo: %+v", s)
	}
	if s := byName["tcp discard"]; s.Conns != 2 || s.BytesIn < n || s.BytesIn > n+5 || s.Errors != 0 {
		t.Errorf("tcp discard: %+v", s)
	}
	if s := byName["tcp source"]; s.Conns != 1 || s.BytesOut < 200_000 || s.Errors != 0 {
		t.Errorf("tcp source: %+v", s)
	}
	if s := byName["udp echo"]; s.Conns != 3 || s.BytesIn != 303 || s.BytesOut != 303 {
		t.Errorf("udp echo: %+v", s)
	}
	if s := byName["udp discard"]; s.Conns != 1 || s.BytesIn != 4 || s.BytesOut != 0 {
		t.Errorf("udp discard: %+v", s)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(lines) != 5 || !strings.Contains(strings.Join(lines, "\n"), "tcp echo from 10.8.0.2:") {
		t.Errorf("report lines:\n%s", strings.Join(lines, "\n"))
	}
}

// waitFor polls cond (real time: the stacks run their own goroutines)
// for up to 10 s.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 10s")
		}
	}
}
