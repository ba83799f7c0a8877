// Package netstack attaches an embedded userspace TCP/IP stack (gVisor's
// netstack) to a driver core: the default, rootless host backend. It is
// the only package of tsnsim that imports gVisor.
//
// Frames the driver receives are injected into the stack's Ethernet link
// endpoint on the driver's SPI worker, as netif_rx runs in the driver's
// context. Frames the stack sends wait in a transmit queue (the qdisc,
// QueueLen packets, like txqueuelen) and one goroutine offers them to the
// driver with NETDEV_TX_BUSY requeue semantics.
package netstack

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"

	"go.uber.org/zap"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	"gvisor.dev/gvisor/pkg/tcpip/link/ethernet"
	"gvisor.dev/gvisor/pkg/tcpip/network/arp"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/icmp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"

	"tsnsim/host"
)

// Defaults for Config fields left zero.
const (
	DefaultMTU      = 1500
	DefaultQueueLen = 1000 // Linux txqueuelen
)

const nicID tcpip.NICID = 1

// Config sets up one node's stack.
type Config struct {
	Name     string           // node name, for logs
	MAC      net.HardwareAddr // the NIC's address: the chip's TSN_MAC_ADDR
	Addrs    []netip.Prefix   // IPv4 and IPv6 addresses with their subnets
	MTU      uint32
	QueueLen int
	Logger   *zap.Logger
}

// Stack is one node's userspace TCP/IP stack.
type Stack struct {
	cfg Config
	log *zap.Logger
	s   *stack.Stack
	ep  *channel.Endpoint

	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once

	mu    sync.Mutex
	stats Stats
}

// Stats is the frame accounting between the stack and the driver.
type Stats struct {
	Received    uint64 // frames injected into the stack
	Sent        uint64 // frames the driver took
	SendDropped uint64 // frames the driver dropped (ErrDown, too long)
	// QueueDropped counts packets the stack could not queue because the
	// transmit queue was full (gVisor's TxPacketsDroppedNoBufferSpace).
	QueueDropped uint64
	Queued       int // packets waiting in the transmit queue
}

// New creates a stack with IPv4, IPv6, ARP, ICMP, TCP and UDP, one Ethernet
// NIC with cfg.MAC, and cfg.Addrs assigned with on-link routes.
func New(cfg Config) (*Stack, error) {
	if len(cfg.MAC) != 6 {
		return nil, fmt.Errorf("netstack: MAC %v is not a 6-byte Ethernet address", cfg.MAC)
	}
	if cfg.MTU == 0 {
		cfg.MTU = DefaultMTU
	}
	if cfg.QueueLen <= 0 {
		cfg.QueueLen = DefaultQueueLen
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	s := stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol, ipv6.NewProtocol, arp.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol, udp.NewProtocol, icmp.NewProtocol4, icmp.NewProtocol6},
		HandleLocal:        true,
	})
	ep := channel.New(cfg.QueueLen, cfg.MTU, tcpip.LinkAddress(cfg.MAC))
	if err := s.CreateNIC(nicID, ethernet.New(ep)); err != nil {
		s.Destroy()
		return nil, fmt.Errorf("netstack: create NIC: %v", err)
	}
	var routes []tcpip.Route
	for _, p := range cfg.Addrs {
		proto := ipv4.ProtocolNumber
		if p.Addr().Is6() {
			proto = ipv6.ProtocolNumber
		}
		pa := tcpip.ProtocolAddress{Protocol: proto, AddressWithPrefix: tcpip.AddressWithPrefix{
			Address: tcpip.AddrFromSlice(p.Addr().AsSlice()), PrefixLen: p.Bits()}}
		if err := s.AddProtocolAddress(nicID, pa, stack.AddressProperties{}); err != nil {
			s.Destroy()
			return nil, fmt.Errorf("netstack: add address %v: %v", p, err)
		}
		routes = append(routes, tcpip.Route{Destination: pa.AddressWithPrefix.Subnet(), NIC: nicID})
	}
	s.SetRouteTable(routes)
	return &Stack{cfg: cfg, log: cfg.Logger.Named("netstack").With(zap.String("node", cfg.Name)), s: s, ep: ep}, nil
}

// Receive implements host.Backend: it injects one Ethernet frame.
func (st *Stack) Receive(frame []byte) bool {
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(frame)})
	st.ep.InjectInbound(0, pkt) // the Ethernet endpoint reads the EtherType itself
	pkt.DecRef()
	st.count(func(s *Stats) { s.Received++ })
	return true
}

// Attach implements host.Backend: it starts offering the stack's
// outbound frames to nic.
func (st *Stack) Attach(nic host.NIC) error {
	if st.done != nil {
		return errors.New("netstack: already attached")
	}
	ctx, cancel := context.WithCancel(context.Background())
	st.cancel, st.done = cancel, make(chan struct{})
	go st.transmitter(ctx, nic)
	return nil
}

// transmitter is the qdisc: it moves queued packets to the driver.
func (st *Stack) transmitter(ctx context.Context, nic host.NIC) {
	defer close(st.done)
	st.log.Debug("transmitter started")
	defer st.log.Debug("transmitter stopped")
	for {
		pkt := st.ep.ReadContext(ctx)
		if pkt == nil {
			return
		}
		v := pkt.ToView()
		frame := append([]byte(nil), v.AsSlice()...)
		v.Release()
		pkt.DecRef()
		err := host.Offer(ctx, nic, frame)
		switch {
		case err == nil:
			st.count(func(s *Stats) { s.Sent++ })
		case ctx.Err() != nil:
			st.count(func(s *Stats) { s.SendDropped++ })
			return
		default:
			st.count(func(s *Stats) { s.SendDropped++ })
			st.log.Debug("driver dropped a frame", zap.Error(err))
		}
	}
}

// Close implements host.Backend: it stops the transmitter and destroys
// the stack, closing every connection.
func (st *Stack) Close() error {
	st.once.Do(func() {
		if st.cancel != nil {
			st.cancel()
			<-st.done
		}
		st.s.Destroy()
		st.ep.Close()
	})
	return nil
}

// Stats returns the frame accounting.
func (st *Stack) Stats() Stats {
	st.mu.Lock()
	s := st.stats
	st.mu.Unlock()
	s.QueueDropped = st.s.Stats().NICs.TxPacketsDroppedNoBufferSpace.Value()
	s.Queued = st.ep.NumQueued()
	return s
}

func (st *Stack) count(f func(*Stats)) {
	st.mu.Lock()
	f(&st.stats)
	st.mu.Unlock()
}

var _ host.Backend = (*Stack)(nil)
