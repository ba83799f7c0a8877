// Package traffic generates numbered test frames, offers them to a driver
// and checks what arrives: every frame once, byte-identical, in order.
// tsnsim run and the integration tests use it to load a topology.
package traffic

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"sync"
	"time"

	"tsnsim/driver"
	"tsnsim/host"
)

// EtherType of test frames: IEEE 802 local experimental 1.
const EtherType = 0x88B5

// headerLen is the Ethernet header plus the sequence number.
const headerLen = 14 + 8

// Sizes of test frames (Ethernet header + payload, without FCS).
const (
	MinSize = 60
	MaxSize = 1514
)

// Stream describes one direction's frames: frame i has a size and payload
// that follow from (Seed, i), so the receiver can check it byte for byte.
type Stream struct {
	Src, Dst net.HardwareAddr
	Seed     uint64
	// Size is the frame size; 0 means mixed sizes from MinSize to MaxSize.
	Size int
}

// Frame returns frame seq of the stream.
func (s Stream) Frame(seq uint64) []byte {
	p := rand.NewPCG(s.Seed, seq)
	f := make([]byte, s.frameSize(p))
	s.fill(f, seq, p)
	return f
}

// AppendFrame appends frame seq of the stream to dst and returns the
// extended slice: Frame without an allocation when dst has room.
func (s Stream) AppendFrame(dst []byte, seq uint64) []byte {
	p := rand.NewPCG(s.Seed, seq)
	size := s.frameSize(p)
	n := len(dst)
	dst = slices.Grow(dst, size)[:n+size]
	clear(dst[n : n+headerLen])
	s.fill(dst[n:], seq, p)
	return dst
}

// frameSize draws the size of the frame whose generator is p (the first
// draw, for mixed sizes).
func (s Stream) frameSize(p *rand.PCG) int {
	size := s.Size
	if size == 0 {
		size = MinSize + rand.New(p).IntN(MaxSize-MinSize+1)
	}
	return max(size, headerLen)
}

// fill writes frame seq into f (its length, from frameSize, zero in the
// header): header, sequence number, then the payload drawn from p. The
// payload calls p directly, the same draws as through a rand.Rand.
func (s Stream) fill(f []byte, seq uint64, p *rand.PCG) {
	copy(f[0:6], s.Dst)
	copy(f[6:12], s.Src)
	binary.BigEndian.PutUint16(f[12:], EtherType)
	binary.BigEndian.PutUint64(f[14:], seq)
	i := headerLen
	for ; i+8 <= len(f); i += 8 {
		binary.LittleEndian.PutUint64(f[i:], p.Uint64())
	}
	if i < len(f) {
		var w [8]byte
		binary.LittleEndian.PutUint64(w[:], p.Uint64())
		copy(f[i:], w[:])
	}
}

// BusyPolicy says what a sender does when the TX ring is full.
type BusyPolicy int

const (
	// Requeue waits for the queue to wake and offers the frame again, as
	// the Linux qdisc layer does with NETDEV_TX_BUSY.
	Requeue BusyPolicy = iota
	// Drop gives the frame up, as a sender with no queue would: the
	// frame is lost (and counted by the driver in TxBusy).
	Drop
)

// SendResult is what a sender did.
type SendResult struct {
	Sent uint64 // frames the driver took
	Lost uint64 // frames given up after ErrBusy (Drop policy)
}

// Send offers frames 0..n-1 of s to nic, one every interval (0: as fast
// as the driver takes them).
func Send(ctx context.Context, nic host.NIC, s Stream, n uint64, interval time.Duration, busy BusyPolicy) (SendResult, error) {
	var res SendResult
	var tick *time.Ticker
	if interval > 0 {
		tick = time.NewTicker(interval)
		defer tick.Stop()
	}
	var offerer host.Offerer
	for seq := uint64(0); seq < n; seq++ {
		if tick != nil && seq > 0 {
			select {
			case <-tick.C:
			case <-ctx.Done():
				return res, ctx.Err()
			}
		}
		f := s.Frame(seq)
		var err error
		if busy == Requeue {
			err = offerer.Offer(ctx, nic, f)
		} else if err = nic.Transmit(f); errors.Is(err, driver.ErrBusy) {
			res.Lost++
			continue
		}
		if err != nil {
			return res, fmt.Errorf("traffic: frame %d: %w", seq, err)
		}
		res.Sent++
	}
	return res, nil
}

// Checker verifies the frames of one stream as they arrive. Frames of
// other EtherTypes are counted as foreign and otherwise ignored.
type Checker struct {
	s Stream

	mu         sync.Mutex
	next       uint64 // expected sequence number
	received   uint64
	gaps       uint64 // frames skipped (lost in between)
	bad        []string
	foreign    uint64
	bytes      uint64
	duplicates uint64
	corrupt    uint64
	reordered  uint64
	seen       []uint64 // bitset of the sequence numbers received intact
	first      time.Time
	last       time.Time
	arrived    chan struct{}
	want       []byte // scratch for the expected frame
}

// maxTracked bounds the sequence numbers whose arrival a checker
// remembers (to tell a duplicate from a reordered frame): 2^26, 8 MiB.
const maxTracked = 1 << 26

// NewChecker returns a checker for stream s.
func NewChecker(s Stream) *Checker { return &Checker{s: s, arrived: make(chan struct{}, 1)} }

// Receive is a driver.Config.Receive function: it checks one frame.
func (c *Checker) Receive(f []byte) bool {
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(f) < headerLen || binary.BigEndian.Uint16(f[12:]) != EtherType {
		c.foreign++
		return true
	}
	seq := binary.BigEndian.Uint64(f[14:])
	c.received++
	c.bytes += uint64(len(f))
	if c.first.IsZero() {
		c.first = now
	}
	c.last = now
	c.want = c.s.AppendFrame(c.want[:0], seq) // the expected frame, in a buffer reused under mu
	if want := c.want; string(want) != string(f) {
		c.corrupt++
		c.fail("frame %d: content differs (%d bytes, want %d)", seq, len(f), len(want))
		return true // its sequence number cannot be trusted: not tracked
	}
	switch {
	case c.markSeen(seq):
		c.duplicates++
		c.fail("frame %d arrived twice", seq)
	case seq < c.next:
		c.reordered++
		if c.gaps > 0 {
			c.gaps-- // counted as skipped when a later frame overtook it
		}
		c.fail("frame %d arrived after frame %d (reordered)", seq, c.next-1)
	case seq > c.next:
		c.gaps += seq - c.next
	}
	c.next = max(c.next, seq+1)
	select {
	case c.arrived <- struct{}{}:
	default:
	}
	return true
}

// markSeen records that seq arrived intact and reports whether it had
// before. Sequence numbers past maxTracked are not remembered.
func (c *Checker) markSeen(seq uint64) (again bool) {
	if seq >= maxTracked {
		return false
	}
	w, bit := seq/64, uint64(1)<<(seq%64)
	for uint64(len(c.seen)) <= w {
		c.seen = append(c.seen, 0)
	}
	again = c.seen[w]&bit != 0
	c.seen[w] |= bit
	return again
}

func (c *Checker) fail(format string, args ...any) {
	if len(c.bad) < 10 {
		c.bad = append(c.bad, fmt.Sprintf(format, args...))
	}
}

// CheckResult is what a checker saw.
type CheckResult struct {
	Received uint64 // frames of the stream
	Bytes    uint64 // their bytes
	// Gaps is the sequence numbers skipped in between: missing below the
	// highest one that arrived (frames missing at the end are not gaps,
	// see MissingAtEnd).
	Gaps       uint64
	Foreign    uint64   // frames of other kinds
	Duplicates uint64   // intact frames that arrived a second time
	Corrupt    uint64   // frames whose content is not what the peer sent
	Reordered  uint64   // intact frames that arrived after a later one
	Next       uint64   // one past the highest sequence number that arrived intact
	Errors     []string // order or content violations (first ten)
	// First and Last are when the first and the last frame of the stream
	// arrived (zero if none did).
	First, Last time.Time
}

// MissingAtEnd is how many of the first n frames never arrived after the
// highest that did: the frames missing at the end of a transfer of n.
func (r CheckResult) MissingAtEnd(n uint64) uint64 {
	if r.Next >= n {
		return 0
	}
	return n - r.Next
}

// Result returns what the checker saw so far.
func (c *Checker) Result() CheckResult {
	c.mu.Lock()
	defer c.mu.Unlock()
	return CheckResult{Received: c.received, Bytes: c.bytes, Gaps: c.gaps, Foreign: c.foreign,
		Duplicates: c.duplicates, Corrupt: c.corrupt, Reordered: c.reordered, Next: c.next,
		Errors: append([]string(nil), c.bad...), First: c.first, Last: c.last}
}

// WaitFor blocks until n frames of the stream arrived, or until timeout
// passes with no frame arriving; it reports whether n arrived.
func (c *Checker) WaitFor(ctx context.Context, n uint64, idle time.Duration) bool {
	t := time.NewTimer(idle)
	defer t.Stop()
	for {
		c.mu.Lock()
		got := c.received
		c.mu.Unlock()
		if got >= n {
			return true
		}
		select {
		case <-c.arrived:
			t.Reset(idle)
		case <-t.C:
			return false
		case <-ctx.Done():
			return false
		}
	}
}
