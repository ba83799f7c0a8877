package netstack

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/icmp"
	"gvisor.dev/gvisor/pkg/waiter"
)

func fullAddr(a netip.AddrPort) (tcpip.FullAddress, tcpip.NetworkProtocolNumber) {
	proto := ipv4.ProtocolNumber
	if a.Addr().Is6() {
		proto = ipv6.ProtocolNumber
	}
	return tcpip.FullAddress{NIC: nicID, Addr: tcpip.AddrFromSlice(a.Addr().Unmap().AsSlice()), Port: a.Port()}, proto
}

// ListenTCP listens for TCP connections on port of the stack's addresses.
// v6 selects IPv6.
func (st *Stack) ListenTCP(port uint16, v6 bool) (net.Listener, error) {
	addr := tcpip.FullAddress{NIC: nicID, Port: port}
	proto := ipv4.ProtocolNumber
	if v6 {
		proto = ipv6.ProtocolNumber
	}
	return gonet.ListenTCP(st.s, addr, proto)
}

// ListenUDP binds a UDP socket to port on the stack's addresses; v6
// selects IPv6. The connection's ReadFrom and WriteTo exchange datagrams
// with any peer.
func (st *Stack) ListenUDP(port uint16, v6 bool) (net.PacketConn, error) {
	addr := tcpip.FullAddress{NIC: nicID, Port: port}
	proto := ipv4.ProtocolNumber
	if v6 {
		proto = ipv6.ProtocolNumber
	}
	return gonet.DialUDP(st.s, &addr, nil, proto)
}

// DialUDP opens a UDP socket connected to addr.
func (st *Stack) DialUDP(addr netip.AddrPort) (net.Conn, error) {
	fa, proto := fullAddr(addr)
	return gonet.DialUDP(st.s, nil, &fa, proto)
}

// DialTCP opens a TCP connection to addr.
func (st *Stack) DialTCP(ctx context.Context, addr netip.AddrPort) (net.Conn, error) {
	fa, proto := fullAddr(addr)
	return gonet.DialContextTCP(ctx, st.s, fa, proto)
}

// ResolveLink resolves addr to a link address through the stack's
// neighbour machinery: ARP for IPv4, NDP for IPv6. It returns at once if
// the neighbour is cached.
func (st *Stack) ResolveLink(ctx context.Context, addr netip.Addr) (net.HardwareAddr, error) {
	fa, proto := fullAddr(netip.AddrPortFrom(addr, 0))
	done := make(chan tcpip.LinkAddress, 1)
	fail := make(chan tcpip.Error, 1)
	onResolve := func(r stack.LinkResolutionResult) {
		if r.Err != nil {
			fail <- r.Err
			return
		}
		done <- r.LinkAddress
	}
	for {
		err := st.s.GetLinkAddress(nicID, fa.Addr, tcpip.Address{}, proto, onResolve)
		if err != nil {
			if _, ok := err.(*tcpip.ErrWouldBlock); !ok {
				return nil, fmt.Errorf("netstack: resolve %v: %v", addr, err)
			}
		}
		select {
		case la := <-done:
			return net.HardwareAddr(la), nil
		case err := <-fail:
			if _, ok := err.(*tcpip.ErrTimeout); ok {
				continue // the stack gave up one round; keep asking until ctx ends
			}
			return nil, fmt.Errorf("netstack: resolve %v: %v", addr, err)
		case <-ctx.Done():
			return nil, fmt.Errorf("netstack: resolve %v: %w", addr, ctx.Err())
		}
	}
}

// Pinger sends ICMP echo requests from a stack to one peer, like a ping
// socket. It is not safe for concurrent use.
type Pinger struct {
	st   *Stack
	ep   tcpip.Endpoint
	wq   waiter.Queue
	v6   bool
	peer netip.Addr
}

// NewPinger opens an ICMP echo endpoint to peer.
func (st *Stack) NewPinger(peer netip.Addr) (*Pinger, error) {
	p := &Pinger{st: st, v6: peer.Is6(), peer: peer}
	tp, np := icmp.ProtocolNumber4, ipv4.ProtocolNumber
	if p.v6 {
		tp, np = icmp.ProtocolNumber6, ipv6.ProtocolNumber
	}
	ep, err := st.s.NewEndpoint(tp, np, &p.wq)
	if err != nil {
		return nil, fmt.Errorf("netstack: ICMP endpoint: %v", err)
	}
	fa, _ := fullAddr(netip.AddrPortFrom(peer, 0))
	if err := ep.Connect(fa); err != nil {
		ep.Close()
		return nil, fmt.Errorf("netstack: ICMP connect %v: %v", peer, err)
	}
	p.ep = ep
	return p, nil
}

// Close releases the endpoint.
func (p *Pinger) Close() { p.ep.Close() }

// ErrPingTimeout is returned by Ping when no reply came in time.
var ErrPingTimeout = errors.New("netstack: no echo reply")

// Ping sends one echo request with seq and size payload bytes and waits
// up to timeout for its reply; it returns the round-trip time.
func (p *Pinger) Ping(seq uint16, size int, timeout time.Duration) (time.Duration, error) {
	msg := make([]byte, header.ICMPv4MinimumSize+size)
	if p.v6 {
		h := header.ICMPv6(msg)
		h.SetType(header.ICMPv6EchoRequest)
		h.SetSequence(seq)
	} else {
		h := header.ICMPv4(msg)
		h.SetType(header.ICMPv4Echo)
		h.SetSequence(seq)
	}
	for i := header.ICMPv4MinimumSize; i < len(msg); i++ {
		msg[i] = byte(i)
	}
	entry, ch := waiter.NewChannelEntry(waiter.EventIn)
	p.wq.EventRegister(&entry)
	defer p.wq.EventUnregister(&entry)
	start := time.Now()
	if _, err := p.ep.Write(bytes.NewReader(msg), tcpip.WriteOptions{}); err != nil {
		return 0, fmt.Errorf("netstack: ping %v: %v", p.peer, err)
	}
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		var buf bytes.Buffer
		_, err := p.ep.Read(&buf, tcpip.ReadOptions{})
		if err == nil {
			if p.isReply(buf.Bytes(), seq, len(msg)) {
				return time.Since(start), nil
			}
			continue // a late reply to an earlier request
		}
		if _, ok := err.(*tcpip.ErrWouldBlock); !ok {
			return 0, fmt.Errorf("netstack: ping %v: %v", p.peer, err)
		}
		select {
		case <-ch:
		case <-deadline.C:
			return 0, fmt.Errorf("%w from %v for seq %d within %v", ErrPingTimeout, p.peer, seq, timeout)
		}
	}
}

func (p *Pinger) isReply(b []byte, seq uint16, n int) bool {
	if len(b) != n || len(b) < header.ICMPv4MinimumSize {
		return false
	}
	if p.v6 {
		return header.ICMPv6(b).Type() == header.ICMPv6EchoReply && binary.BigEndian.Uint16(b[6:]) == seq
	}
	return header.ICMPv4(b).Type() == header.ICMPv4EchoReply && header.ICMPv4(b).Sequence() == seq
}
