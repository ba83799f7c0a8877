package integration

import (
	"fmt"
	"testing"

	"tsnsim/chip/proto"
)

// BenchmarkBaseWork is the per-frame work of BenchmarkOneWayPaired's
// baseline (basePipe) on one goroutine, with none of its hand-offs: the
// TX write built in a reused buffer, the host FIFO entry allocated and
// copied, the two queues, and the RX buffer allocated and copied.
// chip's BenchmarkFrameWork is the emulated path's work measured the same
// way (the same copies and allocations, plus the FCS, the decoding and
// the registers); the two side by side are what the emulated path costs
// per frame that the baseline cannot (issue 13):
//
//	go test ./chip ./integration -run - -bench 'FrameWork|BaseWork'
func BenchmarkBaseWork(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(fmt.Sprint(size), func(b *testing.B) {
			frame := make([]byte, size)
			buf := make([]byte, 0, proto.TxWriteHeader+proto.MaxWireLen)
			var host, rx queue
			got := 0
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				n := max(len(frame), proto.MinFrameLen)
				mosi := buf[:proto.TxWriteHeader+n+proto.FCSLen]
				clear(mosi[proto.TxWriteHeader+copy(mosi[proto.TxWriteHeader:], frame):])
				host.push(append([]byte(nil), mosi[proto.TxWriteHeader:]...))
				f, _ := host.pop()
				rx.push(f)
				f, _ = rx.pop()
				miso := make([]byte, proto.ReadDataStart+len(f))
				copy(miso[proto.ReadDataStart:], f)
				got += len(miso[proto.ReadDataStart : len(miso)-proto.FCSLen])
			}
			if got != b.N*size {
				b.Fatalf("%d bytes received, want %d", got, b.N*size)
			}
		})
	}
}
