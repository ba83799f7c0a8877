package socket

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"tsnsim/chip/proto"
	"tsnsim/chip/regs"
	"tsnsim/spibridge"
)

// TestServerDeadlines: a client that goes quiet after its hello is closed
// after exactly IdleTimeout, one that stops inside a message exactly
// MessageTimeout after the message's first byte, and one that never says
// hello after HelloTimeout; a driver's connections (interrupts) are
// spared by the idle limit.
func TestServerDeadlines(t *testing.T) {
	cfg := ServerConfig{HelloTimeout: 3 * time.Second, MessageTimeout: 2 * time.Second, IdleTimeout: 7 * time.Second}
	for _, tc := range []struct {
		name   string
		in     string
		wait   time.Duration // before the second part
		in2    string
		reason closeReason
		after  time.Duration // from the start
	}{
		{"no hello", "", 0, "", reasonHelloTimeout, 3 * time.Second},
		{"quiet register tool", goldenHelloNoIRQ, 0, "", reasonIdle, 7 * time.Second},
		{"quiet, then half a request", goldenHelloNoIRQ, 5 * time.Second, "00 00 00 0d 03 00", reasonMessageTimeout, 7 * time.Second},
		{"requests keep it alive", goldenHelloNoIRQ, 5 * time.Second, goldenRequest, reasonIdle, 12 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				bus := spibridge.NewInProcess(newFakeDev(), spibridge.Timing{}, nil)
				defer bus.Close()
				srv := NewServer(bus, cfg)
				defer srv.Close()
				drv := newPipeClient(t, srv, ClientConfig{})
				defer drv.Close()
				c, res := rawConn(srv)
				defer c.Close()
				go drain(c)
				start := time.Now()
				if tc.in != "" {
					writeAll(t, c, unhex(t, tc.in))
				}
				if tc.in2 != "" {
					time.Sleep(tc.wait)
					writeAll(t, c, unhex(t, tc.in2))
				}
				err := <-res
				var pe *ProtocolError
				if !errors.As(err, &pe) || pe.Reason != tc.reason.String() {
					t.Fatalf("ServeConn: %v, want %q", err, tc.reason)
				}
				if took := time.Since(start); took != tc.after {
					t.Errorf("closed after %v, want %v", took, tc.after)
				}
				// The driver, quiet all along, is still served.
				if err := drv.Transfer(context.Background(), proto.RegRead(0), make([]byte, 8)); err != nil {
					t.Errorf("driver after %v of silence: %v", time.Since(start), err)
				}
			})
		})
	}
}

// drain reads c until it fails.
func drain(c interface{ Read([]byte) (int, error) }) {
	b := make([]byte, 256)
	for {
		if _, err := c.Read(b); err != nil {
			return
		}
	}
}

// TestServerRegisterToolsCannotLockOutDriver: register-only clients that
// fill their pool and go quiet neither keep a driver out (it has slots of
// its own) nor hold their slots past the idle limit.
func TestServerRegisterToolsCannotLockOutDriver(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		bus := spibridge.NewInProcess(newFakeDev(), spibridge.Timing{}, nil)
		defer bus.Close()
		srv := NewServer(bus, ServerConfig{IdleTimeout: 10 * time.Second})
		defer srv.Close()
		var tools []*Client
		for range DefaultServerMaxConns {
			tl := newPipeClient(t, srv, ClientConfig{NoInterrupts: true, BackoffMin: time.Hour, BackoffMax: time.Hour})
			defer tl.Close()
			tools = append(tools, tl)
		}
		// FullWait -1: the refusal itself is under test, not the retry.
		if _, err := NewClient(pipeDialer(srv, nil), ClientConfig{NoInterrupts: true, FullWait: -1}); !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("register tool over the limit: %v, want ECONNREFUSED", err)
		}
		for round := range 2 { // a driver, then a restarted driver
			drv, err := NewClient(pipeDialer(srv, nil), ClientConfig{})
			if err != nil {
				t.Fatalf("driver %d with the register pool full: %v", round, err)
			}
			if err := drv.Transfer(context.Background(), proto.RegWrite(regs.TSNSystemControl+4, 1), make([]byte, 7)); err != nil {
				t.Errorf("driver %d enables the chip: %v", round, err)
			}
			if err := drv.Transfer(context.Background(), proto.RegWrite(regs.TSNSystemControl+4, 0), make([]byte, 7)); err != nil {
				t.Errorf("driver %d disables the chip: %v", round, err)
			}
			drv.Close()
		}
		time.Sleep(11 * time.Second)
		synctest.Wait()
		if st := srv.Stats(); st.Active != 0 {
			t.Errorf("%d connections still served after the idle limit", st.Active)
		}
		tl, err := NewClient(pipeDialer(srv, nil), ClientConfig{NoInterrupts: true})
		if err != nil {
			t.Fatalf("register tool after the idle ones were closed: %v", err)
		}
		tl.Close()
		if st := srv.Stats(); st.ProtocolErrors[reasonIdle.String()] != DefaultServerMaxConns || st.Refused != 1 {
			t.Errorf("server stats %+v", st)
		}
	})
}

// Driver transactions.
var (
	enable  = proto.RegWrite(regs.TSNSystemControl+4, 1)
	disable = proto.RegWrite(regs.TSNSystemControl+4, 0)
)

func xfer(cl *Client, tx []byte) error {
	return cl.Transfer(context.Background(), tx, make([]byte, len(tx)))
}

// TestServerOneDriverPerChip: the first client that enables the chip
// owns it; a second driver's enable, TX writes and RX reads are refused
// with EBUSY and a text naming the holder, while its register reads and
// a register tool work alongside; the owner keeps the chip until it
// disables it; --takeover replaces a driver that died holding the chip,
// and the replaced driver's connections are closed.
func TestServerOneDriverPerChip(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		bus := spibridge.NewInProcess(newFakeDev(), spibridge.Timing{}, nil)
		defer bus.Close()
		core, logs := observer.New(zap.InfoLevel)
		srv := NewServer(bus, ServerConfig{Name: "a", Logger: zap.New(core), MaxDriverConns: 16})
		defer srv.Close()
		first := newPipeClient(t, srv, ClientConfig{Label: "first driver"})
		defer first.Close()
		second := newPipeClient(t, srv, ClientConfig{Label: "second driver"})
		defer second.Close()
		tool := newPipeClient(t, srv, ClientConfig{NoInterrupts: true})
		defer tool.Close()

		if err := xfer(first, enable); err != nil {
			t.Fatalf("first driver enables: %v", err)
		}
		if err := xfer(first, enable); err != nil {
			t.Errorf("first driver enables again: %v", err)
		}
		txw, err := proto.TxFrameWrite(proto.SendNow(64, proto.PriorityBestEffort), make([]byte, 60))
		if err != nil {
			t.Fatal(err)
		}
		for _, tx := range [][]byte{enable, disable, txw, proto.RxMetaRead(), proto.RxFrameRead(64)} {
			err := xfer(second, tx)
			if !errors.Is(err, syscall.EBUSY) || !strings.Contains(err.Error(), `chip a is driven by "first driver"`) ||
				!strings.Contains(err.Error(), "--takeover") {
				t.Errorf("second driver's % x: %v, want EBUSY naming the first driver", tx[:3], err)
			}
		}
		for _, cl := range []*Client{second, tool} {
			if err := xfer(cl, proto.RegRead(regs.TSNSystemControl+4)); err != nil {
				t.Errorf("register read alongside the driver: %v", err)
			}
		}
		if err := xfer(first, txw); err != nil {
			t.Errorf("owner's TX write: %v", err)
		}
		// The owner lets go; the second driver gets the chip.
		if err := xfer(first, disable); err != nil {
			t.Fatalf("first driver disables: %v", err)
		}
		if err := xfer(second, enable); err != nil {
			t.Fatalf("second driver after the first let go: %v", err)
		}
		// The second driver dies holding the chip: a new one is refused
		// until it asks to take over.
		second.Close()
		synctest.Wait()
		third := newPipeClient(t, srv, ClientConfig{Label: "third"})
		defer third.Close()
		if err := xfer(third, enable); !errors.Is(err, syscall.EBUSY) || !strings.Contains(err.Error(), "its connection is gone") {
			t.Errorf("third driver without takeover: %v", err)
		}
		third.Close()
		fourth := newPipeClient(t, srv, ClientConfig{Label: "fourth", Takeover: true})
		defer fourth.Close()
		if err := xfer(fourth, enable); err != nil {
			t.Errorf("takeover of a dead driver: %v", err)
		}
		// A live owner taken over loses its connections.
		fifth := newPipeClient(t, srv, ClientConfig{Label: "fifth", Takeover: true, BackoffMin: time.Hour, BackoffMax: time.Hour})
		defer fifth.Close()
		if err := xfer(fifth, enable); err != nil {
			t.Errorf("takeover of a live driver: %v", err)
		}
		synctest.Wait()
		if st := fourth.Stats(); st.Disconnects == 0 {
			t.Errorf("the driver taken over was not disconnected: %+v", st)
		}
		if err := xfer(fourth, txw); !errors.Is(err, syscall.EBUSY) && !errors.Is(err, syscall.ENOTCONN) {
			t.Errorf("TX write of the driver taken over: %v, want EBUSY (or ENOTCONN while it reconnects)", err)
		}
		st := srv.Stats()
		if st.Takeovers != 2 || st.HeldRefused != 7 || st.ProtocolErrors[reasonTakenOver.String()] == 0 {
			t.Errorf("server stats %+v", st)
		}
		for _, want := range []string{"driver attached: it owns the chip", "driver detached: the chip is free", "driver replaced (takeover)"} {
			if logs.FilterMessage(want).Len() == 0 {
				t.Errorf("no info log %q", want)
			}
		}
	})
}

// levelDev is a chip stand-in with an interrupt line that has a level:
// asserted while a frame waits.
type levelDev struct {
	*fakeDev
	level atomic.Bool
}

// TestServerTellsLevelAtHello: a subscriber is sent an interrupt message
// at once if the line is asserted, and none if it is not.
func TestServerTellsLevelAtHello(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dev := &levelDev{fakeDev: newFakeDev()}
		bus := spibridge.NewInProcess(dev, spibridge.Timing{}, nil)
		defer bus.Close()
		srv := NewServer(bus, ServerConfig{Name: "A", IRQLevel: dev.level.Load})
		defer srv.Close()
		for _, asserted := range []bool{false, true, false} {
			dev.level.Store(asserted)
			c, _ := rawConn(srv)
			writeAll(t, c, unhex(t, goldenHello))
			readN(t, c, 46)
			got := make(chan bool, 1)
			go func() {
				var b [5]byte
				c.SetReadDeadline(time.Now().Add(time.Second))
				_, err := c.Read(b[:])
				got <- err == nil && b[4] == byte(msgIRQ)
			}()
			if irq := <-got; irq != asserted {
				t.Errorf("line asserted %v: interrupt message at the hello %v", asserted, irq)
			}
			c.Close()
			synctest.Wait()
		}
	})
}

// TestServerNoLostEdges: the interrupt connection is closed just before a
// frame arrives (its edge raised while the server is tearing the
// connection down), 100 times; each time the next subscriber is told.
// With the line's level known and without it (the latch).
func TestServerNoLostEdges(t *testing.T) {
	for _, withLevel := range []bool{true, false} {
		name := "latch"
		if withLevel {
			name = "level"
		}
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				dev := &levelDev{fakeDev: newFakeDev()}
				bus := spibridge.NewInProcess(dev, spibridge.Timing{}, nil)
				defer bus.Close()
				cfg := ServerConfig{Name: "A"}
				if withLevel {
					cfg.IRQLevel = dev.level.Load
				}
				srv := NewServer(bus, cfg)
				defer srv.Close()
				misses := 0
				for i := range 100 {
					old, oldRes := rawConn(srv)
					writeAll(t, old, unhex(t, goldenHello))
					readN(t, old, 46)
					go drain(old)
					synctest.Wait()
					// The driver reads everything: the line is deasserted.
					dev.level.Store(false)
					old.Close()
					if i%2 == 1 {
						synctest.Wait() // also: the edge after the old one is gone
					}
					dev.level.Store(true) // a frame arrives
					dev.irq <- struct{}{}
					<-oldRes
					c, _ := rawConn(srv)
					writeAll(t, c, unhex(t, goldenHello))
					readN(t, c, 46)
					c.SetReadDeadline(time.Now().Add(time.Second))
					var b [5]byte
					if _, err := c.Read(b[:]); err != nil || b[4] != byte(msgIRQ) {
						misses++
					}
					c.Close()
					synctest.Wait()
					dev.level.Store(false)
				}
				if misses != 0 {
					t.Errorf("%d of 100 edges lost across a reconnect", misses)
				}
			})
		})
	}
}

// TestWarnLimiter: at most warnBurst lines a window; the next line says
// how many were suppressed, and flush accounts for the rest.
func TestWarnLimiter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		core, logs := observer.New(zap.WarnLevel)
		log := zap.New(core)
		var l warnLimiter
		for range 1000 {
			l.warn(log, "connection refused")
		}
		if n := logs.Len(); n != warnBurst {
			t.Fatalf("%d lines for 1000 warnings in one window, want %d", n, warnBurst)
		}
		time.Sleep(warnInterval)
		l.warn(log, "connection refused")
		last := logs.All()[logs.Len()-1]
		if got := last.ContextMap()["suppressed"]; got != uint64(1000-warnBurst) {
			t.Errorf("suppressed %v, want %d", got, 1000-warnBurst)
		}
		for range 10 {
			l.warn(log, "connection refused")
		}
		l.flush(log, "connections refused")
		last = logs.All()[logs.Len()-1]
		if got := last.ContextMap()["suppressed"]; last.Message != "connections refused" || got != uint64(10-warnBurst+1) {
			t.Errorf("flush: %q suppressed %v", last.Message, got)
		}
	})
}
