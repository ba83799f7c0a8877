package cable

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"
)

// Stream framing (QEMU -netdev stream): each frame, without FCS, is
// preceded by its length as a 4-byte big-endian integer.
const streamHeaderLen = 4

// maxWriteBatch bounds the frames gathered into one vectored write.
const maxWriteBatch = 64

// readBufferSize is the stream reader's buffer: one read system call
// usually brings several frames.
const readBufferSize = 64 << 10

// openListen binds the stream listener and starts accepting peers.
func (p *SocketPort) openListen(ctx context.Context) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, p.cfg.Network, p.cfg.Address)
	if err != nil && p.cfg.Network == "unix" && errors.Is(err, syscall.EADDRINUSE) {
		if removed, rerr := removeStaleUnixSocket(ctx, p.cfg.Address); rerr != nil {
			return fmt.Errorf("cable: socket end %v: listen: %w (and checking for a stale socket: %v)", p.cfg, err, rerr)
		} else if removed {
			p.log.Info("removed a stale unix socket nobody listened on", zap.String("path", p.cfg.Address))
			ln, err = lc.Listen(ctx, p.cfg.Network, p.cfg.Address)
		}
	}
	if err != nil {
		return fmt.Errorf("cable: socket end %v: listen: %w", p.cfg, err)
	}
	p.addr = ln.Addr()
	p.closer = ln.Close
	p.wg.Add(1)
	go p.acceptLoop(ln)
	return nil
}

// removeStaleUnixSocket removes path if it is a unix socket that refuses
// connections (left behind by a process that died). It never removes
// anything else, nor a socket someone listens on.
func removeStaleUnixSocket(ctx context.Context, path string) (bool, error) {
	if strings.HasPrefix(path, "@") {
		return false, nil // abstract: no file
	}
	fi, err := os.Lstat(path)
	if err != nil || fi.Mode()&os.ModeSocket == 0 {
		return false, nil
	}
	d := net.Dialer{Timeout: time.Second}
	c, err := d.DialContext(ctx, "unix", path)
	if err == nil {
		return false, c.Close()
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return false, nil
	}
	if err := os.Remove(path); err != nil {
		return false, err
	}
	return true, nil
}

// acceptLoop accepts stream peers, one at a time like QEMU's server=on:
// a peer that connects while another is connected is refused (its
// connection closed at once) and counted in Rejected.
func (p *SocketPort) acceptLoop(ln net.Listener) {
	defer p.wg.Done()
	p.log.Info("listening", zap.Stringer("addr", ln.Addr()))
	defer p.log.Debug("accept loop stopped")
	for {
		conn, err := ln.Accept()
		if err != nil {
			if p.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			p.log.Warn("accept failed", zap.Error(err))
			if !p.sleep(p.cfg.ReconnectMin) {
				return
			}
			continue
		}
		remote := peerName(conn)
		p.mu.Lock()
		peer, ok := p.attachLocked(remote, nil)
		if !ok {
			p.stats.Rejected++
			p.notifyLocked()
		}
		p.mu.Unlock()
		if !ok {
			p.log.Info("peer refused: another peer is connected", zap.String("peer", remote), zap.String("connected", p.Stats().Peer))
			if err := conn.Close(); err != nil {
				p.log.Warn("closing a refused connection", zap.Error(err))
			}
			continue
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.serve(conn, peer, false)
		}()
	}
}

// startDial starts the dial loop of stream-connect.
func (p *SocketPort) startDial() {
	p.wg.Add(1)
	go p.dialLoop()
}

// dialLoop dials the peer, serves the connection until it ends, and
// redials: after a disconnect it waits ReconnectMin, after each failed
// dial twice as long as before, up to ReconnectMax.
func (p *SocketPort) dialLoop() {
	defer p.wg.Done()
	p.log.Info("connecting", zap.String("addr", p.cfg.Address))
	defer p.log.Debug("dial loop stopped")
	d := net.Dialer{Timeout: p.cfg.DialTimeout}
	var wait time.Duration
	failures := 0
	for {
		if wait > 0 && !p.sleep(wait) {
			return
		}
		conn, err := d.DialContext(p.ctx, p.cfg.Network, p.cfg.Address)
		if err != nil {
			if p.ctx.Err() != nil {
				return
			}
			p.peerEvent(func(s *SocketStats) { s.DialErrors++ })
			failures++
			wait = nextBackoff(wait, p.cfg.ReconnectMin, p.cfg.ReconnectMax)
			lvl := zap.DebugLevel
			if failures == 1 {
				lvl = zap.WarnLevel
			}
			p.log.Log(lvl, "dial failed; retrying", zap.Error(err), zap.Int("failures", failures), zap.Duration("backoff", wait))
			continue
		}
		failures = 0
		p.mu.Lock()
		peer, _ := p.attachLocked(peerName(conn), conn.LocalAddr()) // the only dialler: never busy
		p.mu.Unlock()
		p.serve(conn, peer, true)
		if p.ctx.Err() != nil {
			return
		}
		wait = p.cfg.ReconnectMin
	}
}

// nextBackoff doubles the wait within [lo, hi].
func nextBackoff(cur, lo, hi time.Duration) time.Duration {
	if cur < lo {
		return lo
	}
	return min(cur*2, hi)
}

// sleep waits d or until the port closes; false if it closed.
func (p *SocketPort) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-p.ctx.Done():
		return false
	}
}

// peerName names the far end of conn for logs and Stats.Peer.
func peerName(conn net.Conn) string {
	if a := conn.RemoteAddr(); a != nil && a.String() != "" && a.String() != "@" {
		return a.String()
	}
	return conn.LocalAddr().Network() + ":" + conn.LocalAddr().String()
}

// serve runs one stream connection: the writer in its own goroutine,
// the reader here. It returns when the connection has ended and both
// are done.
func (p *SocketPort) serve(conn net.Conn, peer *socketPeer, dialled bool) {
	log := p.log.With(zap.String("peer", peer.remote))
	log.Info("peer connected")
	var once sync.Once
	closeConn := func() {
		once.Do(func() {
			if err := conn.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
				log.Warn("closing the connection", zap.Error(err))
			}
		})
	}
	stop := context.AfterFunc(p.ctx, closeConn)
	defer stop()

	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		p.streamWriter(conn, peer, closeConn, log)
	}()
	reason := p.streamReader(conn, log)
	closeConn()
	p.detach(peer, dialled)
	<-writerDone
	log.Info("peer disconnected", zap.String("reason", reason))
}

// streamReader reads length-prefixed frames and delivers them until the
// connection ends; it returns why. A zero or oversized length closes the
// connection without allocating: the stream cannot be resynchronised.
func (p *SocketPort) streamReader(conn net.Conn, log *zap.Logger) string {
	if !p.waitWired() {
		return "socket end closed"
	}
	r := bufio.NewReaderSize(conn, readBufferSize)
	var hdr [streamHeaderLen]byte
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) {
				p.count(func(s *SocketStats) { s.RxTruncated++ })
				return "connection closed inside a frame length"
			}
			return readEndReason(err)
		}
		n := binary.BigEndian.Uint32(hdr[:])
		switch {
		case n == 0:
			p.count(func(s *SocketStats) { s.RxMalformed++ })
			log.Warn("zero frame length on the stream; closing the connection")
			return "zero frame length"
		case uint64(n) > uint64(p.cfg.MaxFrame):
			p.count(func(s *SocketStats) { s.RxOversized++ })
			log.Warn("frame length over the bound; closing the connection",
				zap.Uint32("length", n), zap.Int("max", p.cfg.MaxFrame))
			return fmt.Sprintf("frame length %d over the bound %d", n, p.cfg.MaxFrame)
		}
		frame := newRxBuffer(int(n))
		if _, err := io.ReadFull(r, frame); err != nil {
			p.count(func(s *SocketStats) { s.RxTruncated++ })
			return fmt.Sprintf("connection ended inside a %d-byte frame: %v", n, err)
		}
		p.deliver(frame)
	}
}

// readEndReason describes a read error at a frame boundary.
func readEndReason(err error) string {
	switch {
	case errors.Is(err, io.EOF):
		return "peer closed the connection"
	case errors.Is(err, net.ErrClosed):
		return "connection closed locally"
	default:
		return err.Error()
	}
}

// streamWriter writes the peer's queued frames, length-prefixed, in
// vectored writes of up to maxWriteBatch frames, each bounded by
// WriteTimeout. After a failed write it closes the connection (the
// reader then detaches the peer) and counts what is still queued as
// lost. It returns when the peer's queue is closed and drained.
func (p *SocketPort) streamWriter(conn net.Conn, peer *socketPeer, closeConn func(), log *zap.Logger) {
	hdrs := make([]byte, streamHeaderLen*maxWriteBatch)
	batch := make([][]byte, 0, maxWriteBatch)
	bufs := make(net.Buffers, 0, 2*maxWriteBatch)
	dead := false
	for f := range peer.q {
		batch = gather(append(batch[:0], f), peer.q)
		if dead || p.ctx.Err() != nil {
			p.count(func(s *SocketStats) { s.TxLostDisconnected += uint64(len(batch)) })
			continue
		}
		bufs = bufs[:0]
		var n uint64
		for i, g := range batch {
			h := hdrs[streamHeaderLen*i : streamHeaderLen*(i+1)]
			binary.BigEndian.PutUint32(h, uint32(len(g)))
			bufs = append(bufs, h, g)
			n += uint64(len(g))
		}
		err := conn.SetWriteDeadline(time.Now().Add(p.cfg.WriteTimeout))
		if err == nil {
			wb := bufs // WriteTo consumes its receiver
			_, err = wb.WriteTo(conn)
		}
		if err != nil {
			p.count(func(s *SocketStats) { s.TxWriteErrors += uint64(len(batch)) })
			if p.ctx.Err() == nil {
				log.Warn("write failed; closing the connection", zap.Error(err), zap.Int("frames", len(batch)))
			}
			dead = true
			closeConn()
			continue
		}
		p.count(func(s *SocketStats) { s.TxFrames += uint64(len(batch)); s.TxBytes += n })
	}
}

// gather appends the frames already waiting in q to batch, without
// blocking, up to maxWriteBatch.
func gather(batch [][]byte, q <-chan []byte) [][]byte {
	for len(batch) < maxWriteBatch {
		select {
		case f, ok := <-q:
			if !ok {
				return batch
			}
			batch = append(batch, f)
		default:
			return batch
		}
	}
	return batch
}
