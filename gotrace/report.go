package gotrace

import (
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
)

// Write prints the report as text.
func (r Report) Write(w io.Writer) error {
	pct := 0.0
	if r.Waits > 0 {
		pct = 100 * float64(r.Late) / float64(r.Waits)
	}
	if _, err := fmt.Fprintf(w, "Go execution trace: %d SPI bus waits, %d ended more than %v after their end (%.2f%%)\n",
		r.Waits, r.Late, r.Threshold, pct); err != nil {
		return err
	}
	if r.Incomplete != "" {
		if _, err := fmt.Fprintf(w, "  the trace ends early (%s): this covers what was read before it\n", r.Incomplete); err != nil {
			return err
		}
	}
	if r.Waits == 0 {
		_, err := fmt.Fprintln(w, "  (no spibridge.wait events: was it a real-time run with the SPI model on, traced with run --go-trace?)")
		return err
	}
	if r.Late == 0 {
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  why (the waiting goroutine in its longest stretch without an event)\twaits\tlate p50\tlate max")
	for _, c := range r.Causes {
		fmt.Fprintf(tw, "  %s\t%d\t%v\t%v\n", c.Cause, c.Waits, c.LateP50, c.LateMax)
	}
	return tw.Flush()
}

// WriteJSON prints the report as JSON, durations in nanoseconds.
func (r Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}
