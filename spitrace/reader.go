package spitrace

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"

	"tsnsim/spibridge"
)

// MaxLineLen is the longest trace line Reader accepts: far above a
// record of a whole 1560-byte frame transfer in hex (about 6.5 KB).
const MaxLineLen = 1 << 20

// Reader reads a trace file one record at a time.
type Reader struct {
	sc   *bufio.Scanner
	line int
}

// NewReader returns a Reader of r.
func NewReader(r io.Reader) *Reader {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), MaxLineLen)
	return &Reader{sc: sc}
}

// Line returns the number of the line Next read last (1-based).
func (r *Reader) Line() int { return r.line }

// Next returns the next record, or io.EOF after the last one. Blank
// lines are skipped; unknown fields are ignored (newer writers may add
// some). A line that is not a valid record fails with an error naming
// its line number.
func (r *Reader) Next() (Record, error) {
	for r.sc.Scan() {
		r.line++
		b := bytes.TrimSpace(r.sc.Bytes())
		if len(b) == 0 {
			continue
		}
		var rec Record
		if err := json.Unmarshal(b, &rec); err != nil {
			return Record{}, fmt.Errorf("spitrace: line %d: %w", r.line, err)
		}
		if err := rec.validate(); err != nil {
			return Record{}, fmt.Errorf("spitrace: line %d: %w", r.line, err)
		}
		return rec, nil
	}
	if err := r.sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return Record{}, fmt.Errorf("spitrace: line %d: longer than %d bytes", r.line+1, MaxLineLen)
		}
		return Record{}, fmt.Errorf("spitrace: line %d: %w", r.line+1, err)
	}
	return Record{}, io.EOF
}

// validate checks what a writer always produces.
func (r *Record) validate() error {
	if r.Event != "" {
		switch {
		case r.Event != EventPPS:
			return fmt.Errorf("unknown event %q", r.Event)
		case r.Node == "":
			return errors.New("no node")
		case r.Seq == 0:
			return errors.New("pps: no seq")
		}
		return nil
	}
	switch {
	case r.Node == "":
		return errors.New("no node")
	case !slices.Contains(spibridge.Spaces, r.Space):
		return fmt.Errorf("unknown space %q", r.Space)
	case r.Dir != spibridge.DirRead && r.Dir != spibridge.DirWrite && r.Dir != spibridge.DirNone:
		return fmt.Errorf("unknown dir %q", r.Dir)
	case r.Result != ResultOK && r.Result != ResultError:
		return fmt.Errorf("result %q: want %q or %q", r.Result, ResultOK, ResultError)
	case r.Len < 0 || r.Dur < 0 || r.LateNs < 0:
		return fmt.Errorf("negative len %d, dur %d or late_ns %d", r.Len, r.Dur, r.LateNs)
	case r.CallNs != nil && *r.CallNs < 0:
		return fmt.Errorf("negative call_ns %d", *r.CallNs)
	case r.Start != nil && (*r.Start < r.T || *r.Start > r.End()):
		return fmt.Errorf("start %d outside the transfer's [t, t+dur] = [%d, %d]", *r.Start, r.T, r.End())
	case len(r.MOSI) > r.Len || len(r.MISO) > r.Len:
		return fmt.Errorf("%d MOSI and %d MISO bytes exceed the transfer length %d", len(r.MOSI), len(r.MISO), r.Len)
	}
	return nil
}

// Read reads a whole trace into memory. Use NewReader or
// SummariseReader for traces too big for that.
func Read(r io.Reader) ([]Record, error) {
	rd := NewReader(r)
	var out []Record
	for {
		rec, err := rd.Next()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, rec)
	}
}
