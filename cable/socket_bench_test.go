package cable

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/zap"

	"tsnsim/chip/proto"
)

// sockTokenWire releases one in-flight token per frame it receives.
type sockTokenWire struct{ tokens chan struct{} }

func (w sockTokenWire) Send([]byte, time.Time) { <-w.tokens }

// BenchmarkSocketEnds measures frames carried from one socket end's
// ReceivePHY to the other end's wire (FCS strip, framing, socket,
// parsing, FCS append), 1514-byte frames, pacing off, with a bounded
// number in flight so that nothing overflows.
func BenchmarkSocketEnds(b *testing.B) {
	for _, tc := range []struct {
		name     string
		inFlight int
		specs    func(b *testing.B) (string, string)
	}{
		{"stream-unix", 128, func(b *testing.B) (string, string) {
			path := filepath.Join(b.TempDir(), "bench.sock")
			return "stream-listen:unix:" + path, "stream-connect:unix:" + path
		}},
		{"stream-tcp", 128, nil},
		{"dgram-udp", 32, func(b *testing.B) (string, string) { // kernel buffers drop beyond that
			pa, pb := sockFreeUDPPort(b), sockFreeUDPPort(b)
			return fmt.Sprintf("dgram:udp:127.0.0.1:%d:127.0.0.1:%d", pa, pb),
				fmt.Sprintf("dgram:udp:127.0.0.1:%d:127.0.0.1:%d", pb, pa)
		}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			open := func(spec string) *SocketPort {
				cfg, err := ParseSocketEnd(spec)
				if err != nil {
					b.Fatal(err)
				}
				cfg.LinkBitsPerSec = -1
				p, err := OpenSocketEnd(b.Context(), cfg, zap.NewNop())
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { _ = p.Close() })
				return p
			}
			var tx, rx *SocketPort
			if tc.specs == nil {
				tx = open("stream-listen:tcp:127.0.0.1:0")
				rx = open("stream-connect:tcp:" + tx.Addr().String())
			} else {
				sa, sb := tc.specs(b)
				tx, rx = open(sa), open(sb)
			}
			tokens := make(chan struct{}, tc.inFlight)
			rx.ConnectPHY(sockTokenWire{tokens})
			tx.ConnectPHY(sockTokenWire{make(chan struct{})})
			for _, p := range []*SocketPort{tx, rx} {
				if err := p.WaitConnected(b.Context()); err != nil {
					b.Fatal(err)
				}
			}
			frame := proto.AppendFCS(make([]byte, 1514))
			acquire := func() {
				select {
				case tokens <- struct{}{}:
				case <-time.After(5 * time.Second):
					b.Fatalf("a frame got lost: %+v", tx.Stats())
				}
			}
			b.SetBytes(1514)
			b.ResetTimer()
			for range b.N {
				acquire()
				tx.ReceivePHY(frame, time.Time{})
			}
			for range tc.inFlight { // wait for the last frames
				acquire()
			}
			b.StopTimer()
			if err := tx.Close(); err != nil { // the writer counts after its write returns
				b.Fatal(err)
			}
			if s := tx.Stats(); s.TxFrames != uint64(b.N) {
				b.Fatalf("sent %d of %d: %+v", s.TxFrames, b.N, s)
			}
		})
	}
}
