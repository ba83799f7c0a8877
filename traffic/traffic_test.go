package traffic

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
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

// referenceFrame is Frame as first written (a rand.Rand over the PCG, a
// fresh zeroed buffer): the frames a stream generates must not change.
func referenceFrame(s Stream, seq uint64) []byte {
	r := rand.New(rand.NewPCG(s.Seed, seq))
	size := s.Size
	if size == 0 {
		size = MinSize + r.IntN(MaxSize-MinSize+1)
	}
	size = max(size, headerLen)
	f := make([]byte, size)
	copy(f[0:6], s.Dst)
	copy(f[6:12], s.Src)
	binary.BigEndian.PutUint16(f[12:], EtherType)
	binary.BigEndian.PutUint64(f[14:], seq)
	for i := headerLen; i < size; i += 8 {
		var w [8]byte
		binary.LittleEndian.PutUint64(w[:], r.Uint64())
		copy(f[i:], w[:])
	}
	return f
}

// TestFrameStable: Frame and AppendFrame (into a dirty buffer, after
// other bytes) give the reference frames, for mixed and fixed sizes
// (payloads that end on and off an 8-byte boundary).
func TestFrameStable(t *testing.T) {
	src, dst := net.HardwareAddr{2, 0, 0, 0, 0, 1}, net.HardwareAddr{2, 0, 0, 0, 0, 2}
	buf := bytes.Repeat([]byte{0xEE}, 2000)
	for _, size := range []int{0, 10, 60, 61, 64, 67, 1514} {
		for _, seed := range []uint64{1, 7} {
			s := Stream{Src: src, Dst: dst, Seed: seed, Size: size}
			for seq := range uint64(50) {
				want := referenceFrame(s, seq)
				if got := s.Frame(seq); !bytes.Equal(got, want) {
					t.Fatalf("size %d seed %d frame %d: Frame differs from the reference", size, seed, seq)
				}
				got := s.AppendFrame(append(buf[:0:len(buf)], 1, 2, 3), seq)
				if !bytes.Equal(got[:3], []byte{1, 2, 3}) || !bytes.Equal(got[3:], want) {
					t.Fatalf("size %d seed %d frame %d: AppendFrame differs from the reference", size, seed, seq)
				}
				buf = got[:cap(got)]
				for i := range buf {
					buf[i] = 0xEE
				}
			}
		}
	}
}
