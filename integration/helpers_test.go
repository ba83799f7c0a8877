package integration

import (
	"context"
	"testing"
	"time"

	"tsnsim/chip/regs"
	"tsnsim/topology"
	"tsnsim/traffic"
)

// streams returns the test streams of both directions: stream[i] is sent
// by node i to node 1-i.
func streams(size int) [2]traffic.Stream {
	return [2]traffic.Stream{
		{Src: topology.NodeMAC(0), Dst: topology.NodeMAC(1), Seed: 1, Size: size},
		{Src: topology.NodeMAC(1), Dst: topology.NodeMAC(0), Seed: 2, Size: size},
	}
}

// closeTopology closes topo and fails the test on error.
func closeTopology(t *testing.T, topo *topology.Topology) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := topo.Close(ctx); err != nil {
		t.Errorf("close: %v", err)
	}
}

// assertAccounting checks, for the direction from node i to node 1-i of a
// closed topology, that every frame offered to the sending driver is
// found in exactly one place: delivered, or one counter of the driver,
// the chips or the cable. received is what the host of node 1-i got.
func assertAccounting(t *testing.T, topo *topology.Topology, i int, received uint64) {
	t.Helper()
	src, dst := topo.Nodes[i], topo.Nodes[1-i]
	ts, rs := src.Driver.Stats(), dst.Driver.Stats()
	if got := ts.TxAccounted(); got != ts.TxOffered {
		t.Errorf("%s driver: offered %d, accounted %d (%+v)", src.Name, ts.TxOffered, got, ts)
	}
	sc, dc := src.Chip, dst.Chip
	accepted := sc.Register(regs.FSTotalRxFrameCnt)
	backPressure := sc.Register(regs.FSTotalBackPressureEventCnt)
	sstats := sc.Stats()
	txRejected := sstats.ProtocolErrors
	if accepted+backPressure+txRejected != ts.TxPackets {
		t.Errorf("%s chip: %d accepted + %d back-pressure + %d rejected != %d written by the driver",
			src.Name, accepted, backPressure, txRejected, ts.TxPackets)
	}
	valid, dropped := sc.Register(regs.FSCHTotalValidEntryCnt), sc.Register(regs.FSCHTotalDropEntryCnt)
	if valid+dropped+uint64(sstats.HostFIFO.Len) != accepted {
		t.Errorf("%s chip: %d sent + %d window drops + %d queued != %d accepted", src.Name, valid, dropped, sstats.HostFIFO.Len, accepted)
	}
	if ft := sc.Register(regs.FTTotalTxFrameCnt); ft != valid {
		t.Errorf("%s chip: FT_TOTAL_TX_FRAME_CNT %d != FSCH valid %d", src.Name, ft, valid)
	}
	ab, ba := topo.Cable.Stats()
	cs := ab
	if i == 1 {
		cs = ba
	}
	if cs.Frames+cs.LostAtClose != valid {
		t.Errorf("cable %s->%s: %d delivered + %d lost at close != %d sent", src.Name, dst.Name, cs.Frames, cs.LostAtClose, valid)
	}
	rx := dc.Register(regs.FDTotalRxFrameCnt)
	if rx != cs.Frames {
		t.Errorf("%s chip: FD_TOTAL_RX_FRAME_CNT %d != %d frames off the cable", dst.Name, rx, cs.Frames)
	}
	drop := dc.Register(regs.FDTotalDropFrameCnt)
	sub := dc.Register(regs.FDFCSDropFrameCnt) + dc.Register(regs.FDJumboDropFrameCnt) + dc.Register(regs.FDFIFOFullDropFrameCnt)
	if drop != sub {
		t.Errorf("%s chip: FD_TOTAL_DROP_FRAME_CNT %d != sum of reasons %d", dst.Name, drop, sub)
	}
	queued := uint64(dc.Stats().RxMetaFIFO.Len)
	read := rs.RxPackets + rs.RxErrors + rs.RxDropped
	if rx-drop != read+queued {
		t.Errorf("%s: %d frames accepted by the chip != %d read by the driver + %d queued", dst.Name, rx-drop, read, queued)
	}
	if received != rs.RxPackets {
		t.Errorf("%s: host received %d, driver delivered %d", dst.Name, received, rs.RxPackets)
	}
}
