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
	"sync"
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
	return PingContext(context.Background(), st, peer, count, size, interval, timeout)
}

// PingContext is Ping that stops sending when ctx ends (the request in
// flight still waits for its reply, up to timeout); Sent counts the
// requests sent.
func PingContext(ctx context.Context, st *netstack.Stack, peer netip.Addr, count, size int, interval, timeout time.Duration) PingResult {
	var res PingResult
	p, err := st.NewPinger(peer)
	if err != nil {
		res.FirstErr = err
		return res
	}
	defer p.Close()
	next := time.Now()
	for seq := range count {
		if ctx.Err() != nil {
			break
		}
		if d := time.Until(next); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return res
			}
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
	Bytes int64 // bytes received, checked
	// Elapsed is the transfer's own span: from the dial to the last byte
	// received.
	Elapsed time.Duration
	Err     error
}

// TCPBulk sends n pseudo-random bytes from src to dst over TCP and checks
// that dst receives exactly them. When ctx ends, both ends are closed and
// the result says how far the transfer got, with ctx's error.
func TCPBulk(ctx context.Context, src, dst *netstack.Stack, dstAddr netip.Addr, port uint16, n int64, seed uint64) TCPResult {
	l, err := dst.ListenTCP(port, dstAddr.Is6())
	if err != nil {
		return TCPResult{Err: err}
	}
	defer l.Close()
	// closers are closed when ctx ends, which unblocks Accept, Read and
	// the sender's Write.
	var mu sync.Mutex
	var closers []io.Closer
	track := func(c io.Closer) bool {
		mu.Lock()
		defer mu.Unlock()
		if ctx.Err() != nil {
			c.Close()
			return false
		}
		closers = append(closers, c)
		return true
	}
	track(l)
	closeAll := func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range closers {
			c.Close()
		}
	}
	stop := context.AfterFunc(ctx, closeAll)
	defer stop()
	defer closeAll() // the receiver, if still reading, ends too

	start := time.Now()
	recv := make(chan TCPResult, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			recv <- TCPResult{Err: err}
			return
		}
		defer c.Close()
		if !track(c) {
			recv <- TCPResult{Err: ctx.Err()}
			return
		}
		c.SetReadDeadline(time.Now().Add(10 * time.Minute))
		want := rand.NewChaCha8([32]byte{0: byte(seed)})
		got, exp := make([]byte, 64<<10), make([]byte, 64<<10)
		var total int64
		var last time.Time
		done := func(err error) { recv <- TCPResult{Bytes: total, Elapsed: last.Sub(start), Err: err} }
		for {
			k, err := c.Read(got)
			if k > 0 {
				last = time.Now()
				want.Read(exp[:k])
				if !bytes.Equal(got[:k], exp[:k]) {
					done(fmt.Errorf("content differs after byte %d", total))
					return
				}
				total += int64(k)
			}
			if errors.Is(err, io.EOF) {
				done(nil)
				return
			}
			if err != nil {
				done(err)
				return
			}
		}
	}()
	c, err := src.DialTCP(ctx, netip.AddrPortFrom(dstAddr, port))
	if err != nil {
		return TCPResult{Err: err}
	}
	if !track(c) {
		return TCPResult{Err: ctx.Err()}
	}
	_, err = io.CopyN(c, rand.NewChaCha8([32]byte{0: byte(seed)}), n)
	c.Close()
	if err != nil {
		if ctx.Err() == nil {
			return TCPResult{Err: fmt.Errorf("sending: %w", err)}
		}
		res := <-recv // the receiver's conn was closed too: how far it got
		res.Err = fmt.Errorf("sending: %w", ctx.Err())
		return res
	}
	res := <-recv
	if ctx.Err() != nil && res.Err != nil {
		res.Err = ctx.Err()
	}
	if res.Err == nil && res.Bytes != n {
		res.Err = fmt.Errorf("received %d of %d bytes", res.Bytes, n)
	}
	return res
}
