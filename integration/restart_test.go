package integration

import (
	"context"
	"errors"
	"io"
	"sync"
	"syscall"
	"testing"
	"time"

	"tsnsim/spibridge"
	"tsnsim/spibridge/socket"
	"tsnsim/topology"
	"tsnsim/traffic"
)

// restartable serves a chip's bus on a Unix socket with a server that a
// test can kill and start again; the chip and its bus live on.
type restartable struct {
	addr string
	bus  *spibridge.InProcess

	mu     sync.Mutex
	srv    *socket.Server
	served chan error
}

func (r *restartable) start() error {
	ln, err := socket.Listen(r.addr)
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.srv = socket.NewServer(r.bus, socket.ServerConfig{})
	r.served = make(chan error, 1)
	go func(srv *socket.Server, served chan error) { served <- srv.Serve(context.Background(), ln) }(r.srv, r.served)
	return nil
}

func (r *restartable) kill() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return errors.Join(r.srv.Close(), <-r.served)
}

// TestChipServerRestartDuringTraffic kills both chip servers in the middle
// of bidirectional traffic and starts new ones on the same sockets, with
// the same chips: the drivers see errors wrapping the socket errnos,
// their socket clients reconnect by themselves, traffic resumes, and
// every frame offered is delivered or counted in exactly one place.
func TestChipServerRestartDuringTraffic(t *testing.T) {
	dir := t.TempDir()
	var servers [2]*restartable
	var clients [2]*socket.Client
	hook := func(i int, bus *spibridge.InProcess) (spibridge.Transport, io.Closer, error) {
		r := &restartable{addr: "unix:" + dir + "/" + string(rune('a'+i)) + ".sock", bus: bus}
		if err := r.start(); err != nil {
			return nil, nil, err
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		cl, err := socket.Dial(ctx, r.addr, socket.ClientConfig{})
		if err != nil {
			return nil, nil, errors.Join(err, r.kill())
		}
		servers[i], clients[i] = r, cl
		return cl, closeBoth{cl, closerFunc(r.kill)}, nil
	}
	const n = 3000
	ss := streams(200)
	checkers := [2]*traffic.Checker{traffic.NewChecker(ss[1]), traffic.NewChecker(ss[0])}
	topo := newTopology(t, topology.Config{SPI: spibridge.DefaultTiming(), Transport: hook},
		[2]func([]byte) bool{checkers[0].Receive, checkers[1].Receive})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := topo.Start(ctx); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Go(func() {
			if _, err := traffic.Send(ctx, topo.Nodes[i].Driver, ss[i], n, 500*time.Microsecond, traffic.Requeue); err != nil {
				t.Errorf("node %d: send: %v", i, err)
			}
		})
	}
	// Let traffic flow, then take both servers away for a while.
	for checkers[1].Result().Received < n/4 {
		time.Sleep(5 * time.Millisecond)
	}
	for _, s := range servers {
		if err := s.kill(); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(300 * time.Millisecond)
	for _, s := range servers {
		if err := s.start(); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	for _, c := range checkers {
		c.WaitFor(ctx, n, 2*time.Second)
	}
	closeTopology(t, topo)
	for i, c := range checkers {
		r := c.Result()
		if len(r.Errors) > 0 || r.Foreign != 0 {
			t.Errorf("node %d received: %+v", i, r)
		}
		if r.Received < n/2 {
			t.Errorf("node %d received only %d of %d: traffic did not resume", i, r.Received, n)
		}
		assertAccounting(t, topo, 1-i, r.Received)
		st := clients[i].Stats()
		if st.Disconnects == 0 || st.Reconnects == 0 {
			t.Errorf("node %d client: %+v, want a disconnect and a reconnect", i, st)
		}
		var socketErrs uint64
		for _, errno := range []syscall.Errno{syscall.ECONNRESET, syscall.EPIPE, syscall.ENOTCONN, syscall.ECONNREFUSED} {
			socketErrs += st.Errors[errno]
		}
		ds := topo.Nodes[i].Driver.Stats()
		t.Logf("node %d: received %d/%d; client %+v; driver SPI errors %d, TX errors %d, reconciled %d, RX errors %d",
			i, r.Received, n, st, ds.SPIErrors, ds.TxErrors, ds.TxReconciled, ds.RxErrors)
		if ds.SPIErrors == 0 || socketErrs == 0 {
			t.Errorf("node %d: the outage was not seen as socket errors (%v)", i, st.Errors)
		}
	}
}

// closerFunc is an io.Closer calling f.
type closerFunc func() error

func (f closerFunc) Close() error { return f() }
