package spitrace

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
)

// Write prints the summary as text: per node a header with span, busy
// time and utilisation, a table of kinds with latency percentiles, and
// the errors and faults.
func (s Summary) Write(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintf(tw, "SPI trace: %d transactions, %d nodes\n", s.Transactions, len(s.Nodes))
	for _, n := range s.Nodes {
		fmt.Fprintf(tw, "\nnode %s: %d transactions, %d bytes, %d errors, from %v to %v (span %v)\n",
			n.Node, n.Transactions, n.Bytes, n.Errors, n.First, n.Last, n.Span)
		fmt.Fprintf(tw, "  bus busy %v (%.1f%% of the span), %v in transfers (queueing included)\n",
			n.Busy, 100*n.Utilisation, n.InTransfer)
		if n.Late.Max > 0 {
			fmt.Fprintf(tw, "  wall clock: transfers returned p50 %v, p99 %v, max %v after their modelled end; %d later than %v\n",
				n.Late.P50, n.Late.P99, n.Late.Max, n.Late.Over, LateThreshold)
		}
		what := "(whole calls, queueing included: the transport records no bus timeline)"
		if n.Timeline {
			what = "(time on the bus, queueing excluded)"
			if n.Late.Max > 0 {
				what = "(p50..max: time on the bus; late: returned after its end; call: as the host saw it; short: calls that took less than their time on the bus)"
			}
		}
		// In real time, each kind's wall-clock lateness too, and how
		// long the calls took as the host saw them.
		late := n.Late.Max > 0
		head := "  kind\tcount\tbytes\terrors\tp50\tp90\tp99\tmax\t"
		if late {
			head += "late p50\tlate p99\tcall p50\tcall p99\tshort\t"
		}
		fmt.Fprintln(tw, head+what)
		for _, k := range n.Kinds {
			row := fmt.Sprintf("  %s\t%d\t%d\t%d\t%v\t%v\t%v\t%v", k.Space, k.Count, k.Bytes, k.Errors, k.P50, k.P90, k.P99, k.Max)
			if late {
				row += fmt.Sprintf("\t%v\t%v\t%v\t%v\t%d", k.LateP50, k.LateP99, k.CallP50, k.CallP99, k.Short)
			}
			fmt.Fprintln(tw, row)
		}
		if len(n.ErrorsByErrno) > 0 {
			fmt.Fprintf(tw, "  errors by errno: %s\n", counts(n.ErrorsByErrno))
		}
		if len(n.Faults) > 0 {
			fmt.Fprintf(tw, "  faults by kind: %s\n", counts(n.Faults))
		}
		if p := n.PPS; p != nil {
			fmt.Fprintf(tw, "  PPS: %d edges (pulses %d to %d), first at %v, last at %v, every %v on average\n",
				p.Edges, p.FirstSeq, p.LastSeq, p.First, p.Last, p.MeanInterval)
		}
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("spitrace: writing the summary: %w", err)
	}
	return nil
}

// counts formats a count map as "A 3, B 1", by key.
func counts(m map[string]int) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

// WriteJSON prints the summary as indented JSON; durations are integer
// nanoseconds (fields ending in _ns).
func (s Summary) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(s); err != nil {
		return fmt.Errorf("spitrace: writing the summary: %w", err)
	}
	return nil
}
