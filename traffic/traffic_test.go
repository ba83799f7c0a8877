package traffic

import (
	"net"
	"testing"
)

// TestCheckerCounts: gaps below the highest frame, frames missing at the
// end, duplicates, reordered and corrupt frames are each counted once.
func TestCheckerCounts(t *testing.T) {
	s := Stream{Src: net.HardwareAddr{2, 0, 0, 0, 0, 1}, Dst: net.HardwareAddr{2, 0, 0, 0, 0, 2}, Seed: 7}
	c := NewChecker(s)
	bad := s.Frame(6)
	bad[len(bad)-1] ^= 1
	for _, f := range [][]byte{s.Frame(0), s.Frame(2), s.Frame(2), s.Frame(1), s.Frame(5), bad, {1, 2, 3}} {
		c.Receive(f)
	}
	r := c.Result()
	want := CheckResult{Received: 6, Gaps: 2, Foreign: 1, Duplicates: 1, Corrupt: 1, Reordered: 1, Next: 6}
	if r.Received != want.Received || r.Gaps != want.Gaps || r.Foreign != want.Foreign || r.Duplicates != want.Duplicates ||
		r.Corrupt != want.Corrupt || r.Reordered != want.Reordered || r.Next != want.Next {
		t.Errorf("got %+v\nwant %+v", r, want)
	}
	if got := r.MissingAtEnd(10); got != 4 {
		t.Errorf("MissingAtEnd(10) = %d, want 4", got)
	}
	if got := r.MissingAtEnd(3); got != 0 {
		t.Errorf("MissingAtEnd(3) = %d, want 0", got)
	}
	if r.First.IsZero() || r.Last.Before(r.First) || len(r.Errors) != 3 {
		t.Errorf("times %v..%v, errors %q", r.First, r.Last, r.Errors)
	}
}
