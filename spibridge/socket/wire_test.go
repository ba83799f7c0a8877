package socket

import (
	"bytes"
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"tsnsim/chip/proto"
	"tsnsim/spibridge"
)

// Golden messages of docs/socket-protocol.md.
const (
	goldenHello      = "00 00 00 09 01  54 53 4e 42  00 01  00 01"
	goldenHelloNoIRQ = "00 00 00 09 01  54 53 4e 42  00 01  00 00"
	// The hello of a driver's request connection (flag 1: a driver).
	goldenHelloDriver = "00 00 00 09 01  54 53 4e 42  00 01  00 02"
	// Server hello: DefaultTiming (15 MHz, 20 us, Linux timeouts), 4096,
	// 16 in flight, name "A", interrupts granted.
	goldenWelcome = "00 00 00 2a 02  54 53 4e 42  00 01  00 01" +
		"  00 00 00 00 00 e4 e1 c0  00 00 00 00 00 00 4e 20" +
		"  00  00 00 00 00 00 00 00 00  00 00 10 00  00 10  01 41"
	goldenWelcomeNoIRQ = "00 00 00 2a 02  54 53 4e 42  00 01  00 00" +
		"  00 00 00 00 00 e4 e1 c0  00 00 00 00 00 00 4e 20" +
		"  00  00 00 00 00 00 00 00 00  00 00 10 00  00 10  01 41"
	// The same from a server that keeps one driver per chip (flag 1:
	// send an identify message).
	goldenWelcomeOwn = "00 00 00 2a 02  54 53 4e 42  00 01  00 03" +
		"  00 00 00 00 00 e4 e1 c0  00 00 00 00 00 00 4e 20" +
		"  00  00 00 00 00 00 00 00 00  00 00 10 00  00 10  01 41"
	// Identify: client id 0x0102030405060708, takeover, label "t".
	goldenIdentify = "00 00 00 0b 07  01 02 03 04 05 06 07 08  01  74"
	// Register read of TSN_SYSCOUNT_H (02 32 88 + 5 bytes), id 1.
	goldenRequest = "00 00 00 0d 03  00 00 00 01  02 32 88 00 00 00 00 00"
	goldenResult  = "00 00 00 0e 04  00 00 00 01  00  00 00 00 00 12 34 56 78"
	goldenIRQ     = "00 00 00 01 05"
	// A failed result (id 2, ETIMEDOUT, text "x").
	goldenFailed = "00 00 00 07 04  00 00 00 02  01  78"
)

func TestSocketGoldenEncoding(t *testing.T) {
	if got, want := appendHello(nil, flagInterrupts), unhex(t, goldenHello); !bytes.Equal(got, want) {
		t.Errorf("hello\n got % x\nwant % x", got, want)
	}
	w := serverHello{flags: flagInterrupts, timing: spibridge.DefaultTiming(), maxTransfer: MaxTransfer, maxInFlight: 16, name: "A"}
	if got, want := appendWelcome(nil, w), unhex(t, goldenWelcome); !bytes.Equal(got, want) {
		t.Errorf("welcome\n got % x\nwant % x", got, want)
	}
	// A fixed timeout: mode 1 and the nanoseconds.
	w.timing.Timeout = 3 * time.Millisecond
	w.flags, w.name = 0, ""
	want := unhex(t, "00 00 00 29 02  54 53 4e 42  00 01  00 00"+
		"  00 00 00 00 00 e4 e1 c0  00 00 00 00 00 00 4e 20"+
		"  01  00 00 00 00 00 2d c6 c0  00 00 10 00  00 10  00")
	if got := appendWelcome(nil, w); !bytes.Equal(got, want) {
		t.Errorf("welcome, fixed timeout\n got % x\nwant % x", got, want)
	}
	// The model off: clock 0 and overhead 0, whatever Overhead says.
	w.timing = spibridge.Timing{Overhead: 20 * time.Microsecond}
	if got, err := parseWelcome(appendWelcome(nil, w)[frameHeaderLen:]); err != nil || got.timing != (spibridge.Timing{}) {
		t.Errorf("welcome, model off: %+v, %v; want clock and overhead 0", got.timing, err)
	}
	if got := appendResultError(nil, 2, statusTimedOut, errors.New("x")); !bytes.Equal(got, unhex(t, goldenFailed)) {
		t.Errorf("failed result\n got % x\nwant % x", got, unhex(t, goldenFailed))
	}
	if got, want := appendIdentify(nil, identify{id: 0x0102030405060708, takeover: true, label: "t"}), unhex(t, goldenIdentify); !bytes.Equal(got, want) {
		t.Errorf("identify\n got % x\nwant % x", got, want)
	}
	if m, err := parseIdentify(unhex(t, goldenIdentify)[frameHeaderLen:]); err != nil || m.id != 0x0102030405060708 || !m.takeover || m.label != "t" {
		t.Errorf("parseIdentify: %+v, %v", m, err)
	}
	if got, want := appendError(nil, reasonBadVersion, "v"), unhex(t, "00 00 00 03 06 07 76"); !bytes.Equal(got, want) {
		t.Errorf("error message\n got % x\nwant % x", got, want)
	}
	// The hellos round-trip.
	wb := appendWelcome(nil, serverHello{flags: 1, timing: spibridge.DefaultTiming(), maxTransfer: 4096, maxInFlight: 16, name: "A"})
	got, err := parseWelcome(wb[frameHeaderLen:])
	if err != nil || got.timing != spibridge.DefaultTiming() || got.maxTransfer != 4096 || got.maxInFlight != 16 || got.name != "A" || got.flags != 1 {
		t.Errorf("parseWelcome: %+v, %v", got, err)
	}
}

// TestSocketGoldenClientBytes: the client's hello and request bytes are
// the documented ones, and it decodes the documented server messages.
func TestSocketGoldenClientBytes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srvEnd := make(chan net.Conn, 2)
		dial := func(ctx context.Context) (net.Conn, error) {
			c, s := net.Pipe()
			srvEnd <- s
			return c, nil
		}
		var (
			cl  *Client
			err error
			wg  sync.WaitGroup
		)
		wg.Go(func() { cl, err = NewClient(dial, ClientConfig{}) })
		// The request connection: a driver's hello without interrupts.
		// The server is one without one-driver-per-chip: no identify.
		s := <-srvEnd
		defer s.Close()
		if got, want := readN(t, s, 13), unhex(t, goldenHelloDriver); !bytes.Equal(got, want) {
			t.Errorf("client hello, request connection\n got % x\nwant % x", got, want)
		}
		writeAll(t, s, unhex(t, goldenWelcomeNoIRQ))
		// The interrupt connection.
		irq := <-srvEnd
		defer irq.Close()
		if got := readN(t, irq, 13); !bytes.Equal(got, unhex(t, goldenHello)) {
			t.Errorf("client hello, interrupt connection\n got % x\nwant % x", got, unhex(t, goldenHello))
		}
		writeAll(t, irq, unhex(t, goldenWelcome))
		wg.Wait()
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		if st := cl.Stats(); st.Server != "A" || !st.Connected {
			t.Errorf("stats after the hellos: %+v", st)
		}

		rx := make([]byte, 8)
		var terr error
		wg.Go(func() { terr = cl.Transfer(context.Background(), proto.RegRead(0x0288), rx) })
		if got := readN(t, s, 17); !bytes.Equal(got, unhex(t, goldenRequest)) {
			t.Errorf("request\n got % x\nwant % x", got, unhex(t, goldenRequest))
		}
		writeAll(t, s, unhex(t, goldenResult))
		wg.Wait()
		if terr != nil || !bytes.Equal(rx, unhex(t, "00 00 00 00 12 34 56 78")) {
			t.Errorf("transfer: % x, %v", rx, terr)
		}

		writeAll(t, irq, unhex(t, goldenIRQ))
		synctest.Wait()
		select {
		case <-cl.Interrupt():
		default:
			t.Error("interrupt message not delivered")
		}

		wg.Go(func() { terr = cl.Transfer(context.Background(), proto.RegRead(0x0288), rx) })
		readN(t, s, 17)
		writeAll(t, s, unhex(t, goldenFailed))
		wg.Wait()
		if !errors.Is(terr, syscall.ETIMEDOUT) || !strings.HasSuffix(terr.Error(), ": x") {
			t.Errorf("failed result: %v, want ETIMEDOUT with the server's text", terr)
		}
		if st := cl.Stats(); st.Transfers != 1 || st.Errors[syscall.ETIMEDOUT] != 1 || st.Interrupts != 1 {
			t.Errorf("stats %+v", st)
		}
	})
}

// TestSocketGoldenServerBytes: the server's hello and result bytes are
// the documented ones.
func TestSocketGoldenServerBytes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dev := newFakeDev()
		bus := spibridge.NewInProcess(dev, spibridge.DefaultTiming(), nil)
		defer bus.Close()
		srv := NewServer(bus, ServerConfig{Name: "A", IRQLevel: func() bool { return false }})
		defer srv.Close()
		c, res := rawConn(srv)
		writeAll(t, c, unhex(t, goldenHello))
		if got := readN(t, c, 46); !bytes.Equal(got, unhex(t, goldenWelcomeOwn)) {
			t.Errorf("server hello\n got % x\nwant % x", got, unhex(t, goldenWelcomeOwn))
		}
		writeAll(t, c, unhex(t, goldenIdentify))
		writeAll(t, c, unhex(t, goldenRequest))
		want := unhex(t, "00 00 00 0e 04  00 00 00 01  00  a5 a5 a5 a5 a5 a5 a5 a5")
		if got := readN(t, c, 18); !bytes.Equal(got, want) {
			t.Errorf("result\n got % x\nwant % x", got, want)
		}
		dev.irq <- struct{}{}
		if got := readN(t, c, 5); !bytes.Equal(got, unhex(t, goldenIRQ)) {
			t.Errorf("interrupt\n got % x\nwant % x", got, unhex(t, goldenIRQ))
		}
		c.Close()
		if err := <-res; err != nil {
			t.Errorf("ServeConn after an orderly close: %v", err)
		}
	})
}

func TestStatusErrno(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want syscall.Errno
	}{
		{closedBusErr(t), syscall.EBADF},
		{errors.Join(errors.New("a"), syscall.ETIMEDOUT), syscall.ETIMEDOUT},
		{syscall.EINVAL, syscall.EINVAL},
		{context.Canceled, syscall.ECANCELED},
		{errors.New("plain"), syscall.EIO},
		{syscall.ENOSPC, syscall.EIO},
	} {
		if got := statusErrno[statusOf(tc.err)]; got != tc.want {
			t.Errorf("statusOf(%v) carries %v, want %v", tc.err, got, tc.want)
		}
	}
}

func TestParseSocketAddr(t *testing.T) {
	for _, tc := range []struct{ in, network, address string }{
		{"unix:/run/tsnsim/a.sock", "unix", "/run/tsnsim/a.sock"},
		{"unix:rel.sock", "unix", "rel.sock"},
		{"unix:@abstract", "unix", "@abstract"},
		{"tcp::7000", "tcp", "127.0.0.1:7000"},
		{"tcp:0.0.0.0:7000", "tcp", "0.0.0.0:7000"},
		{"tcp:[::1]:7000", "tcp", "[::1]:7000"},
		{"tcp:chip-a:0", "tcp", "chip-a:0"},
	} {
		n, a, err := ParseAddr(tc.in)
		if err != nil || n != tc.network || a != tc.address {
			t.Errorf("ParseAddr(%q) = %q, %q, %v; want %q, %q", tc.in, n, a, err, tc.network, tc.address)
		}
	}
	for _, in := range []string{"", "unix:", "/tmp/a.sock", "udp:1.2.3.4:5", "tcp:7000", "tcp:host:", "tcp:host:http", "tcp:host:65536", "tcp:host:-1"} {
		_, _, err := ParseAddr(in)
		if !errors.Is(err, syscall.EINVAL) || !strings.HasPrefix(err.Error(), "spibridge: ") {
			t.Errorf("ParseAddr(%q): err %v, want an EINVAL spibridge error", in, err)
		}
	}
}

// closedBusErr is the error a closed in-process bus returns.
func closedBusErr(t *testing.T) error {
	t.Helper()
	bus := spibridge.NewInProcess(newFakeDev(), spibridge.Timing{}, nil)
	if err := bus.Close(); err != nil {
		t.Fatal(err)
	}
	err := bus.Transfer(context.Background(), []byte{0}, []byte{0})
	if err == nil {
		t.Fatal("transfer on a closed bus succeeded")
	}
	return err
}
