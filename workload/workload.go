// Package workload runs the real-traffic workloads of tsnsim run over
// embedded stacks: series of ICMP echoes with RTT statistics, and TCP
// bulk transfers whose content is checked byte for byte.
package workload

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/netip"
	"time"

	"tsnsim/host/netstack"
)

// PingResult summarises one direction's pings.
type PingResult struct {
	Sent, Received int
	Min, Max, Sum  time.Duration
	FirstErr       error
}

// String formats the result like ping's summary lines.
func (p PingResult) String() string {
	if p.Received == 0 {
		return fmt.Sprintf("%d sent, 0 received, 100%% loss", p.Sent)
	}
	ms := func(d time.Duration) float64 { return float64(d) / 1e6 }
	return fmt.Sprintf("%d sent, %d received, %.1f%% loss, rtt min/avg/max = %.3f/%.3f/%.3f ms",
		p.Sent, p.Received, 100*float64(p.Sent-p.Received)/float64(p.Sent),
		ms(p.Min), ms(p.Sum/time.Duration(p.Received)), ms(p.Max))
}

// Ping sends count echo requests from st to peer, one per interval.
func Ping(st *netstack.Stack, peer netip.Addr, count, size int, interval, timeout time.Duration) PingResult {
	var res PingResult
	p, err := st.NewPinger(peer)
	if err != nil {
		res.FirstErr = err
		return res
	}
	defer p.Close()
	next := time.Now()
	for seq := range count {
		if d := time.Until(next); d > 0 {
			time.Sleep(d)
		}
		next = next.Add(interval)
		res.Sent++
		rtt, err := p.Ping(uint16(seq), size, timeout)
		if err != nil {
			if res.FirstErr == nil {
				res.FirstErr = err
			}
			continue
		}
		if res.Received == 0 || rtt < res.Min {
			res.Min = rtt
		}
		res.Max = max(res.Max, rtt)
		res.Sum += rtt
		res.Received++
	}
	return res
}

// TCPResult is one direction's bulk transfer.
type TCPResult struct {
	Bytes   int64
	Elapsed time.Duration
	Err     error
}

// TCPBulk sends n pseudo-random bytes from src to dst over TCP and checks
// that dst receives exactly them.
func TCPBulk(ctx context.Context, src, dst *netstack.Stack, dstAddr netip.Addr, port uint16, n int64, seed uint64) TCPResult {
	l, err := dst.ListenTCP(port, dstAddr.Is6())
	if err != nil {
		return TCPResult{Err: err}
	}
	defer l.Close()
	recv := make(chan TCPResult, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			recv <- TCPResult{Err: err}
			return
		}
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(10 * time.Minute))
		want := rand.NewChaCha8([32]byte{0: byte(seed)})
		got, exp := make([]byte, 64<<10), make([]byte, 64<<10)
		var total int64
		for {
			k, err := c.Read(got)
			if k > 0 {
				want.Read(exp[:k])
				if !bytes.Equal(got[:k], exp[:k]) {
					recv <- TCPResult{Bytes: total, Err: fmt.Errorf("content differs after byte %d", total)}
					return
				}
				total += int64(k)
			}
			if errors.Is(err, io.EOF) {
				recv <- TCPResult{Bytes: total}
				return
			}
			if err != nil {
				recv <- TCPResult{Bytes: total, Err: err}
				return
			}
		}
	}()
	start := time.Now()
	c, err := src.DialTCP(ctx, netip.AddrPortFrom(dstAddr, port))
	if err != nil {
		return TCPResult{Err: err}
	}
	_, err = io.CopyN(c, rand.NewChaCha8([32]byte{0: byte(seed)}), n)
	c.Close()
	if err != nil {
		return TCPResult{Err: fmt.Errorf("sending: %w", err)}
	}
	select {
	case res := <-recv:
		res.Elapsed = time.Since(start)
		if res.Err == nil && res.Bytes != n {
			res.Err = fmt.Errorf("received %d of %d bytes", res.Bytes, n)
		}
		return res
	case <-ctx.Done():
		return TCPResult{Err: ctx.Err()}
	}
}
