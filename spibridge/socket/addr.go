// Package socket is the socket transport of spibridge: a Server that
// serves one chip's bus (a spibridge.Transport, normally the in-process
// bus) over a Unix or TCP stream socket, and a reconnecting Client
// that is a spibridge.Transport in the driver's process. The wire format
// is documented byte by byte in docs/socket-protocol.md.
package socket

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The socket bridge carries one chip's SPI bus and interrupt line over a
// stream socket: a Server in the chip process, a Client (a
// Transport) in the driver process. The protocol is documented byte by
// byte in docs/socket-protocol.md; these are its fixed figures.
const (
	// Version is the protocol version both hellos carry.
	Version = 1
	// MaxTransfer is the longest SPI transfer the protocol carries
	// (the default bufsiz of Linux spidev).
	MaxTransfer = 4096
	// MaxInFlight is the most requests a server may allow in flight
	// on one connection (it advertises its own bound in its hello).
	MaxInFlight = 256
	// MaxText is the longest error text a message carries.
	MaxText = 255
	// MaxName is the longest chip name a server hello carries.
	MaxName = 64
)

// MaxUnixPath is the longest unix socket path (or @NAME of an abstract
// socket): Linux's sun_path holds 108 bytes, one of them the terminating
// NUL (or, for an abstract name, the leading one).
const MaxUnixPath = 107

// socketMagic opens both hellos.
const socketMagic = "TSNB"

// socketDialProbe bounds the probe Listen makes of an existing
// socket file.
const socketDialProbe = time.Second

// ParseAddr parses "unix:PATH" or "tcp:HOST:PORT" into the network
// and address net.Dial and net.Listen take. An empty HOST means
// 127.0.0.1; IPv6 hosts are bracketed ("tcp:[::1]:7000"). Anything else
// is an error wrapping EINVAL.
func ParseAddr(s string) (network, address string, err error) {
	kind, rest, ok := strings.Cut(s, ":")
	if !ok {
		return "", "", fmt.Errorf("spibridge: socket address %q: want unix:PATH or tcp:HOST:PORT: %w", s, syscall.EINVAL)
	}
	switch kind {
	case "unix":
		if rest == "" {
			return "", "", fmt.Errorf("spibridge: socket address %q: empty path: %w", s, syscall.EINVAL)
		}
		if len(rest) > MaxUnixPath {
			return "", "", fmt.Errorf("spibridge: socket address %q: path of %d bytes, over the %d-byte limit of a unix socket address (sun_path): %w", s, len(rest), MaxUnixPath, syscall.ENAMETOOLONG)
		}
		return "unix", rest, nil
	case "tcp":
		host, port, err := net.SplitHostPort(rest)
		if err != nil {
			return "", "", fmt.Errorf("spibridge: socket address %q: %v: %w", s, err, syscall.EINVAL)
		}
		if p, err := strconv.ParseUint(port, 10, 16); err != nil || port == "" {
			return "", "", fmt.Errorf("spibridge: socket address %q: port %q is not a number 0-65535: %w", s, port, syscall.EINVAL)
		} else {
			port = strconv.FormatUint(p, 10)
		}
		if host == "" {
			host = "127.0.0.1"
		}
		return "tcp", net.JoinHostPort(host, port), nil
	default:
		return "", "", fmt.Errorf("spibridge: socket address %q: unknown kind %q, want unix:PATH or tcp:HOST:PORT: %w", s, kind, syscall.EINVAL)
	}
}

// Listen listens on addr (see ParseAddr). A Unix socket file
// is created with mode 0600 and removed when the listener closes. An
// existing socket file nobody listens on (left by a killed process) is
// replaced; one with a live listener, or a path that is not a socket, is
// an error wrapping EADDRINUSE. Callers decide whether tcp is allowed.
func Listen(addr string) (net.Listener, error) {
	network, address, err := ParseAddr(addr)
	if err != nil {
		return nil, err
	}
	if network == "tcp" {
		ln, err := net.Listen(network, address)
		if err != nil {
			return nil, fmt.Errorf("spibridge: listen on %s: %w", addr, err)
		}
		return ln, nil
	}
	if err := removeStaleSocket(address); err != nil {
		return nil, err
	}
	ln, err := net.Listen(network, address)
	if err != nil {
		return nil, fmt.Errorf("spibridge: listen on %s: %w", addr, err)
	}
	if !strings.HasPrefix(address, "@") { // abstract sockets have no file
		if err := os.Chmod(address, 0o600); err != nil {
			ln.Close()
			return nil, fmt.Errorf("spibridge: listen on %s: %w", addr, err)
		}
	}
	return ln, nil
}

// removeStaleSocket removes path if it is a socket file nobody listens
// on; it fails if a listener answers or the path is not a socket.
func removeStaleSocket(path string) error {
	if strings.HasPrefix(path, "@") {
		return nil
	}
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("spibridge: listen on unix:%s: %w", path, err)
	}
	if fi.Mode()&os.ModeSocket == 0 {
		return fmt.Errorf("spibridge: listen on unix:%s: path exists and is not a socket: %w", path, syscall.EADDRINUSE)
	}
	c, err := net.DialTimeout("unix", path, socketDialProbe)
	switch {
	case err == nil:
		c.Close()
		return fmt.Errorf("spibridge: listen on unix:%s: a server is listening there: %w", path, syscall.EADDRINUSE)
	case errors.Is(err, syscall.ECONNREFUSED):
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("spibridge: listen on unix:%s: removing the stale socket: %w", path, err)
		}
		return nil
	case errors.Is(err, os.ErrNotExist):
		return nil
	default:
		return fmt.Errorf("spibridge: listen on unix:%s: probing the existing socket: %w", path, err)
	}
}
