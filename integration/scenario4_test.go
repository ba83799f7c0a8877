package integration

import (
	"bytes"
	"context"
	"testing"
	"testing/synctest"
	"time"

	"tsnsim/chip/proto"
	"tsnsim/chip/regs"
	"tsnsim/spibridge"
	"tsnsim/topology"
)

// TestScenario4FramesWithoutFCS is chip.md section 6, scenario 4: the
// chip delivers received frames with their 4-byte FCS (rx_metadata's
// frame_length counts it), and the driver core strips it, so the host
// stack gets exactly the frame that was sent, of every length.
func TestScenario4FramesWithoutFCS(t *testing.T) {
	forEachTransport(t, testScenario4FramesWithoutFCS)
}

func testScenario4FramesWithoutFCS(t *testing.T, transport transportHook) {
	synctest.Test(t, func(t *testing.T) {
		got := make(chan []byte, 16)
		topo := newTopology(t, topology.Config{SPI: spibridge.DefaultTiming(), Transport: transport},
			[2]func([]byte) bool{nil, func(f []byte) bool { got <- bytes.Clone(f); return true }})
		ctx := context.Background()
		if err := topo.Start(ctx); err != nil {
			t.Fatal(err)
		}
		defer closeTopology(t, topo)
		sizes := []int{60, 61, 64, 100, 1000, 1514}
		for _, n := range sizes {
			frame := make([]byte, n)
			copy(frame, topology.NodeMAC(1))
			copy(frame[6:], topology.NodeMAC(0))
			for i := 12; i < n; i++ {
				frame[i] = byte(i * 7)
			}
			if err := topo.Nodes[0].Driver.Transmit(frame); err != nil {
				t.Fatal(err)
			}
			select {
			case f := <-got:
				if !bytes.Equal(f, frame) {
					t.Errorf("%d-byte frame: got %d bytes, want the %d sent (FCS stripped)", n, len(f), n)
				}
			case <-time.After(time.Second):
				t.Fatalf("%d-byte frame not delivered", n)
			}
		}
		// The chip counted every frame with its FCS; the driver without
		// (it counts a frame after handing it up: let it finish).
		synctest.Wait()
		var sent uint64
		for _, n := range sizes {
			sent += uint64(n)
		}
		chipBytes := topo.Nodes[1].Chip.Register(regs.FDTotalRxByteCnt)
		drv := topo.Nodes[1].Driver.Stats()
		if want := sent + uint64(len(sizes)*proto.FCSLen); chipBytes != want {
			t.Errorf("FD_TOTAL_RX_BYTE_CNT = %d, want %d (frames plus FCS)", chipBytes, want)
		}
		if drv.RxBytes != sent || drv.RxPackets != uint64(len(sizes)) {
			t.Errorf("driver RX: %d frames, %d bytes; want %d, %d (FCS stripped)", drv.RxPackets, drv.RxBytes, len(sizes), sent)
		}
	})
}
