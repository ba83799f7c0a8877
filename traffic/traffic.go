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
			err = host.Offer(ctx, nic, f)
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

	mu       sync.Mutex
	next     uint64 // expected sequence number
	received uint64
	gaps     uint64 // frames skipped (lost in between)
	bad      []string
	foreign  uint64
	bytes    uint64
	arrived  chan struct{}
}

// NewChecker returns a checker for stream s.
func NewChecker(s Stream) *Checker { return &Checker{s: s, arrived: make(chan struct{}, 1)} }

// Receive is a driver.Config.Receive function: it checks one frame.
func (c *Checker) Receive(f []byte) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(f) < headerLen || binary.BigEndian.Uint16(f[12:]) != EtherType {
		c.foreign++
		return true
	}
	seq := binary.BigEndian.Uint64(f[14:])
	c.received++
	c.bytes += uint64(len(f))
	switch {
	case seq < c.next:
		c.fail("frame %d arrived after frame %d (duplicate or reordered)", seq, c.next-1)
	case seq > c.next:
		c.gaps += seq - c.next
	}
	if want := c.s.Frame(seq); string(want) != string(f) {
		c.fail("frame %d: content differs (%d bytes, want %d)", seq, len(f), len(want))
	}
	c.next = max(c.next, seq+1)
	select {
	case c.arrived <- struct{}{}:
	default:
	}
	return true
}

func (c *Checker) fail(format string, args ...any) {
	if len(c.bad) < 10 {
		c.bad = append(c.bad, fmt.Sprintf(format, args...))
	}
}

// CheckResult is what a checker saw.
type CheckResult struct {
	Received uint64   // frames of the stream
	Bytes    uint64   // their bytes
	Gaps     uint64   // sequence numbers skipped
	Foreign  uint64   // frames of other kinds
	Errors   []string // order or content violations (first ten)
}

// Result returns what the checker saw so far.
func (c *Checker) Result() CheckResult {
	c.mu.Lock()
	defer c.mu.Unlock()
	return CheckResult{Received: c.received, Bytes: c.bytes, Gaps: c.gaps, Foreign: c.foreign, Errors: append([]string(nil), c.bad...)}
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
