package workload

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"tsnsim/host/netstack"
)

// Ports of the services a served node offers its peer: the classic
// inetd services, so that nc, socat or a script on a QEMU guest or
// another host can move traffic through the emulated chip.
const (
	EchoPort    = 7  // RFC 862, TCP and UDP: sends back what it receives
	DiscardPort = 9  // RFC 863, TCP and UDP: takes everything, sends nothing
	SourcePort  = 19 // RFC 864 character generator, TCP: sends until the peer closes
)

// MaxServiceConns bounds the TCP connections one service serves at once;
// more are closed at once and counted in Refused.
const MaxServiceConns = 64

// Service names, in the order Stats lists them.
var serviceNames = []string{"tcp echo", "tcp discard", "tcp source", "udp echo", "udp discard"}

// ServiceStats is one service's accounting.
type ServiceStats struct {
	Name     string
	Conns    uint64 // TCP connections accepted; UDP datagrams received
	Refused  uint64 // TCP connections over MaxServiceConns
	BytesIn  uint64 // payload bytes received
	BytesOut uint64 // payload bytes sent
	Errors   uint64 // connections that ended with an error rather than the peer's close; datagrams not echoed
}

// Services serves echo, discard and source on one stack until Close.
type Services struct {
	report func(line string)

	wg      sync.WaitGroup
	mu      sync.Mutex
	closed  bool
	closers []io.Closer
	conns   map[net.Conn]struct{}
	active  map[string]int // open TCP connections per service
	stats   map[string]*ServiceStats
}

// Serve starts the services on st: TCP echo, discard and source, UDP
// echo and discard, on IPv4 and, with v6, on IPv6 too. report, if not nil,
// receives one line for each TCP connection that ends (bytes, duration,
// rate); it is called from the services' goroutines.
func Serve(st *netstack.Stack, v6 bool, report func(line string)) (*Services, error) {
	s := &Services{report: report, conns: map[net.Conn]struct{}{}, active: map[string]int{}, stats: map[string]*ServiceStats{}}
	for _, n := range serviceNames {
		s.stats[n] = &ServiceStats{Name: n}
	}
	// gVisor's IPv6 sockets are dual-stack (not V6ONLY), so with IPv6 one
	// socket per port serves both families.
	families := []bool{v6}
	tcp := []struct {
		name string
		port uint16
		run  func(net.Conn) (in, out int64, err error)
	}{
		{"tcp echo", EchoPort, echoConn},
		{"tcp discard", DiscardPort, discardConn},
		{"tcp source", SourcePort, sourceConn},
	}
	for _, fam := range families {
		for _, t := range tcp {
			l, err := st.ListenTCP(t.port, fam)
			if err != nil {
				s.Close()
				return nil, fmt.Errorf("workload: %s on port %d: %w", t.name, t.port, err)
			}
			s.closers = append(s.closers, l)
			s.wg.Go(func() { s.acceptLoop(l, t.name, t.run) })
		}
		for _, u := range []struct {
			name string
			port uint16
			echo bool
		}{{"udp echo", EchoPort, true}, {"udp discard", DiscardPort, false}} {
			pc, err := st.ListenUDP(u.port, fam)
			if err != nil {
				s.Close()
				return nil, fmt.Errorf("workload: %s on port %d: %w", u.name, u.port, err)
			}
			s.closers = append(s.closers, pc)
			s.wg.Go(func() { s.udpLoop(pc, u.name, u.echo) })
		}
	}
	return s, nil
}

// Stats returns a snapshot of every service's accounting.
func (s *Services) Stats() []ServiceStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]ServiceStats, 0, len(serviceNames))
	for _, n := range serviceNames {
		out = append(out, *s.stats[n])
	}
	return out
}

// Close stops the services: it closes the listeners, the UDP sockets and
// every open connection, and waits for their goroutines.
func (s *Services) Close() error {
	s.mu.Lock()
	s.closed = true
	closers := s.closers
	s.closers = nil
	for c := range s.conns {
		closers = append(closers, c)
	}
	s.mu.Unlock()
	for _, c := range closers {
		c.Close() // errors of closing are those of connections already ending
	}
	s.wg.Wait()
	return nil
}

func (s *Services) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

func (s *Services) acceptLoop(l net.Listener, name string, run func(net.Conn) (int64, int64, error)) {
	for {
		c, err := l.Accept()
		if err != nil {
			return // closed
		}
		s.mu.Lock()
		st := s.stats[name]
		busy := s.active[name] >= MaxServiceConns
		if s.closed || busy {
			if busy {
				st.Refused++
			}
			s.mu.Unlock()
			c.Close()
			continue
		}
		st.Conns++
		s.active[name]++
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		remote := c.RemoteAddr() // gonet forgets it at Close
		s.wg.Go(func() {
			start := time.Now()
			in, out, err := run(c)
			c.Close()
			elapsed := time.Since(start)
			s.mu.Lock()
			delete(s.conns, c)
			s.active[name]--
			st.BytesIn += uint64(in)
			st.BytesOut += uint64(out)
			failed := err != nil && !s.closed
			if failed {
				st.Errors++
			}
			s.mu.Unlock()
			if s.report == nil {
				return
			}
			end := "peer closed"
			switch {
			case failed:
				end = err.Error()
			case err != nil:
				end = "service stopped"
			}
			s.report(fmt.Sprintf("%s from %v: %d bytes in, %d out in %v (%.2f Mbit/s); %s",
				name, remote, in, out, elapsed.Round(time.Millisecond),
				float64(in+out)*8/max(elapsed.Seconds(), 1e-9)/1e6, end))
		})
	}
}

// peerGone reports whether err is how a connection ends when its peer
// closes or resets it.
func peerGone(err error) bool {
	return err == nil || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, os.ErrDeadlineExceeded)
}

// countingWriter counts what passes through it.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// echoConn sends back everything until the peer closes its side, then
// closes this side.
func echoConn(c net.Conn) (in, out int64, err error) {
	w := &countingWriter{w: c}
	in, err = io.Copy(w, c)
	if peerGone(err) {
		err = nil
	}
	return in, w.n, err
}

// discardConn reads until the peer closes.
func discardConn(c net.Conn) (in, out int64, err error) {
	in, err = io.Copy(io.Discard, c)
	if peerGone(err) {
		err = nil
	}
	return in, 0, err
}

// sourceConn sends the character generator's stream until the peer
// closes or resets the connection.
func sourceConn(c net.Conn) (in, out int64, err error) {
	out, err = io.Copy(c, SourceReader())
	if peerGone(err) || isReset(err) {
		err = nil
	}
	return 0, out, err
}

// isReset reports whether err is gVisor's "connection reset" or "broken
// pipe", which gonet does not map to syscall errors.
func isReset(err error) bool {
	if err == nil {
		return false
	}
	msg := err.Error()
	for _, s := range []string{"connection reset", "broken pipe", "connection aborted", "endpoint is closed"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// udpLoop answers (echo) or swallows (discard) datagrams until closed.
func (s *Services) udpLoop(pc net.PacketConn, name string, echo bool) {
	buf := make([]byte, 65535)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			if !s.isClosed() {
				s.mu.Lock()
				s.stats[name].Errors++
				s.mu.Unlock()
			}
			return
		}
		var sent int
		var werr error
		if echo {
			sent, werr = pc.WriteTo(buf[:n], from)
		}
		s.mu.Lock()
		st := s.stats[name]
		st.Conns++
		st.BytesIn += uint64(n)
		st.BytesOut += uint64(sent)
		if werr != nil {
			st.Errors++
		}
		s.mu.Unlock()
	}
}

// Character generator (RFC 864): lines of 72 printable ASCII characters
// and CR LF, each starting one character further along the 95 printable
// characters than the one before; the stream repeats every 95 lines.
const (
	sourceLineChars = 72
	sourcePrintable = 95 // ' ' to '~'
)

var sourcePeriod = func() []byte {
	b := make([]byte, 0, sourcePrintable*(sourceLineChars+2))
	for line := range sourcePrintable {
		for i := range sourceLineChars {
			b = append(b, byte(' '+(line+i)%sourcePrintable))
		}
		b = append(b, '\r', '\n')
	}
	return b
}()

// SourceReader returns the endless stream the source service sends, for
// a peer to check what it received.
func SourceReader() io.Reader { return &sourceReader{} }

type sourceReader struct{ off int }

func (r *sourceReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		k := copy(p[n:], sourcePeriod[r.off:])
		n += k
		r.off = (r.off + k) % len(sourcePeriod)
	}
	return n, nil
}
