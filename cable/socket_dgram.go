package cable

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"go.uber.org/zap"
)

// dgramBufferSize holds any UDP payload (at most 65507 bytes over IPv4,
// 65527 over IPv6 without jumbograms).
const dgramBufferSize = 64 << 10

// openDgram binds the local UDP socket, resolves the remote address and
// starts the reader and the writer. The remote is the one permanent
// peer: the port counts as connected from here until Close.
func (p *SocketPort) openDgram(ctx context.Context) error {
	remote, err := resolveUDP(ctx, p.cfg.Remote)
	if err != nil {
		return fmt.Errorf("cable: socket end %v: remote: %w", p.cfg, err)
	}
	switch {
	case remote.Addr().IsMulticast():
		return fmt.Errorf("cable: socket end %v: multicast remote %v: not implemented", p.cfg, remote.Addr())
	case remote.Addr().IsUnspecified():
		return fmt.Errorf("cable: socket end %v: remote %v: want a concrete address", p.cfg, remote.Addr())
	}
	var lc net.ListenConfig
	pc, err := lc.ListenPacket(ctx, "udp", p.cfg.Address)
	if err != nil {
		return fmt.Errorf("cable: socket end %v: listen: %w", p.cfg, err)
	}
	conn := pc.(*net.UDPConn)
	p.addr = conn.LocalAddr()
	p.closer = conn.Close
	p.mu.Lock()
	peer, _ := p.attachLocked(remote.String(), nil)
	p.mu.Unlock()
	p.log.Info("datagram socket bound", zap.Stringer("local", p.addr), zap.Stringer("remote", remote))
	p.wg.Add(2)
	go func() {
		defer p.wg.Done()
		p.dgramWriter(conn, peer, remote)
	}()
	go func() {
		defer p.wg.Done()
		p.dgramReader(conn, peer, remote)
	}()
	return nil
}

// resolveUDP resolves HOST:PORT, preferring an IPv4 address for a name.
func resolveUDP(ctx context.Context, hostPort string) (netip.AddrPort, error) {
	host, portStr, err := net.SplitHostPort(hostPort)
	if err != nil {
		return netip.AddrPort{}, err
	}
	port, err := net.DefaultResolver.LookupPort(ctx, "udp", portStr)
	if err != nil {
		return netip.AddrPort{}, err
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		return netip.AddrPortFrom(ip.Unmap(), uint16(port)), nil
	}
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip4", host)
	if err != nil || len(ips) == 0 {
		ips, err = net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	}
	if err != nil {
		return netip.AddrPort{}, err
	}
	if len(ips) == 0 {
		return netip.AddrPort{}, fmt.Errorf("no address for %q", host)
	}
	return netip.AddrPortFrom(ips[0].Unmap(), uint16(port)), nil
}

// dgramWriter sends each queued frame as one datagram to the remote. A
// failed send (no route, ICMP refused reported by the kernel, buffer
// full past WriteTimeout) loses that frame only: it is counted and the
// writer goes on.
func (p *SocketPort) dgramWriter(conn *net.UDPConn, peer *socketPeer, remote netip.AddrPort) {
	p.log.Debug("datagram writer started")
	defer p.log.Debug("datagram writer stopped")
	failures := 0
	for f := range peer.q {
		if p.ctx.Err() != nil {
			p.count(func(s *SocketStats) { s.TxLostDisconnected++ })
			continue
		}
		err := conn.SetWriteDeadline(time.Now().Add(p.cfg.WriteTimeout))
		if err == nil {
			_, err = conn.WriteToUDPAddrPort(f, remote)
		}
		if err != nil {
			p.count(func(s *SocketStats) { s.TxWriteErrors++ })
			failures++
			lvl := zap.DebugLevel
			if failures == 1 {
				lvl = zap.WarnLevel
			}
			if p.ctx.Err() == nil {
				p.log.Log(lvl, "datagram send failed; frame lost", zap.Error(err), zap.Int("failures", failures))
			}
			continue
		}
		failures = 0
		p.count(func(s *SocketStats) { s.TxFrames++; s.TxBytes += uint64(len(f)) })
	}
}

// dgramReader delivers each datagram from the remote as one frame.
// Datagrams from any other address are dropped and counted (QEMU
// accepts them; a cable end does not let strangers onto the link), as
// are empty and oversized ones. It detaches the peer when the socket is
// closed, which ends the writer.
func (p *SocketPort) dgramReader(conn *net.UDPConn, peer *socketPeer, remote netip.AddrPort) {
	p.log.Debug("datagram reader started")
	defer p.log.Debug("datagram reader stopped")
	defer p.detach(peer, false)
	if !p.waitWired() {
		return
	}
	buf := make([]byte, dgramBufferSize)
	for {
		n, from, err := conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if p.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			p.log.Warn("datagram receive failed", zap.Error(err))
			if !p.sleep(p.cfg.ReconnectMin) {
				return
			}
			continue
		}
		from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
		switch {
		case from != remote:
			p.count(func(s *SocketStats) { s.RxForeign++ })
			p.log.Debug("datagram from a stranger dropped", zap.Stringer("from", from))
			continue
		case n == 0:
			p.count(func(s *SocketStats) { s.RxMalformed++ })
			p.log.Debug("empty datagram dropped")
			continue
		case n > p.cfg.MaxFrame:
			p.count(func(s *SocketStats) { s.RxOversized++ })
			p.log.Debug("oversized datagram dropped", zap.Int("length", n), zap.Int("max", p.cfg.MaxFrame))
			continue
		}
		frame := newRxBuffer(n)
		copy(frame, buf[:n])
		p.deliver(frame)
	}
}
