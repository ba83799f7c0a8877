package spitrace

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"
	"time"

	"tsnsim/spibridge"
)

// MaxSameInstant bounds the records a Writer holds back for one instant.
// Past it the held records are written (sorted) and holding starts over,
// so memory stays bounded; the order across that cut then depends on
// which goroutine recorded first. Only transfers that take no emulated
// time at all (an unthrottled bus in virtual time) pile up this much.
const MaxSameInstant = 4096

// Writer writes a trace file: one JSON line per SPI transfer, buffered.
// It implements spibridge.Recorder and is safe for concurrent use.
//
// Ordering: Writer holds back the records that complete at the latest
// instant seen. When a record completing later arrives, it sorts the held
// ones by (completion time, node, start, line bytes) and writes them. In
// virtual time this makes the file deterministic: synctest advances the
// clock only when every goroutine in the bubble is blocked, and a Traced
// transport records on the transferring goroutine before it blocks again,
// so once a later completion is recorded no record of an earlier instant
// can still come. In real time the same holds approximately: a record
// whose completion time is already behind the held instant (its goroutine
// was preempted between the transfer and the record) is written at once,
// so such stragglers can appear up to a scheduling delay out of order.
type Writer struct {
	epoch  time.Time
	closer io.Closer // the file Create opened, nil for NewWriter

	mu      sync.Mutex
	out     io.Writer
	buf     []byte     // whole lines not yet written
	held    []heldLine // records completing at instant at
	at      int64      // latest completion time seen
	started bool       // at is set
	err     error      // first write error, sticky
	written uint64
	closed  bool
	late    uint64 // records after Close, not written
}

// heldLine is an encoded record waiting for its instant to pass.
type heldLine struct {
	end, start int64
	node       string
	line       []byte
}

// NewWriter returns a Writer to w with times relative to epoch (use the
// topology's epoch, the time its SYSCOUNT clocks read 0). Close flushes
// it; w is not closed.
func NewWriter(w io.Writer, epoch time.Time) *Writer {
	return &Writer{epoch: epoch, out: w, buf: make([]byte, 0, bufferSize)}
}

// Create creates (or truncates) the file at path and returns a Writer to
// it; Close flushes and closes the file.
func Create(path string, epoch time.Time) (*Writer, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("spitrace: %w", err)
	}
	w := NewWriter(f, epoch)
	w.closer = f
	return w, nil
}

// Record implements spibridge.Recorder.
func (w *Writer) Record(ev spibridge.TraceEvent) {
	r := RecordOf(ev, w.epoch)
	line, err := appendRecord(make([]byte, 0, lineSize(&r)), &r)
	w.hold(heldLine{end: r.End(), start: r.T, node: r.Node, line: line}, err)
}

// lineSize is about how long r's line is: its fixed part and hex bytes,
// so that appendRecord allocates once.
func lineSize(r *Record) int {
	return 256 + 2*(len(r.MOSI)+len(r.MISO)) + len(r.Err) + len(r.Fault)
}

// RecordPPS records a PPS edge of node's chip at emulated time at, the
// seq-th pulse, fired at SYSCOUNT syscount (chip.Config.OnPPS). It is
// ordered with the transfers by its time.
func (w *Writer) RecordPPS(node string, at time.Time, seq, syscount uint64) {
	t := int64(at.Sub(w.epoch))
	line, err := appendPPS(make([]byte, 0, 96), &ppsLine{T: t, Node: node, Event: EventPPS, Seq: seq, Syscount: syscount})
	w.hold(heldLine{end: t, start: t, node: node, line: line}, err)
}

// hold writes h, or holds it until its instant has passed (see Writer);
// err is its encoding's error.
func (w *Writer) hold(h heldLine, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case w.closed:
		w.late++
		return
	case err != nil:
		w.fail(err)
		return
	}
	switch {
	case w.started && h.end < w.at: // a real-time straggler: its instant has passed
		w.write(h.line)
		return
	case w.started && h.end > w.at:
		w.flushHeld()
	}
	w.started = true
	w.at = h.end
	w.held = append(w.held, h)
	if len(w.held) >= MaxSameInstant {
		w.flushHeld()
	}
}

// flushHeld writes the held records in their total order. Called with
// w.mu held.
func (w *Writer) flushHeld() {
	slices.SortFunc(w.held, func(a, b heldLine) int {
		return cmp.Or(cmp.Compare(a.end, b.end), cmp.Compare(a.node, b.node),
			cmp.Compare(a.start, b.start), bytes.Compare(a.line, b.line))
	})
	for i := range w.held {
		w.write(w.held[i].line)
		w.held[i] = heldLine{}
	}
	w.held = w.held[:0]
}

// write writes one line unless an earlier write failed. Called with w.mu
// held.
func (w *Writer) write(line []byte) {
	if w.err != nil {
		return
	}
	if len(w.buf)+len(line) > bufferSize {
		w.flush()
		if w.err != nil {
			return
		}
	}
	w.buf = append(w.buf, line...)
	w.written++
}

// bufferSize is how many bytes of whole lines a Writer collects before it
// writes them with one call.
const bufferSize = 64 << 10

// flush writes the buffered lines with one Write call: the file only
// ever grows by whole lines, so a process that dies between two flushes
// (a second SIGINT, SIGKILL) leaves a trace that ends at a line
// boundary. Called with w.mu held.
func (w *Writer) flush() {
	if w.err != nil || len(w.buf) == 0 {
		return
	}
	if _, err := w.out.Write(w.buf); err != nil {
		w.fail(fmt.Errorf("spitrace: writing the trace: %w", err))
	}
	w.buf = w.buf[:0]
}

// fail keeps the first error. Called with w.mu held.
func (w *Writer) fail(err error) {
	if w.err == nil {
		w.err = err
	}
}

// Written returns how many lines have been written so far (held records
// are not counted until they are written).
func (w *Writer) Written() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.written
}

// Err returns the first error writing the trace, or an error counting
// the records that arrived after Close and were not written; nil if
// every record so far is in the file (or held for it).
func (w *Writer) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.errLocked()
}

func (w *Writer) errLocked() error {
	if w.late > 0 {
		return errors.Join(w.err, fmt.Errorf("spitrace: %d records after Close not written", w.late))
	}
	return w.err
}

// Close writes the held records, flushes the buffer and closes the file
// Create opened. It returns the first error of the trace's life (see
// Err). Records after Close are counted, not written. Close is
// idempotent.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return w.errLocked()
	}
	w.closed = true
	w.flushHeld()
	w.flush()
	if w.closer != nil {
		if err := w.closer.Close(); err != nil {
			w.fail(fmt.Errorf("spitrace: %w", err))
		}
	}
	return w.errLocked()
}

var _ spibridge.Recorder = (*Writer)(nil)
