package integration

import (
	"context"
	"testing"
	"time"

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

// assertAccounting fails the test for every violation of the frame
// accounting of the direction from node i to node 1-i (Topology.Audit).
func assertAccounting(t *testing.T, topo *topology.Topology, i int, received uint64) {
	t.Helper()
	for _, err := range topo.Audit(i, received) {
		t.Error(err)
	}
}

// newTopology builds a topology or fails the test.
func newTopology(tb testing.TB, cfg topology.Config, receive [2]func([]byte) bool) *topology.Topology {
	tb.Helper()
	topo, err := topology.New(cfg, receive)
	if err != nil {
		tb.Fatal(err)
	}
	return topo
}
