package driver

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"tsnsim/chip/proto"
	"tsnsim/spibridge"
)

// rxOnly keeps the RX counters and SPIErrors of s.
func rxOnly(s Stats) Stats {
	return Stats{RxPackets: s.RxPackets, RxBytes: s.RxBytes, RxErrors: s.RxErrors, RxDropped: s.RxDropped,
		RxLengthErrors: s.RxLengthErrors, RxCRCErrors: s.RxCRCErrors, RxFIFOErrors: s.RxFIFOErrors,
		RxOrphans: s.RxOrphans, RxRetries: s.RxRetries, RxPollRecoveries: s.RxPollRecoveries, SPIErrors: s.SPIErrors}
}

// seqs returns the sequence numbers of the frames r received, in order.
func (r *rig) seqs() []uint32 {
	var out []uint32
	for _, f := range r.received() {
		out = append(out, seqOf(f))
	}
	return out
}

// rxCase injects frames of the given sizes at once, with the fault rule
// set after Open; the worker's first metadata read after Open (an empty
// FIFO) is read 1, the first with a frame is read 2.
func rxCase(t *testing.T, sizes []int, rule func(xferKind, int) fault) *rig {
	t.Helper()
	r := newRig(t, Config{}, false)
	r.open(t)
	synctest.Wait()
	r.f.setRule(rule)
	for i, n := range sizes {
		r.inject(uint32(i), n)
	}
	time.Sleep(100 * time.Millisecond)
	synctest.Wait()
	return r
}

func equalSeqs(a, b []uint32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestRxFaults(t *testing.T) {
	five := []int{100, 100, 100, 100, 100}
	mixed := []int{100, 200, 300, 400, 500}
	for _, tc := range []struct {
		name  string
		sizes []int
		rule  func(xferKind, int) fault
		seqs  []uint32
		want  Stats // RX counters; RxBytes is checked from seqs
	}{
		{
			// The failed read took the only entry: its frame is an
			// orphan, discarded once the snapshot shows it.
			name: "meta read times out after, one frame", sizes: []int{100},
			rule: onlyAt(kindMetaRead, 2, failAfter),
			want: Stats{RxErrors: 1, RxOrphans: 1, SPIErrors: 1},
		},
		{
			// The FD counters say exactly one entry left the chip
			// unseen: exactly one orphan is discarded, even with more
			// frames queued, and the rest stay in step.
			name: "meta read times out after, five frames", sizes: five,
			rule: onlyAt(kindMetaRead, 2, failAfter),
			seqs: []uint32{1, 2, 3, 4},
			want: Stats{RxPackets: 4, RxErrors: 1, RxOrphans: 1, SPIErrors: 1},
		},
		{
			name: "meta read times out before", sizes: five,
			rule: onlyAt(kindMetaRead, 2, failBefore),
			seqs: []uint32{0, 1, 2, 3, 4},
			want: Stats{RxPackets: 5, SPIErrors: 1},
		},
		{
			// The frame is still at the head: read again and delivered.
			name: "frame read times out before, one frame", sizes: []int{100},
			rule: onlyAt(kindFrameRead, 1, failBefore),
			seqs: []uint32{0},
			want: Stats{RxPackets: 1, RxRetries: 1, SPIErrors: 1},
		},
		{
			name: "frame read times out before, five frames", sizes: mixed,
			rule: onlyAt(kindFrameRead, 1, failBefore),
			seqs: []uint32{0, 1, 2, 3, 4},
			want: Stats{RxPackets: 5, RxRetries: 1, SPIErrors: 1},
		},
		{
			// The failed read took the frame: with both FIFOs empty the
			// ledger finds one frame the driver never counted.
			name: "frame read times out after, one frame", sizes: []int{100},
			rule: onlyAt(kindFrameRead, 1, failAfter),
			want: Stats{RxErrors: 1, RxFIFOErrors: 1, SPIErrors: 1},
		},
		{
			// Equal sizes: the re-read takes frame 1 as if it were frame
			// 0; the last entry then finds the FIFO empty and the ledger
			// counts the frame lost in the failed read.
			name: "frame read times out after, five equal frames", sizes: five,
			rule: onlyAt(kindFrameRead, 1, failAfter),
			seqs: []uint32{1, 2, 3, 4},
			want: Stats{RxPackets: 4, RxErrors: 1, RxFIFOErrors: 1, RxRetries: 1, SPIErrors: 1},
		},
		{
			// Different sizes: the re-read at frame 0's length takes
			// frame 1 with a bad FCS, so entry 1 is skipped; frames 2-4
			// are in step.
			name: "frame read times out after, five mixed frames", sizes: mixed,
			rule: onlyAt(kindFrameRead, 1, failAfter),
			seqs: []uint32{2, 3, 4},
			want: Stats{RxPackets: 3, RxErrors: 2, RxFIFOErrors: 1, RxOrphans: 1, RxRetries: 1, SPIErrors: 1},
		},
		{
			// Status and counter reads fail too: retried.
			name: "register reads fail while resynchronising", sizes: mixed,
			rule: func(k xferKind, i int) fault {
				switch {
				case k == kindMetaRead && i == 2:
					return failAfter
				case k == kindRegRead && i%2 == 0:
					return failBefore
				}
				return pass
			},
			seqs: []uint32{1, 2, 3, 4},
			want: Stats{RxPackets: 4, RxErrors: 1, RxOrphans: 1},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				r := rxCase(t, tc.sizes, tc.rule)
				s := r.checkRxSettled(t)
				got := r.seqs()
				if !equalSeqs(got, tc.seqs) {
					t.Errorf("delivered %v, want %v", got, tc.seqs)
				}
				want := tc.want
				for _, q := range tc.seqs {
					want.RxBytes += uint64(tc.sizes[q])
				}
				if want.SPIErrors == 0 {
					want.SPIErrors = s.SPIErrors // counted by the rule's pattern
				}
				if rx := rxOnly(s); rx != want {
					t.Errorf("stats %+v\nwant  %+v", rx, want)
				}
				// And the driver is in step afterwards.
				r.f.setRule(nil)
				for i := range 3 {
					r.inject(uint32(100+i), 80)
				}
				time.Sleep(10 * time.Millisecond)
				if s2 := r.checkRxSettled(t); s2.RxPackets != s.RxPackets+3 || s2.RxErrors != s.RxErrors {
					t.Errorf("after the fault: %+v", rxOnly(s2))
				}
			})
		})
	}
}

// TestRxBadLengthAndFCS: a metadata length out of range and a frame whose
// FCS is wrong after the read (MISO corrupted) are counted once each and
// the driver stays in step.
func TestRxBadLengthAndFCS(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newWrappedRig(t, Config{}, false, func(f *faulty) spibridge.Transport { return &flipper{faulty: f} })
		r.open(t)
		synctest.Wait()
		for i := range 4 {
			r.inject(uint32(i), 100)
		}
		time.Sleep(50 * time.Millisecond)
		s := r.checkRxSettled(t)
		want := Stats{RxPackets: 2, RxBytes: 200, RxErrors: 2, RxLengthErrors: 1, RxCRCErrors: 1}
		if rx := rxOnly(s); rx != want {
			t.Errorf("stats %+v\nwant  %+v", rx, want)
		}
		if got := r.seqs(); !equalSeqs(got, []uint32{2, 3}) {
			t.Errorf("delivered %v", got)
		}
	})
}

// flipper corrupts MISO: the first metadata read with a frame gets the
// length 0xFFFF, the second frame read a flipped payload bit.
type flipper struct {
	*faulty
	metas, frames int
}

func (f *flipper) Transfer(ctx context.Context, tx, rx []byte) error {
	err := f.faulty.Transfer(ctx, tx, rx)
	switch kindOf(tx) {
	case kindMetaRead:
		if rx[proto.ReadDataStart+9] != 0 || rx[proto.ReadDataStart+8] != 0 {
			if f.metas++; f.metas == 1 {
				rx[proto.ReadDataStart+8], rx[proto.ReadDataStart+9] = 0xff, 0xff
			}
		}
	case kindFrameRead:
		if f.frames++; f.frames == 2 {
			rx[proto.ReadDataStart+20] ^= 0x10
		}
	}
	return err
}
