// Package spitest provides test doubles for the spibridge.Transport seam,
// in the spirit of periph.io's spitest: a Recorder that wraps a real
// transport and records every transaction byte for byte, and a Fake that
// plays back canned MISO replies without any chip behind it.
package spitest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"tsnsim/spibridge"
)

// Record is one SPI transaction as it crossed the transport: the bytes
// the host clocked out, the bytes it received, and the transport's error.
// MOSI and MISO are copies owned by the record.
type Record struct {
	MOSI []byte
	MISO []byte
	Err  error
}

// Recorder is a spibridge.Transport that forwards every call to an inner
// transport and records each Transfer. It is safe for concurrent use; the
// records are in the order the transfers completed.
type Recorder struct {
	inner spibridge.Transport

	mu      sync.Mutex
	records []Record
}

// NewRecorder returns a Recorder that forwards to inner.
func NewRecorder(inner spibridge.Transport) *Recorder {
	return &Recorder{inner: inner}
}

// Unwrap implements spibridge.Unwrapper: the recorded transport.
func (r *Recorder) Unwrap() spibridge.Transport { return r.inner }

// Transfer implements spibridge.Transport: it forwards to the inner
// transport and records copies of tx and rx (rx as filled by the inner
// transport) with the returned error.
func (r *Recorder) Transfer(ctx context.Context, tx, rx []byte) error {
	err := r.inner.Transfer(ctx, tx, rx)
	rec := Record{MOSI: slices.Clone(tx), MISO: slices.Clone(rx), Err: err}
	r.mu.Lock()
	r.records = append(r.records, rec)
	r.mu.Unlock()
	return err
}

// Interrupt implements spibridge.Transport by forwarding to the inner
// transport.
func (r *Recorder) Interrupt() <-chan struct{} { return r.inner.Interrupt() }

// Close implements spibridge.Transport by forwarding to the inner
// transport. Records are kept.
func (r *Recorder) Close() error { return r.inner.Close() }

// Records returns a copy of the transactions recorded so far.
func (r *Recorder) Records() []Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.records)
}

// Len returns how many transactions have been recorded.
func (r *Recorder) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.records)
}

// Reset forgets the recorded transactions.
func (r *Recorder) Reset() {
	r.mu.Lock()
	r.records = nil
	r.mu.Unlock()
}

// ErrNoReply is returned by Fake.Transfer when no canned reply is left.
var ErrNoReply = errors.New("spitest: no canned reply left")

// Fake is a spibridge.Transport with no chip behind it: each Transfer
// consumes the next canned reply, copies it into rx (zero-padded or
// truncated to len(rx)) and records the transaction. The zero value has
// no replies; every Transfer then fails with ErrNoReply. It is safe for
// concurrent use.
type Fake struct {
	mu      sync.Mutex
	replies [][]byte
	records []Record
	irq     chan struct{}
	closed  bool
}

// NewFake returns a Fake that answers with replies, in order.
func NewFake(replies ...[]byte) *Fake {
	f := &Fake{}
	f.Push(replies...)
	return f
}

// Push appends canned MISO replies.
func (f *Fake) Push(replies ...[]byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, r := range replies {
		f.replies = append(f.replies, slices.Clone(r))
	}
}

// Transfer implements spibridge.Transport.
func (f *Fake) Transfer(_ context.Context, tx, rx []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	var err error
	switch {
	case f.closed:
		err = errors.New("spitest: transport closed")
	case len(tx) != len(rx):
		err = fmt.Errorf("spitest: transfer of %d bytes into a %d-byte buffer", len(tx), len(rx))
	case len(f.replies) == 0:
		err = ErrNoReply
	default:
		clear(rx)
		copy(rx, f.replies[0])
		f.replies = f.replies[1:]
	}
	f.records = append(f.records, Record{MOSI: slices.Clone(tx), MISO: slices.Clone(rx), Err: err})
	return err
}

// Interrupt implements spibridge.Transport; see Raise.
func (f *Fake) Interrupt() <-chan struct{} { return f.line() }

func (f *Fake) line() chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.irq == nil {
		f.irq = make(chan struct{}, 1)
	}
	return f.irq
}

// Raise signals one (coalesced) falling edge on the interrupt line.
func (f *Fake) Raise() {
	ch := f.line()
	select {
	case ch <- struct{}{}:
	default:
	}
}

// Close implements spibridge.Transport: later transfers fail.
func (f *Fake) Close() error {
	f.mu.Lock()
	f.closed = true
	f.mu.Unlock()
	return nil
}

// Records returns a copy of the transactions seen so far.
func (f *Fake) Records() []Record {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.records)
}

var _ spibridge.Transport = (*Fake)(nil)

var _ spibridge.Transport = (*Recorder)(nil)
