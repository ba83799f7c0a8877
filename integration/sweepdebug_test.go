package integration

import (
	"os"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/zap"

	"tsnsim/chip/regs"
)

// TestFaultSweepOne reruns one seed of one TestFaultSweep row with debug
// logs: TSNSIM_SWEEP_ROW names the row, TSNSIM_SWEEP_SEED the seed
// (skipped without them).
func TestFaultSweepOne(t *testing.T) {
	row, seedStr := os.Getenv("TSNSIM_SWEEP_ROW"), os.Getenv("TSNSIM_SWEEP_SEED")
	if row == "" || seedStr == "" {
		t.Skip("set TSNSIM_SWEEP_ROW and TSNSIM_SWEEP_SEED to rerun one seed of TestFaultSweep")
	}
	seed, err := strconv.ParseInt(seedStr, 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range sweepRows {
		if !strings.EqualFold(r.name, row) {
			continue
		}
		synctest.Test(t, func(t *testing.T) {
			res, errs := faultRun{specs: r.specs, seed: seed, frames: sweepFrames(t), interval: time.Millisecond, size: 500,
				logger: zap.Must(zap.NewDevelopment())}.runErrs(t)
			for _, err := range errs {
				t.Error(err)
			}
			if res.topo == nil {
				return
			}
			for _, n := range res.topo.Nodes {
				st := n.Chip.Register(regs.TSNRxFIFOStatus)
				t.Logf("node %s: RX metas %d words %d; driver %+v", n.Name, regs.RxMetaFIFODataCnt.Get(st), regs.RxFrameFIFODataCnt.Get(st), n.Driver.Stats())
			}
			t.Logf("received %+v, elapsed %v", res.received, res.elapsed)
		})
		return
	}
	t.Fatalf("no row %q", row)
}
