package socket

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"testing"

	"tsnsim/chip"
	"tsnsim/chip/proto"
	"tsnsim/chip/regs"
	"tsnsim/spibridge"
)

// benchSizes are the transfers of the driver's hot path: a register read
// (8), an RX metadata read (14), a 64-byte frame write (103) and a
// 1518-byte frame write (1557).
var benchSizes = []int{8, 14, 103, 1557}

// benchMOSI returns the transaction of n bytes among benchSizes.
func benchMOSI(b *testing.B, n int) []byte {
	switch n {
	case proto.RegReadLen:
		return proto.RegRead(regs.TSNMACAddr)
	case proto.RxMetaReadLen:
		return proto.RxMetaRead()
	}
	frame := n - proto.TxWriteHeader - proto.FCSLen
	mosi, err := proto.TxFrameWrite(proto.SendNow(frame+proto.FCSLen, proto.PriorityBestEffort), make([]byte, frame))
	if err != nil || len(mosi) != n {
		b.Fatalf("TX write of %d bytes: %d bytes, %v", n, len(mosi), err)
	}
	return mosi
}

func reportRate(b *testing.B, n int) {
	b.SetBytes(int64(n))
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "transfers/s")
}

// BenchmarkSocketTransfer: one caller's transfers to a chip (its
// transmitter not started: frame writes beyond the host FIFO are counted
// as back-pressure) through an unthrottled InProcess bus, over a Unix
// socket.
func BenchmarkSocketTransfer(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			c := chip.New(chip.Config{Name: "bench"})
			defer c.Close()
			bus := spibridge.NewInProcess(c, spibridge.Timing{}, nil)
			defer bus.Close()
			path := filepath.Join(b.TempDir(), "chip.sock")
			ln, err := Listen("unix:" + path)
			if err != nil {
				b.Fatal(err)
			}
			srv := NewServer(bus, ServerConfig{})
			go srv.Serve(context.Background(), ln)
			defer srv.Close()
			cl, err := Dial(context.Background(), "unix:"+path, ClientConfig{})
			if err != nil {
				b.Fatal(err)
			}
			defer cl.Close()
			mosi, miso := benchMOSI(b, n), make([]byte, n)
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if err := cl.Transfer(ctx, mosi, miso); err != nil {
					b.Fatal(err)
				}
			}
			reportRate(b, n)
		})
	}
}

// BenchmarkBareUnixRoundTrip is the floor BenchmarkSocketTransfer is
// measured against: a length-prefixed request of n bytes and a response
// of n bytes over a Unix socket to an echo server, one goroutine a side,
// buffered reads, one write per message.
func BenchmarkBareUnixRoundTrip(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			path := filepath.Join(b.TempDir(), "echo.sock")
			ln, err := net.Listen("unix", path)
			if err != nil {
				b.Fatal(err)
			}
			defer ln.Close()
			served := make(chan struct{})
			go func() {
				defer close(served)
				c, err := ln.Accept()
				if err != nil {
					return
				}
				defer c.Close()
				br := bufio.NewReaderSize(c, 4+MaxTransfer)
				buf := make([]byte, 4+MaxTransfer)
				for {
					if _, err := io.ReadFull(br, buf[:4]); err != nil {
						return
					}
					m := int(binary.BigEndian.Uint32(buf))
					if _, err := io.ReadFull(br, buf[4:4+m]); err != nil {
						return
					}
					if _, err := c.Write(buf[:4+m]); err != nil {
						return
					}
				}
			}()
			c, err := net.Dial("unix", path)
			if err != nil {
				b.Fatal(err)
			}
			req := make([]byte, 4+n)
			binary.BigEndian.PutUint32(req, uint32(n))
			resp := make([]byte, 4+n)
			br := bufio.NewReaderSize(c, 4+MaxTransfer)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.Write(req); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(br, resp[:4]); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(br, resp[4:4+binary.BigEndian.Uint32(resp)]); err != nil {
					b.Fatal(err)
				}
			}
			reportRate(b, n)
			c.Close()
			<-served
		})
	}
}
