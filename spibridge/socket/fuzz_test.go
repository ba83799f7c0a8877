package socket

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"testing/synctest"

	"tsnsim/chip/proto"
	"tsnsim/spibridge"
)

// maxDecodeAllocs bounds the allocations of decoding any stream: valid
// messages allocate nothing, and the one protocol error that ends a
// stream allocates its error value (1 to 5 allocations; the bound leaves
// room for the race detector's own). However long a length field claims
// to be, nothing is allocated for it.
const maxDecodeAllocs = 16

// decodeStream decodes messages travelling in direction dir from br
// into body, a buffer of the largest body of that direction, until the
// first error. It is the decoding of the server's reader (fromClient) and
// the client's reader (fromServer), without the connection around it.
func decodeStream(br *bufio.Reader, hdr *[frameHeaderLen]byte, body []byte, dir msgDirection) (msgs int, err error) {
	for {
		typ, n, err := readHeader(br, hdr, dir)
		if err != nil {
			return msgs, err
		}
		if err := readBody(br, body[:n]); err != nil { // panics if a bound were wrong
			return msgs, err
		}
		switch typ {
		case msgHello:
			_, err = parseHello(body[:n])
		case msgWelcome:
			_, err = parseWelcome(body[:n])
		case msgResult:
			if st := body[4]; st >= numStatuses || (st != statusOK && n-resultHdrLen > MaxText) {
				err = protoErr(reasonBadResult, "status %d with %d bytes", st, n-resultHdrLen)
			}
		}
		if err != nil {
			return msgs, err
		}
		msgs++
	}
}

// checkDecode decodes data both ways round: no panic, buffers never
// beyond their bound, bounded allocations.
func checkDecode(t *testing.T, data []byte, dir msgDirection, maxBody int) {
	body := make([]byte, maxBody)
	var hdr [frameHeaderLen]byte
	rd := bytes.NewReader(data)
	br := bufio.NewReaderSize(rd, frameHeaderLen+maxBody)
	allocs := testing.AllocsPerRun(3, func() {
		rd.Reset(data)
		br.Reset(rd)
		_, err := decodeStream(br, &hdr, body, dir)
		var pe *ProtocolError
		if err != io.EOF && !errors.As(err, &pe) {
			t.Fatalf("decoding % x: %v, want EOF or a protocol error", data, err)
		}
	})
	if allocs > maxDecodeAllocs {
		t.Errorf("decoding %d bytes allocated %v times, bound %d", len(data), allocs, maxDecodeAllocs)
	}
	if len(body) != maxBody || cap(body) != maxBody {
		t.Errorf("body buffer grew to %d", cap(body))
	}
}

func socketSeeds(f *testing.F, msgs ...string) {
	for _, m := range msgs {
		f.Add(unhex(f, m))
	}
}

// FuzzSocketServerDecode: arbitrary client bytes never panic the server,
// never allocate beyond the limits, and end (at most) their own
// connection; what the server sends back is well-formed.
func FuzzSocketServerDecode(f *testing.F) {
	socketSeeds(f, goldenHello, goldenHello+goldenRequest, goldenHello+goldenRequest+goldenRequest,
		goldenHello+" ff ff ff ff 03", goldenHello+" 00 00 00 05 03 00 00 00 01", "00 00 00 09 01 54 53 4e 42 00 02 00 01",
		goldenHello+" 00 00 10 05 03 00 00 00 01", goldenRequest, goldenHello+" 00 00 00 01 7f", "",
		goldenHello+goldenIdentify+goldenRequest, goldenHelloDriver+goldenIdentify+" 00 00 00 0c 03 00 00 00 02 01 42 94 00 00 00 01",
		goldenHello+" 00 00 00 00", goldenHello+" 00 00 00 0a 07 00 00 00 00 00 00 00 00 00")
	f.Fuzz(func(t *testing.T, data []byte) {
		checkDecode(t, data, fromClient, transferHdrLen+MaxTransfer)
		synctest.Test(t, func(t *testing.T) {
			bus := spibridge.NewInProcess(echoDev{make(chan struct{})}, spibridge.Timing{}, nil)
			defer bus.Close()
			srv := NewServer(bus, ServerConfig{MaxInFlight: 2})
			defer srv.Close()
			c, res := rawConn(srv)
			out := make(chan []byte, 1)
			go func() {
				b, _ := io.ReadAll(c)
				out <- b
			}()
			c.Write(data)
			synctest.Wait()
			var served error
			select {
			case served = <-res:
			default: // a valid stream so far: the server waits for more
				c.Close()
				served = <-res
			}
			c.Close()
			var pe *ProtocolError
			if served != nil && !errors.As(served, &pe) {
				t.Logf("ServeConn: %v", served) // write failures after our close
			}
			// The server's replies decode as server messages.
			reply := <-out
			br := bufio.NewReader(bytes.NewReader(reply))
			var hdr [frameHeaderLen]byte
			body := make([]byte, resultHdrLen+MaxTransfer)
			if n, err := decodeStream(br, &hdr, body, fromServer); err != io.EOF {
				var pe *ProtocolError
				if !errors.As(err, &pe) || pe.code != reasonShort || pe.Reason == "" {
					t.Errorf("server reply % x: message %d: %v", reply, n, err)
				}
			}
			if st := srv.Stats(); st.Active != 0 || st.Closed != 1 {
				t.Errorf("server stats %+v", st)
			}
		})
	})
}

// FuzzSocketClientDecode: arbitrary server bytes never panic the client,
// never allocate beyond the limits, and fail at most the transfer in
// flight and that connection. The first byte picks where they go: bit 0
// clear, in place of the server's hello; set, after a valid hello with a
// transfer in flight; bit 1 clear, on the request connection (a client
// without interrupts); set, on the interrupt connection.
func FuzzSocketClientDecode(f *testing.F) {
	socketSeeds(f, "00"+goldenWelcome, "01"+goldenResult, "01"+goldenIRQ+goldenResult, "01"+goldenFailed,
		"01 00 00 00 0e 04 00 00 00 01 09 00 00 00 00 12 34 56 78", "01 00 00 00 07 04 00 00 00 01 00 78",
		"01 00 00 00 03 06 07 76", "00 00 00 00 03 06 0b 76", "01 00 00 10 06 04 00 00 00 01 00", "01 ff ff ff ff 04",
		"03"+goldenIRQ+goldenIRQ, "03"+goldenResult, "02"+goldenWelcomeNoIRQ, "03 00 00 00 03 06 07 76",
		"00 00 00 00 29 02 54 53 4e 42 00 01 00 00 00 00 00 00 00 e4 e1 c0 00 00 00 00 00 00 4e 20 02 00 00 00 00 00 00 00 00 00 00 10 00 00 10 00")
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		mode, stream := data[0], data[1:]
		afterHello, onIRQ := mode&1 == 1, mode&2 == 2
		checkDecode(t, stream, fromServer, resultHdrLen+MaxTransfer)
		synctest.Test(t, func(t *testing.T) {
			var mu sync.Mutex
			dials := 0
			dial := func(ctx context.Context) (net.Conn, error) {
				mu.Lock()
				defer mu.Unlock()
				dials++
				if dials > 2 || !onIRQ && dials > 1 {
					return nil, errors.New("fuzz: no more servers")
				}
				fuzzed := !onIRQ || dials == 2
				isRequests := dials == 1
				c, s := net.Pipe()
				go func() {
					defer s.Close()
					io.ReadFull(s, make([]byte, 13)) // the client hello
					if !fuzzed {
						// The request connection of a fuzzed interrupt
						// connection: answers the hello, swallows requests.
						s.Write(unhex(t, goldenWelcome))
						io.Copy(io.Discard, s)
						return
					}
					if afterHello {
						s.Write(unhex(t, goldenWelcome))
						if isRequests {
							io.ReadFull(s, make([]byte, 17)) // the request
						}
					}
					s.Write(stream)
				}()
				return c, nil
			}
			cl, err := NewClient(dial, ClientConfig{NoInterrupts: !onIRQ})
			if !afterHello {
				if err == nil {
					cl.Close()
				}
				return
			}
			if err != nil {
				t.Fatalf("client over a valid server hello: %v", err)
			}
			defer cl.Close()
			rx := make([]byte, 8)
			cl.Transfer(context.Background(), proto.RegRead(0x0288), rx)
			st := cl.Stats()
			var failed uint64
			for _, n := range st.Errors {
				failed += n
			}
			if st.Transfers+failed+st.Cancelled != 1 {
				t.Errorf("client stats %+v", st)
			}
		})
	})
}
