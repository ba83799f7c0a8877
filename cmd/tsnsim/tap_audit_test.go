package main

import (
	"strings"
	"testing"

	"tsnsim/host/tap"
)

// TestAuditKernel checks the TAP kernel-counter equations against what
// tun counts: a frame the stack drops after tun handed it over (no
// listener for its protocol) is in RX packets and RX dropped both, and is
// no loss of the emulated link; a frame written but never counted as
// received is a loss; counts that no drop explains are unaccounted.
func TestAuditKernel(t *testing.T) {
	for _, tc := range []struct {
		name        string
		k           tap.KernelStats
		s           tap.Stats
		verdict     string // start of the verdict line
		printed     string // a line the report must hold
		unaccounted bool
	}{
		{"all taken", tap.KernelStats{RxPackets: 10, TxPackets: 5}, tap.Stats{Written: 10, Read: 5}, "CLEAN", "RX: bytes 0 packets 10 errors 0 dropped 0", false},
		// The run that found this: PTP multicast into a namespace without ptp4l.
		{"stack drops what it took", tap.KernelStats{RxPackets: 103, RxDropped: 56, TxPackets: 118}, tap.Stats{Written: 103, Read: 118},
			"CLEAN", "the kernel's stack dropped 56 of the frames it took", false},
		{"dropped before counted", tap.KernelStats{RxPackets: 98, RxDropped: 2}, tap.Stats{Written: 100},
			"LOSS: 2 dropped by the kernel at tap t0 RX", "dropped 2", false},
		{"both kinds", tap.KernelStats{RxPackets: 98, RxDropped: 5}, tap.Stats{Written: 100},
			"LOSS: 2 dropped by the kernel at tap t0 RX", "the kernel's stack dropped 3 of the frames it took", false},
		{"TX queue drops", tap.KernelStats{TxPackets: 7, TxDropped: 3}, tap.Stats{Read: 7},
			"LOSS: 3 dropped in tap t0 TX queue (kernel)", "TX: bytes 0 packets 7 errors 0 dropped 3", false},
		{"written, unexplained", tap.KernelStats{RxPackets: 97, RxDropped: 2}, tap.Stats{Written: 100},
			"UNACCOUNTED", "kernel RX packets 97 + dropped 2 < 100 frames tsnsim wrote", true},
		{"more received than written", tap.KernelStats{RxPackets: 101}, tap.Stats{Written: 100},
			"UNACCOUNTED", "kernel RX packets 101 > 100 frames tsnsim wrote", true},
		{"TX read mismatch", tap.KernelStats{TxPackets: 4}, tap.Stats{Read: 5},
			"UNACCOUNTED", "kernel TX packets 4 != 5 frames tsnsim read", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out strings.Builder
			r := &outcome{out: &out}
			auditKernel(r, "t0", "a", tc.k, tc.s)
			r.finish()
			lines := strings.Split(strings.TrimSpace(out.String()), "\n")
			if last := lines[len(lines)-1]; !strings.HasPrefix(last, tc.verdict) {
				t.Errorf("verdict %q, want it to start %q\n%s", last, tc.verdict, out.String())
			}
			if !strings.Contains(out.String(), tc.printed) {
				t.Errorf("report lacks %q:\n%s", tc.printed, out.String())
			}
			if got := len(r.verdict.Imbalances) > 0; got != tc.unaccounted {
				t.Errorf("unaccounted %v, want %v\n%s", got, tc.unaccounted, out.String())
			}
		})
	}
}
