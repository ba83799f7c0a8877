package netstack

import (
	"bytes"
	"context"
	"io"
	"net/netip"
	"testing"
	"time"

	"go.uber.org/goleak"

	"tsnsim/host"
)

// wire is a host.NIC that hands every frame straight to another stack.
type wire struct{ peer *Stack }

func (w wire) Transmit(f []byte) error { w.peer.Receive(f); return nil }
func (wire) QueueStopped() bool        { return false }
func (wire) Wake() <-chan struct{}     { return nil }

var _ host.NIC = wire{}

func pair(t *testing.T) (a, b *Stack) {
	t.Helper()
	mk := func(i byte) *Stack {
		s, err := New(Config{Name: string('a' + i - 1), MAC: []byte{2, 0, 0, 0, 0, i},
			Addrs: []netip.Prefix{netip.MustParsePrefix("10.9.0." + string('0'+i) + "/24"), netip.MustParsePrefix("fd09::" + string('0'+i) + "/64")}})
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

func TestPingARPAndTCP(t *testing.T) {
	defer goleak.VerifyNone(t)
	a, b := pair(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	mac, err := a.ResolveLink(ctx, netip.MustParseAddr("10.9.0.2"))
	if err != nil || mac.String() != "02:00:00:00:00:02" {
		t.Fatalf("ARP: %v, %v", mac, err)
	}
	for _, peer := range []string{"10.9.0.2", "fd09::2"} {
		p, err := a.NewPinger(netip.MustParseAddr(peer))
		if err != nil {
			t.Fatal(err)
		}
		for seq := range uint16(3) {
			if _, err := p.Ping(seq, 56, 2*time.Second); err != nil {
				t.Errorf("ping %s seq %d: %v", peer, seq, err)
			}
		}
		p.Close()
	}

	l, err := b.ListenTCP(5001, false)
	if err != nil {
		t.Fatal(err)
	}
	payload := bytes.Repeat([]byte("tsnsim"), 100_000)
	got := make(chan []byte, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			got <- nil
			return
		}
		defer c.Close()
		data, _ := io.ReadAll(c)
		got <- data
	}()
	c, err := a.DialTCP(ctx, netip.MustParseAddrPort("10.9.0.2:5001"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write(payload); err != nil {
		t.Fatal(err)
	}
	c.Close()
	if data := <-got; !bytes.Equal(data, payload) {
		t.Errorf("TCP: received %d bytes, want %d identical", len(data), len(payload))
	}
	l.Close()
	a.Close()
	b.Close()
	if s := a.Stats(); s.Sent == 0 || s.Received == 0 || s.SendDropped != 0 {
		t.Errorf("stats %+v", s)
	}
}
