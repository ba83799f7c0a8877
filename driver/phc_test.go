package driver

import (
	"testing"
	"time"

	"tsnsim/chip/clock"
)

// TestPHCMath checks the PHC arithmetic against values computed by hand.
func TestPHCMath(t *testing.T) {
	for _, tc := range []struct {
		name  string
		m     phcMath
		ticks uint64
		ns    int64
	}{
		{"8 ns, base 0", phcMath{period: 8}, 1000, 8000},
		{"10 ns (the field log's scale)", phcMath{period: 10}, 1000, 10000},
		{"settime base", phcMath{period: 8, baseTicks: 500, baseNS: 1_000_000_000}, 1500, 1_000_008_000},
		{"before the base", phcMath{period: 8, baseTicks: 500, baseNS: 1_000_000_000}, 400, 999_999_200},
		// +1 ppm (65536 scaled): 125e6 ticks = 1 s = 1e9 ns, plus 1000 ns.
		{"+1 ppm over 1 s", phcMath{period: 8, scaledPPM: 65536}, 125_000_000, 1_000_001_000},
		// -25 ppm over 1 s: 1e9 - 25000.
		{"-25 ppm over 1 s", phcMath{period: 8, scaledPPM: -25 * 65536}, 125_000_000, 999_975_000},
		// 1.5 ppm (98304 scaled) over 3 ticks = 24 ns: 24*98304/65536e6 = 3.6e-5 ns, truncated.
		{"sub-ns correction truncates", phcMath{period: 8, scaledPPM: 98304}, 3, 24},
		// +100 ppm, 2^40 ticks = 8796093022208 ns: +879609302.2208 -> 879609302.
		{"2^40 ticks at +100 ppm", phcMath{period: 8, scaledPPM: 100 * 65536}, 1 << 40, 8796093022208 + 879609302},
		// One 29-bit wrap: 2^29 ticks = 4294967296 ns at 8 ns.
		{"one 29-bit wrap", phcMath{period: 8}, 1 << 29, 4294967296},
	} {
		if got := tc.m.at(tc.ticks); got != tc.ns {
			t.Errorf("%s: at(%d) = %d, want %d", tc.name, tc.ticks, got, tc.ns)
		}
		back := tc.m.ticks(tc.ns)
		if got := tc.m.at(back); got > tc.ns || tc.m.at(back+1) <= tc.ns && tc.m.scaledPPM == 0 {
			t.Errorf("%s: ticks(%d) = %d: at = %d, not the last tick at or before", tc.name, tc.ns, back, got)
		}
	}
}

// TestPHCInverse: ticks(ns) is the last tick at which the PHC is at or
// before ns, and ceilTick the first at or after, across the 29-bit wrap.
func TestPHCInverse(t *testing.T) {
	m := phcMath{period: 8, baseTicks: 1<<29 - 2, baseNS: 77, scaledPPM: -25 * 65536}
	for _, ns := range []int64{77, 78, 84, 85, 93, 1_000_000, -1_000} {
		k := m.ticks(ns)
		if m.at(k) > ns || m.at(k+1) <= ns {
			t.Errorf("ticks(%d) = %d: at %d, next %d", ns, k, m.at(k), m.at(k+1))
		}
		c := ceilTick(m, ns)
		want := k
		if m.at(k) < ns {
			want++
		}
		if c != clock.Low29(want) {
			t.Errorf("ceilTick(%d) = %d, want %d", ns, c, clock.Low29(want))
		}
	}
	// The base sits 2 ticks before the wrap: 3 ticks later the window
	// tick reads 1.
	if got := clock.Low29(m.ticks(77 + 3*8)); got != 0 && got != 1 {
		t.Errorf("window tick across the wrap: %d", got)
	}
	if got := ceilTick(phcMath{period: 8, baseTicks: 1<<29 - 2}, 3*8); got != 1 {
		t.Errorf("ceilTick across the wrap = %d, want 1", got)
	}
}

// TestPHCRebase: adjfine keeps the PHC continuous (rebase), adjtime
// moves it by exactly its delta.
func TestPHCRebase(t *testing.T) {
	m := phcMath{period: 8}
	m.rebase(125_000_000) // 1 s
	m.scaledPPM = 65536   // +1 ppm from here
	if got := m.at(125_000_000); got != 1_000_000_000 {
		t.Errorf("continuous at the rebase: %d", got)
	}
	if got := m.at(250_000_000); got != 2_000_001_000 {
		t.Errorf("1 s later at +1 ppm: %d", got)
	}
	m.baseNS += -500
	if got := m.at(250_000_000); got != 2_000_000_500 {
		t.Errorf("after adjtime -500: %d", got)
	}
	_ = time.Second
}
