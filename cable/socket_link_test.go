package cable

import (
	"bytes"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"tsnsim/chip"
	"tsnsim/chip/proto"
	"tsnsim/chip/regs"
)

// sockServer is what one `tsnsim chip serve` process holds: a chip, its
// local cable and the socket end at the cable's far side.
type sockServer struct {
	chip  *chip.Chip
	cable *Cable
	port  *SocketPort
}

func newSockServer(t *testing.T, name string, mac byte, spec string) *sockServer {
	t.Helper()
	s := &sockServer{
		chip: chip.New(chip.Config{Name: name, MAC: []byte{0x02, 0, 0, 0, 0, mac}}),
		port: sockOpen(t, spec, nil),
	}
	s.cable = Connect(s.chip, s.port, Config{})
	s.chip.Start()
	sockTransact(t, s.chip, proto.RegWrite(regs.TSNSystemControl+4, 1)) // TSN enable
	return s
}

// close stops the server in the order a process would: the chip, then
// the socket end, then the cable; counters are final afterwards.
func (s *sockServer) close(t *testing.T) {
	t.Helper()
	s.chip.Close()
	if err := s.port.Close(); err != nil {
		t.Error(err)
	}
	s.cable.Close()
}

// sockTransact runs one SPI transaction the chip must accept.
func sockTransact(t *testing.T, c *chip.Chip, mosi []byte) []byte {
	t.Helper()
	miso := make([]byte, len(mosi))
	if err := c.Transact(mosi, miso); err != nil {
		t.Fatalf("%s: transaction % x: %v", c.Name(), mosi[:3], err)
	}
	return miso
}

// sockLinkFrames returns n frames (without FCS) from src to dst of
// varied lengths, 60 to 1556 bytes (the longest the chip takes).
func sockLinkFrames(n int, src, dst byte) [][]byte {
	sizes := []int{60, 61, 64, 128, 333, 1000, 1514, proto.MaxWireLen - proto.FCSLen}
	frames := make([][]byte, n)
	for i := range frames {
		f := make([]byte, sizes[i%len(sizes)])
		copy(f, []byte{0x02, 0, 0, 0, 0, dst, 0x02, 0, 0, 0, 0, src, 0x88, 0xb5, byte(i)})
		for j := 15; j < len(f); j++ {
			f[j] = byte(i*7 + j)
		}
		frames[i] = f
	}
	return frames
}

// sockReceive reads n frames (incl. FCS) from c's RX FIFOs over SPI,
// woken by its interrupt line.
func sockReceive(t *testing.T, c *chip.Chip, n int) [][]byte {
	t.Helper()
	var got [][]byte
	timeout := time.After(sockTimeout)
	for len(got) < n {
		select {
		case <-c.IRQ():
		case <-timeout:
			t.Fatalf("%s: %d of %d frames received", c.Name(), len(got), n)
		}
		for {
			meta := proto.ParseRxMetadata(sockTransact(t, c, proto.RxMetaRead())[proto.ReadDataStart:])
			if meta.FrameLength == 0 {
				break
			}
			l := int(meta.FrameLength)
			got = append(got, sockTransact(t, c, proto.RxFrameRead(l))[proto.ReadDataStart:])
		}
	}
	return got
}

// TestSocketLinkTwoChips: two chip servers in one test, chip A ↔ cable ↔
// SocketPort ⇄ socket ⇄ SocketPort ↔ cable ↔ chip B, over stream/unix,
// stream/tcp and dgram/udp. Frames written into each chip's TX FIFO by
// SPI TX writes arrive in the other chip's RX FIFO byte-identical with a
// valid FCS, both directions at once, and every counter on the path
// (chip TX, cable, socket ends, chip RX) agrees.
func TestSocketLinkTwoChips(t *testing.T) {
	for _, tc := range []struct {
		name   string
		specAB func(t *testing.T) (a, b string) // b's spec may need a's address
	}{
		{"stream-unix", func(t *testing.T) (string, string) {
			path := filepath.Join(t.TempDir(), "link.sock")
			return "stream-listen:unix:" + path, "stream-connect:unix:" + path
		}},
		{"stream-tcp", nil},
		{"dgram-udp", func(t *testing.T) (string, string) {
			pa, pb := sockFreeUDPPort(t), sockFreeUDPPort(t)
			return fmt.Sprintf("dgram:udp:127.0.0.1:%d:127.0.0.1:%d", pa, pb),
				fmt.Sprintf("dgram:udp:127.0.0.1:%d:127.0.0.1:%d", pb, pa)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sockNoLeaks(t)
			var a, b *sockServer
			if tc.specAB == nil { // tcp: B connects to the port A got
				a = newSockServer(t, "a", 1, "stream-listen:tcp:127.0.0.1:0")
				b = newSockServer(t, "b", 2, "stream-connect:tcp:"+a.port.Addr().String())
			} else {
				sa, sb := tc.specAB(t)
				a = newSockServer(t, "a", 1, sa)
				b = newSockServer(t, "b", 2, sb)
			}
			for _, s := range []*sockServer{a, b} {
				if err := s.port.WaitConnected(sockCtx(t)); err != nil {
					t.Fatal(err)
				}
			}

			const n = 24
			ab, ba := sockLinkFrames(n, 1, 2), sockLinkFrames(n, 2, 1)
			for i := range n {
				for _, w := range []struct {
					c *chip.Chip
					f []byte
				}{{a.chip, ab[i]}, {b.chip, ba[i]}} {
					mosi, err := proto.TxFrameWrite(proto.SendNow(0, proto.PriorityBestEffort), w.f)
					if err != nil {
						t.Fatal(err)
					}
					sockTransact(t, w.c, mosi)
				}
			}
			gotB, gotA := sockReceive(t, b.chip, n), sockReceive(t, a.chip, n)
			for i := range n {
				if want := sockWireFrame(ab[i]); !bytes.Equal(gotB[i], want) || !proto.FCSValid(gotB[i]) {
					t.Fatalf("A→B frame %d: got %d bytes, want %d, identical %v", i, len(gotB[i]), len(want), bytes.Equal(gotB[i], want))
				}
				if want := sockWireFrame(ba[i]); !bytes.Equal(gotA[i], want) || !proto.FCSValid(gotA[i]) {
					t.Fatalf("B→A frame %d: got %d bytes, want %d", i, len(gotA[i]), len(want))
				}
			}

			a.close(t)
			b.close(t)
			sockCheckPath(t, "A→B", a, b, ab)
			sockCheckPath(t, "B→A", b, a, ba)
		})
	}
}

// sockCheckPath checks every counter on the path from src's chip to
// dst's chip for the given frames (without FCS).
func sockCheckPath(t *testing.T, dir string, src, dst *sockServer, frames [][]byte) {
	t.Helper()
	n := uint64(len(frames))
	var bytesNoFCS uint64
	for _, f := range frames {
		bytesNoFCS += uint64(len(f))
	}
	wireBytes := bytesNoFCS + n*proto.FCSLen

	if got := src.chip.Register(regs.FTTotalTxFrameCnt); got != n {
		t.Errorf("%s: sender FT_TOTAL_TX_FRAME_CNT %d, want %d", dir, got, n)
	}
	if got := src.chip.Register(regs.FTTotalTxByteCnt); got != wireBytes {
		t.Errorf("%s: sender FT_TOTAL_TX_BYTE_CNT %d, want %d", dir, got, wireBytes)
	}
	out, _ := src.cable.Stats() // chip → socket end
	if out.Frames != n || out.Bytes != wireBytes || out.LostAtClose != 0 {
		t.Errorf("%s: sender's cable %+v, want %d frames, %d bytes", dir, out, n, wireBytes)
	}
	tx := src.port.Stats()
	if tx.TxOffered != n || tx.TxFrames != n || tx.TxBytes != bytesNoFCS ||
		tx.TxBadFCS+tx.TxRunt+tx.TxLostDisconnected+tx.TxQueueOverflow+tx.TxWriteErrors != 0 {
		t.Errorf("%s: sending socket end %+v, want %d frames, %d bytes, no loss", dir, tx, n, bytesNoFCS)
	}
	rx := dst.port.Stats()
	if rx.RxFrames != tx.TxFrames || rx.RxBytes != tx.TxBytes || rx.RxPadded != 0 ||
		rx.RxMalformed+rx.RxOversized+rx.RxTruncated+rx.RxForeign != 0 {
		t.Errorf("%s: receiving socket end %+v, want %d frames, %d bytes", dir, rx, tx.TxFrames, tx.TxBytes)
	}
	_, in := dst.cable.Stats() // socket end → chip
	if in.Frames != n || in.Bytes != wireBytes || in.LostAtClose != 0 {
		t.Errorf("%s: receiver's cable %+v, want %d frames, %d bytes", dir, in, n, wireBytes)
	}
	if got := dst.chip.Register(regs.FDTotalRxFrameCnt); got != n {
		t.Errorf("%s: receiver FD_TOTAL_RX_FRAME_CNT %d, want %d", dir, got, n)
	}
	if got := dst.chip.Register(regs.FDTotalRxByteCnt); got != wireBytes {
		t.Errorf("%s: receiver FD_TOTAL_RX_BYTE_CNT %d, want %d", dir, got, wireBytes)
	}
	if got := dst.chip.Register(regs.FDTotalDropFrameCnt); got != 0 {
		t.Errorf("%s: receiver dropped %d frames", dir, got)
	}
}
