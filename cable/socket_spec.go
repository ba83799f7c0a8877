package cable

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// SocketMode is how a socket cable end finds its peer.
type SocketMode int

// Socket cable end modes, named after QEMU's -netdev stream and dgram.
const (
	// StreamListen accepts one peer at a time on a stream socket, like
	// QEMU's -netdev stream,server=on.
	StreamListen SocketMode = iota + 1
	// StreamConnect dials a stream socket and redials after a failure or
	// a disconnect, like QEMU's -netdev stream,server=off,reconnect-ms=N.
	StreamConnect
	// Dgram sends one frame per UDP datagram to a remote address and
	// receives on a local one, like QEMU's -netdev dgram.
	Dgram
)

var modeNames = map[SocketMode]string{
	StreamListen:  "stream-listen",
	StreamConnect: "stream-connect",
	Dgram:         "dgram",
}

// String returns the mode as it is spelled in a spec.
func (m SocketMode) String() string {
	if s, ok := modeNames[m]; ok {
		return s
	}
	return "SocketMode(" + strconv.Itoa(int(m)) + ")"
}

// Defaults for SocketEndConfig fields left zero.
const (
	// DefaultSocketQueue bounds the frames waiting for the socket writer.
	DefaultSocketQueue = 256
	// DefaultSocketMaxFrame bounds a frame read from a socket (without
	// FCS). Longer stream lengths close the connection.
	DefaultSocketMaxFrame = 65535
	// DefaultSocketWriteTimeout bounds one socket write; a stream peer
	// that does not read for this long is disconnected.
	DefaultSocketWriteTimeout = 5 * time.Second
	// DefaultSocketDialTimeout bounds one dial of stream-connect.
	DefaultSocketDialTimeout = 5 * time.Second
	// DefaultReconnectMin is the first wait before redialling.
	DefaultReconnectMin = 100 * time.Millisecond
	// DefaultReconnectMax bounds the exponential redial backoff.
	DefaultReconnectMax = 5 * time.Second
)

// defaultHost is used when a spec leaves a TCP or UDP host empty: a
// socket end does not expose an emulated link beyond the machine unless
// asked to.
const defaultHost = "127.0.0.1"

// SocketEndConfig says where a socket cable end is and how it behaves.
// ParseSocketEnd fills Mode, Network, Address and Remote; the other
// fields take defaults when zero.
type SocketEndConfig struct {
	Mode    SocketMode
	Network string // "unix" or "tcp" for stream modes, "udp" for Dgram
	Address string // stream: PATH or HOST:PORT; Dgram: the local HOST:PORT
	Remote  string // Dgram only: the REMOTEHOST:REMOTEPORT frames go to

	// Queue bounds the frames waiting for the socket writer; frames
	// offered while it is full are dropped and counted.
	Queue int
	// MaxFrame bounds the length of a frame read from the socket
	// (without FCS), checked before allocating.
	MaxFrame int
	// LinkBitsPerSec paces frames read from the socket onto the local
	// cable at link speed (their start-of-frame times never overlap);
	// it should match the cable's. Negative disables pacing.
	LinkBitsPerSec int64
	// WriteTimeout bounds one socket write.
	WriteTimeout time.Duration
	// DialTimeout bounds one dial (StreamConnect).
	DialTimeout time.Duration
	// ReconnectMin and ReconnectMax bound the redial backoff
	// (StreamConnect): it starts at ReconnectMin after a disconnect and
	// doubles after each failed dial up to ReconnectMax.
	ReconnectMin, ReconnectMax time.Duration
}

func (c *SocketEndConfig) setDefaults() {
	if c.Queue <= 0 {
		c.Queue = DefaultSocketQueue
	}
	if c.MaxFrame <= 0 {
		c.MaxFrame = DefaultSocketMaxFrame
	}
	if c.LinkBitsPerSec == 0 {
		c.LinkBitsPerSec = DefaultLinkBitsPerSec
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = DefaultSocketWriteTimeout
	}
	if c.DialTimeout <= 0 {
		c.DialTimeout = DefaultSocketDialTimeout
	}
	if c.ReconnectMin <= 0 {
		c.ReconnectMin = DefaultReconnectMin
	}
	if c.ReconnectMax <= 0 {
		c.ReconnectMax = DefaultReconnectMax
	}
	c.ReconnectMax = max(c.ReconnectMax, c.ReconnectMin)
}

// String returns the spec that ParseSocketEnd turns into c.
func (c SocketEndConfig) String() string {
	if c.Mode == Dgram {
		return c.Mode.String() + ":" + c.Network + ":" + c.Address + ":" + c.Remote
	}
	return c.Mode.String() + ":" + c.Network + ":" + c.Address
}

// ParseSocketEnd parses a cable end spec:
//
//	stream-listen:unix:PATH | stream-listen:tcp:HOST:PORT   (we are the server, like QEMU server=on)
//	stream-connect:unix:PATH | stream-connect:tcp:HOST:PORT (we are the client; reconnects, like QEMU reconnect=1)
//	dgram:udp:LOCALHOST:LOCALPORT:REMOTEHOST:REMOTEPORT     (one frame per datagram)
//
// An empty TCP or UDP HOST (local or remote) means 127.0.0.1; IPv6
// hosts are written in brackets ([::1]:5555). A PORT is a number; 0
// (listen or local port only) picks a free one. A unix PATH is used as
// given (a leading @ names a Linux abstract socket).
func ParseSocketEnd(spec string) (SocketEndConfig, error) {
	fail := func(format string, a ...any) (SocketEndConfig, error) {
		return SocketEndConfig{}, fmt.Errorf("cable: socket end %q: "+format, append([]any{spec}, a...)...)
	}
	modeStr, rest, ok := strings.Cut(spec, ":")
	if !ok {
		return fail("want MODE:NETWORK:ADDRESS (stream-listen, stream-connect or dgram)")
	}
	var cfg SocketEndConfig
	for m, name := range modeNames {
		if name == modeStr {
			cfg.Mode = m
		}
	}
	if cfg.Mode == 0 {
		return fail("unknown mode %q (want stream-listen, stream-connect or dgram)", modeStr)
	}
	network, addr, ok := strings.Cut(rest, ":")
	if !ok {
		return fail("want %s:NETWORK:ADDRESS", modeStr)
	}
	cfg.Network = network

	if cfg.Mode == Dgram {
		if network != "udp" {
			return fail("dgram network %q: only udp is supported (want dgram:udp:LOCALHOST:LOCALPORT:REMOTEHOST:REMOTEPORT)", network)
		}
		local, remote, err := splitHostPortPrefix(addr)
		if err != nil {
			return fail("local address: %v", err)
		}
		if cfg.Address, err = normaliseHostPort(local, true); err != nil {
			return fail("local address: %v", err)
		}
		if cfg.Remote, err = normaliseHostPort(remote, false); err != nil {
			return fail("remote address: %v", err)
		}
		return cfg, nil
	}

	switch network {
	case "unix":
		if addr == "" {
			return fail("empty unix socket path")
		}
		cfg.Address = addr
	case "tcp":
		var err error
		if cfg.Address, err = normaliseHostPort(addr, cfg.Mode == StreamListen); err != nil {
			return fail("%v", err)
		}
	default:
		return fail("stream network %q: want unix or tcp", network)
	}
	return cfg, nil
}

// splitHostPortPrefix splits "HOST:PORT:REST" (HOST may be a bracketed
// IPv6 address) into "HOST:PORT" and "REST".
func splitHostPortPrefix(s string) (hostPort, rest string, err error) {
	i := 0
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return "", "", fmt.Errorf("missing ']' in %q", s)
		}
		i = end + 1
	}
	colon := strings.IndexByte(s[i:], ':')
	if colon < 0 {
		return "", "", fmt.Errorf("want HOST:PORT:REMOTEHOST:REMOTEPORT, got %q", s)
	}
	i += colon + 1
	next := strings.IndexByte(s[i:], ':')
	if next < 0 {
		return "", "", fmt.Errorf("want HOST:PORT:REMOTEHOST:REMOTEPORT, got %q", s)
	}
	return s[:i+next], s[i+next+1:], nil
}

// normaliseHostPort checks HOST:PORT, fills an empty host with the
// loopback address and returns the result in net.JoinHostPort form.
// Port 0 is allowed only where the socket is bound locally.
func normaliseHostPort(s string, local bool) (string, error) {
	host, portStr, err := net.SplitHostPort(s)
	if err != nil {
		return "", fmt.Errorf("want HOST:PORT: %v", err)
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return "", fmt.Errorf("port %q: want a number from 0 to 65535", portStr)
	}
	if port == 0 && !local {
		return "", fmt.Errorf("port 0: the peer's port must be given")
	}
	if host == "" {
		host = defaultHost
	}
	return net.JoinHostPort(host, portStr), nil
}
