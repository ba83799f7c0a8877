package integration

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"

	"tsnsim/spibridge"
	"tsnsim/spibridge/socket"
)

// transports are the SPI transports the two-node tests run over: the
// in-process bus, and the socket bridge (each chip's bus served by a
// socket.Server, each driver on a socket.Client). Over
// net.Pipe the socket bridge runs in virtual time too; the real-time
// tests also run it over Unix sockets (socketUnix).
var transports = []struct {
	name string
	hook transportHook
}{
	{"inprocess", nil},
	{"socket", socketPipe},
}

// transportHook is a topology.Config.Transport.
type transportHook = func(int, *spibridge.InProcess) (spibridge.Transport, io.Closer, error)

// forEachTransport runs f once per transport, as a subtest; f puts
// transport into its topology.Config.
func forEachTransport(t *testing.T, f func(t *testing.T, transport transportHook)) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) { f(t, tr.hook) })
	}
}

// socketPipe serves bus over the socket protocol through net.Pipe and
// returns a socket client to it.
func socketPipe(_ int, bus *spibridge.InProcess) (spibridge.Transport, io.Closer, error) {
	srv := socket.NewServer(bus, socket.ServerConfig{})
	cl, err := socket.NewClient(func(context.Context) (net.Conn, error) {
		c, s := net.Pipe()
		go srv.ServeConn(context.Background(), s)
		return c, nil
	}, socket.ClientConfig{})
	if err != nil {
		srv.Close()
		return nil, nil, err
	}
	return cl, closeBoth{cl, srv}, nil
}

// socketUnix serves bus on a Unix socket in dir and returns a socket
// client to it (real time only: sockets block outside synctest's view).
func socketUnix(dir string) transportHook {
	return func(i int, bus *spibridge.InProcess) (spibridge.Transport, io.Closer, error) {
		addr := "unix:" + dir + "/" + string(rune('a'+i)) + ".sock"
		ln, err := socket.Listen(addr)
		if err != nil {
			return nil, nil, err
		}
		srv := socket.NewServer(bus, socket.ServerConfig{})
		served := make(chan error, 1)
		go func() { served <- srv.Serve(context.Background(), ln) }()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		cl, err := socket.Dial(ctx, addr, socket.ClientConfig{})
		if err != nil {
			srv.Close()
			return nil, nil, errors.Join(err, <-served)
		}
		return cl, closeBoth{cl, serverCloser{srv, served}}, nil
	}
}

// closeBoth closes the client, then the server.
type closeBoth [2]io.Closer

func (c closeBoth) Close() error { return errors.Join(c[0].Close(), c[1].Close()) }

// serverCloser closes a server and waits for its Serve.
type serverCloser struct {
	srv    *socket.Server
	served <-chan error
}

func (s serverCloser) Close() error { return errors.Join(s.srv.Close(), <-s.served) }
