package chip

import (
	"fmt"
	"testing"
	"time"

	"tsnsim/chip/proto"
	"tsnsim/chip/regs"
)

// directWire hands a chip's frames straight to the far chip, on the
// sender's goroutine.
type directWire struct{ to *Chip }

func (w directWire) Send(f []byte, sof time.Time) { w.to.ReceivePHY(f, sof) }

// BenchmarkFrameWork is the modelled work of one frame from chip A to
// chip B, all on one goroutine and with timing off: the driver's TX write
// (FCS computed), chip A's decode, its transmitter's start and finish,
// chip B's reception (FCS checked), the RX metadata and frame reads and
// the driver's FCS check. It has none of the hand-offs of
// integration's BenchmarkOneWayPaired, whose baseline has those hand-offs
// and none of this work: it is the share of the emulated path's CPU per
// frame that the baseline cannot have (issue 13):
//
//	go test ./chip -run - -bench FrameWork
func BenchmarkFrameWork(b *testing.B) {
	for _, size := range []int{64, 1514} {
		b.Run(fmt.Sprint(size), func(b *testing.B) {
			cfg := Config{LinkBitsPerSec: -1}
			a, c := New(cfg), New(cfg)
			a.ConnectPHY(directWire{c})
			for _, x := range []*Chip{a, c} {
				x.regs.Set(regs.TSNSystemControl, regs.TSNEnable.Put(0, 1))
			}
			frame := make([]byte, size) // as BenchmarkOneWayPaired: size bytes before the FCS
			mosi := make([]byte, 0, proto.TxWriteHeader+proto.MaxWireLen)
			txMISO := make([]byte, cap(mosi))
			meta, metaMISO := proto.RxMetaRead(), make([]byte, proto.RxMetaReadLen)
			frameMOSI := proto.RxFrameRead(proto.MaxWireLen)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				w, err := proto.AppendTxFrameWrite(mosi[:0], proto.SendNow(size+proto.FCSLen, 0), frame)
				if err != nil {
					b.Fatal(err)
				}
				if err := a.Transact(w, txMISO[:len(w)]); err != nil {
					b.Fatal(err)
				}
				e, st, ok, _ := a.takeNext()
				if !ok {
					b.Fatal("chip A has no frame to send")
				}
				a.finishSend(&e, st)
				if err := c.Transact(meta, metaMISO); err != nil {
					b.Fatal(err)
				}
				n := int(proto.ParseRxMetadata(metaMISO[proto.ReadDataStart:]).FrameLength)
				miso := make([]byte, proto.ReadDataStart+n) // the driver's RX buffer
				if err := c.Transact(frameMOSI[:len(miso)], miso); err != nil {
					b.Fatal(err)
				}
				if n != size+proto.FCSLen || !proto.FCSValid(miso[proto.ReadDataStart:]) {
					b.Fatalf("chip B gave a frame of %d bytes, FCS valid %v", n, proto.FCSValid(miso[proto.ReadDataStart:]))
				}
			}
		})
	}
}
