package socket

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"tsnsim/chip"
	"tsnsim/chip/proto"
	"tsnsim/chip/regs"
	"tsnsim/spibridge"
)

// serveUnix serves bus on a fresh Unix socket at path; stop closes the
// server and waits for Serve to return nil.
func serveUnix(t *testing.T, bus spibridge.Transport, path string) (srv *Server, stop func()) {
	t.Helper()
	ln, err := Listen("unix:" + path)
	if err != nil {
		t.Fatal(err)
	}
	srv = NewServer(bus, ServerConfig{Name: "a"})
	done := make(chan error, 1)
	go func() { done <- srv.Serve(context.Background(), ln) }()
	var once sync.Once
	return srv, func() {
		once.Do(func() {
			srv.Close()
			if err := <-done; err != nil {
				t.Errorf("Serve: %v", err)
			}
		})
	}
}

// TestSocketUnixRegisterRead: register reads of a real chip over a real
// Unix socket return exactly the MISO of the same reads in-process, and a
// register write over the socket lands in the chip.
func TestSocketUnixRegisterRead(t *testing.T) {
	defer goleak.VerifyNone(t)
	c := chip.New(chip.Config{Name: "a", MAC: net.HardwareAddr{0x02, 0x11, 0x22, 0x33, 0x44, 0x55}})
	defer c.Close()
	bus := spibridge.NewInProcess(c, spibridge.DefaultTiming(), nil)
	defer bus.Close()
	path := filepath.Join(t.TempDir(), "a.sock")
	_, stop := serveUnix(t, bus, path)
	defer stop()
	cl, err := Dial(context.Background(), "unix:"+path, ClientConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx := context.Background()
	if err := cl.Transfer(ctx, proto.RegWrite(regs.TSNSystemControl+4, 1), make([]byte, proto.RegWriteLen)); err != nil {
		t.Fatal(err)
	}
	if got := c.Register(regs.TSNSystemControl); got != 1 {
		t.Errorf("TSN_SYSTEM_CONTROL after a write over the socket: %#x", got)
	}
	for _, mosi := range [][]byte{
		proto.RegRead(regs.TSNMACAddr), proto.RegRead(regs.TSNMACAddr + 4),
		proto.RegRead(regs.TSNSystemInfo), proto.RegRead(regs.TSNSystemControl + 4),
		proto.RegRead(regs.TSNTxControl + 4), proto.RegRead(0x0FF0), proto.RxMetaRead(),
	} {
		socketPeer, local := make([]byte, len(mosi)), make([]byte, len(mosi))
		if err := cl.Transfer(ctx, mosi, socketPeer); err != nil {
			t.Fatal(err)
		}
		if err := bus.Transfer(ctx, mosi, local); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(socketPeer, local) {
			t.Errorf("% x: MISO over the socket % x, in-process % x", mosi, socketPeer, local)
		}
	}
	miso := make([]byte, 8)
	cl.Transfer(ctx, proto.RegRead(regs.TSNMACAddr+4), miso)
	if v := proto.RegReadValue(miso); v != 0x22334455 {
		t.Errorf("TSN_MAC_ADDR_L over the socket = %#x, want 0x22334455", v)
	}
	if st := cl.Stats(); st.Timing != spibridge.DefaultTiming() || st.Server != "a" {
		t.Errorf("client stats: server %q, timing %+v", st.Server, st.Timing)
	}
	// The client going away (and the server stopping) changes nothing on
	// the chip: no transaction reaches the bus.
	before, control := bus.Stats(), c.Register(regs.TSNSystemControl)
	cl.Close()
	stop()
	if after := bus.Stats(); after.Transfers != before.Transfers || after.Timeouts != before.Timeouts ||
		c.Register(regs.TSNSystemControl) != control {
		t.Errorf("bus stats %+v after the client left, %+v before", after, before)
	}
}

// TestSocketUnixReconnect: the server is closed during a loop of
// transfers; the client's errors wrap ECONNRESET, EPIPE, ENOTCONN or
// ECONNREFUSED; a new server on the same path with the same chip gets the
// client back by itself (it signals an interrupt edge) and transfers
// succeed again.
func TestSocketUnixReconnect(t *testing.T) {
	defer goleak.VerifyNone(t)
	c := chip.New(chip.Config{Name: "a"})
	defer c.Close()
	bus := spibridge.NewInProcess(c, spibridge.Timing{}, nil)
	defer bus.Close()
	path := filepath.Join(t.TempDir(), "a.sock")
	_, stop := serveUnix(t, bus, path)
	defer stop()
	cl, err := Dial(context.Background(), "unix:"+path, ClientConfig{BackoffMin: 2 * time.Millisecond, BackoffMax: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()

	const loopers = 3
	var wg sync.WaitGroup
	running := make(chan struct{}, loopers)
	errs := make(chan error, loopers*8)
	for range loopers {
		wg.Go(func() {
			miso := make([]byte, 8)
			n, failures := 0, 0
			for failures < 5 {
				err := cl.Transfer(context.Background(), proto.RegRead(regs.TSNMACAddr), miso)
				if err != nil {
					errs <- err
					failures++
					continue
				}
				if n++; n == 100 {
					running <- struct{}{}
				}
			}
		})
	}
	for range loopers {
		<-running
	}
	stop()
	wg.Wait()
	close(errs)
	for err := range errs {
		if !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, syscall.EPIPE) &&
			!errors.Is(err, syscall.ENOTCONN) && !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("transfer with the server gone: %v", err)
		}
	}
	if st := cl.Stats(); st.Connected || st.Disconnects != 1 {
		t.Errorf("client stats with the server gone: %+v", st)
	}

	pending(cl.Interrupt()) // drop an edge from before
	_, stop = serveUnix(t, bus, path)
	defer stop()
	select {
	case <-cl.Interrupt():
	case <-time.After(10 * time.Second):
		t.Fatal("client did not reconnect")
	}
	miso := make([]byte, 8)
	if err := cl.Transfer(context.Background(), proto.RegRead(regs.TSNMACAddr+4), miso); err != nil {
		t.Fatalf("transfer after the reconnect: %v", err)
	}
	if v := proto.RegReadValue(miso); v != 0x00000001 {
		t.Errorf("TSN_MAC_ADDR_L after the reconnect = %#x", v)
	}
	if st := cl.Stats(); !st.Connected || st.Reconnects != 1 || st.Disconnects != 1 {
		t.Errorf("client stats after the reconnect: %+v", st)
	}
}

func TestListenSocket(t *testing.T) {
	defer goleak.VerifyNone(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "a.sock")
	ln, err := Listen("unix:" + path)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 || fi.Mode()&os.ModeSocket == 0 {
		t.Errorf("socket file: %v, %v; want a socket with mode 0600", fi.Mode(), err)
	}
	// Someone listens: EADDRINUSE, and the file stays.
	accepted := make(chan struct{})
	go func() {
		if c, err := ln.Accept(); err == nil {
			c.Close()
		}
		close(accepted)
	}()
	if _, err := Listen("unix:" + path); !errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("listening over a live socket: %v, want EADDRINUSE", err)
	}
	<-accepted
	// A socket file left by a killed process is replaced.
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("stale socket file not left behind: %v", err)
	}
	ln, err = Listen("unix:" + path)
	if err != nil {
		t.Fatalf("listening over a stale socket: %v", err)
	}
	ln.Close()
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket file left after Close: %v", err)
	}
	// A path that is not a socket is not touched.
	file := filepath.Join(dir, "file")
	os.WriteFile(file, []byte("keep"), 0o644)
	if _, err := Listen("unix:" + file); !errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("listening over a regular file: %v, want EADDRINUSE", err)
	}
	if b, _ := os.ReadFile(file); string(b) != "keep" {
		t.Error("regular file clobbered")
	}
	if _, err := Listen("udp:1"); !errors.Is(err, syscall.EINVAL) {
		t.Errorf("bad address: %v", err)
	}
	// Dialing a missing socket fails with the OS's errno.
	if _, err := Dial(context.Background(), "unix:"+path, ClientConfig{}); !errors.Is(err, syscall.ENOENT) {
		t.Errorf("dialing a missing socket: %v, want ENOENT", err)
	}
}

// TestSocketTCP: the same bridge over TCP.
func TestSocketTCP(t *testing.T) {
	defer goleak.VerifyNone(t)
	bus := spibridge.NewInProcess(echoDev{make(chan struct{})}, spibridge.Timing{}, nil)
	defer bus.Close()
	ln, err := Listen("tcp::0")
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(bus, ServerConfig{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	cl, err := Dial(context.Background(), "tcp:"+ln.Addr().String(), ClientConfig{})
	if err != nil {
		t.Fatal(err)
	}
	rx := make([]byte, 3)
	if err := cl.Transfer(context.Background(), []byte{1, 2, 3}, rx); err != nil || rx[2] != ^byte(3) {
		t.Errorf("transfer over TCP: % x, %v", rx, err)
	}
	cl.Close()
	cancel() // Serve ends with its context
	if err := <-done; err != nil {
		t.Errorf("Serve after its context ended: %v", err)
	}
	srv.Close()
}
