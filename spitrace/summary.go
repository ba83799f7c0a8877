package spitrace

import (
	"cmp"
	"errors"
	"io"
	"maps"
	"slices"
	"time"

	"tsnsim/spibridge"
)

// Summary is what tsnsim trace prints: per node, the transactions per
// kind (address space), bus utilisation, latency percentiles, errors and
// faults.
type Summary struct {
	Transactions int           `json:"transactions"`
	Nodes        []NodeSummary `json:"nodes"` // by name
}

// NodeSummary summarises one node's transfers. Times are emulated time
// since the trace's epoch.
type NodeSummary struct {
	Node         string        `json:"node"`
	Transactions int           `json:"transactions"`
	Bytes        int64         `json:"bytes"`
	Errors       int           `json:"errors"`
	First        time.Duration `json:"first_ns"` // earliest start
	Last         time.Duration `json:"last_ns"`  // latest completion
	Span         time.Duration `json:"span_ns"`  // Last - First
	// Busy is the time at least one transfer was in progress (the union
	// of the transfers' intervals), so transfers queued behind each
	// other on one bus are not counted twice; for the in-process bus it
	// is the time the bus was held.
	Busy time.Duration `json:"busy_ns"`
	// InTransfer is the sum of all transfer durations, queueing
	// included: above Busy when transfers waited for the bus.
	InTransfer time.Duration `json:"in_transfer_ns"`
	// Late summarises how long after their modelled end the transfers
	// returned on the wall clock (late_ns): how far a real-time run was
	// behind the model there, kept out of the durations. Zero in virtual
	// time.
	Late LateSummary `json:"late"`
	// Timeline reports whether the node's records carry the bus's
	// modelled timeline (start): then Kinds are time on the bus,
	// otherwise whole calls, queueing included.
	Timeline bool `json:"timeline"`
	// Utilisation is Busy / Span (0 for an empty span).
	Utilisation float64       `json:"utilisation"`
	Kinds       []KindSummary `json:"kinds"` // in spibridge.Spaces order, kinds seen only
	// ErrorsByErrno counts failed transfers by errno name (ErrnoOther
	// for errors that wrap none).
	ErrorsByErrno map[string]int `json:"errors_by_errno,omitempty"`
	// Faults counts transfers by the injected fault kinds that acted on
	// them (Record.Fault), failed or completed.
	Faults map[string]int `json:"faults,omitempty"`
	// PPS summarises the chip's PPS edges in the trace (nil: none).
	PPS *PPSSummary `json:"pps,omitempty"`
}

// PPSSummary summarises a node's PPS edges: how many, the first and the
// last (emulated time since the epoch, and pulse numbers), and the mean
// interval between them.
type PPSSummary struct {
	Edges        int           `json:"edges"`
	First        time.Duration `json:"first_ns"`
	Last         time.Duration `json:"last_ns"`
	FirstSeq     uint64        `json:"first_seq"`
	LastSeq      uint64        `json:"last_seq"`
	MeanInterval time.Duration `json:"mean_interval_ns"` // 0 with fewer than 2 edges
}

// LateSummary is the wall-clock lateness of a node's transfers:
// nearest-rank percentiles of late_ns, its maximum, and how many
// transfers returned more than LateThreshold after their modelled end.
type LateSummary struct {
	P50  time.Duration `json:"p50_ns"`
	P99  time.Duration `json:"p99_ns"`
	Max  time.Duration `json:"max_ns"`
	Over int           `json:"over_threshold"`
}

// LateThreshold is the lateness LateSummary.Over counts beyond: what a
// real-time run with the precise timer aims to stay within.
const LateThreshold = 100 * time.Microsecond

// KindSummary summarises one address space's transfers. Percentiles are
// nearest-rank (the value below or at which p% of them lie) over the
// transfers' bus occupancy: from when a transfer started to occupy the
// bus to when it released it, queueing excluded, on the bus's modelled
// timeline (overhead + 8n/f for the in-process bus, in real time too);
// failed transfers included. For traces without bus starts (transports
// with no timeline) they are over the whole call, queueing included.
//
// LateP50 and LateP99 are the same percentiles of the kind's wall-clock
// lateness (late_ns, as NodeSummary.Late): how far behind its modelled
// end a transfer of the kind returned. CallP50 and CallP99 are those of
// how long the calls took as the host saw them (Record.CallTime,
// queueing included), and Short counts the calls that took less than
// their transfer's time on the bus (what the bus took back from their
// start: see Record.CallTime). Late and Short are zero in virtual time;
// all four are for transports with a timeline only.
type KindSummary struct {
	Space   spibridge.Space `json:"space"`
	Count   int             `json:"count"`
	Bytes   int64           `json:"bytes"` // full transfer lengths
	Errors  int             `json:"errors"`
	P50     time.Duration   `json:"p50_ns"`
	P90     time.Duration   `json:"p90_ns"`
	P99     time.Duration   `json:"p99_ns"`
	Max     time.Duration   `json:"max_ns"`
	LateP50 time.Duration   `json:"late_p50_ns"`
	LateP99 time.Duration   `json:"late_p99_ns"`
	CallP50 time.Duration   `json:"call_p50_ns,omitempty"`
	CallP99 time.Duration   `json:"call_p99_ns,omitempty"`
	Short   int             `json:"short,omitempty"`
}

// Summariser builds a Summary from records added one at a time, so a
// trace is summarised as it is read. Memory: per node it keeps each
// transfer's start, duration and lateness, and its duration, lateness
// and call time again per kind (48 bytes a transfer), for the busy time
// and the percentiles; the records themselves are not kept. That is fine
// for traces of millions of transfers; it is not constant.
type Summariser struct {
	nodes map[string]*nodeAcc
	pps   map[string]*PPSSummary
	n     int
}

type nodeAcc struct {
	first, last int64
	sum         int64
	bytes       int64
	errs        int
	spans       []span // bus start, occupancy of every transfer
	late        []int64
	timeline    bool // some record had a bus start
	kinds       map[spibridge.Space]*kindAcc
	errnos      map[string]int
	faults      map[string]int
}

type span struct{ start, dur int64 }

type kindAcc struct {
	bytes int64
	errs  int
	durs  []int64
	late  []int64
	calls []int64 // call times, transfers with a bus timeline only
	short int     // calls shorter than their time on the bus
}

// NewSummariser returns an empty Summariser.
func NewSummariser() *Summariser {
	return &Summariser{nodes: map[string]*nodeAcc{}, pps: map[string]*PPSSummary{}}
}

// Add accounts for one record.
func (s *Summariser) Add(r Record) {
	if r.Event == EventPPS {
		s.addPPS(r)
		return
	}
	s.n++
	a := s.nodes[r.Node]
	if a == nil {
		a = &nodeAcc{first: r.T, last: r.End(), kinds: map[spibridge.Space]*kindAcc{},
			errnos: map[string]int{}, faults: map[string]int{}}
		s.nodes[r.Node] = a
	}
	a.first = min(a.first, r.T)
	a.last = max(a.last, r.End())
	a.sum += r.Dur
	a.bytes += int64(r.Len)
	a.spans = append(a.spans, span{r.BusStart(), r.Occupancy()})
	a.late = append(a.late, r.LateNs)
	a.timeline = a.timeline || r.Start != nil
	k := a.kinds[r.Space]
	if k == nil {
		k = &kindAcc{}
		a.kinds[r.Space] = k
	}
	k.bytes += int64(r.Len)
	k.durs = append(k.durs, r.Occupancy())
	k.late = append(k.late, r.LateNs)
	if r.Start != nil {
		k.calls = append(k.calls, r.CallTime())
		if r.CallTime() < r.Occupancy() {
			k.short++
		}
	}
	if r.Failed() {
		a.errs++
		k.errs++
		a.errnos[cmp.Or(r.Errno, ErrnoOther)]++
	}
	if r.Fault != "" {
		a.faults[r.Fault]++
	}
}

// addPPS accounts for a PPS edge.
func (s *Summariser) addPPS(r Record) {
	p := s.pps[r.Node]
	if p == nil {
		p = &PPSSummary{First: time.Duration(r.T), FirstSeq: r.Seq}
		s.pps[r.Node] = p
	}
	p.Edges++
	t := time.Duration(r.T)
	if t < p.First {
		p.First, p.FirstSeq = t, r.Seq
	}
	if t >= p.Last {
		p.Last, p.LastSeq = t, r.Seq
	}
}

// Summary returns the summary of the records added so far.
func (s *Summariser) Summary() Summary {
	sum := Summary{Transactions: s.n, Nodes: []NodeSummary{}}
	names := slices.Collect(maps.Keys(s.nodes))
	for name := range s.pps {
		if s.nodes[name] == nil {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	for _, name := range names {
		n := NodeSummary{Node: name, Kinds: []KindSummary{}}
		if a := s.nodes[name]; a != nil {
			n = a.summary(name)
		}
		if p := s.pps[name]; p != nil {
			cp := *p
			if cp.Edges > 1 {
				cp.MeanInterval = (cp.Last - cp.First) / time.Duration(cp.Edges-1)
			}
			n.PPS = &cp
		}
		sum.Nodes = append(sum.Nodes, n)
	}
	return sum
}

func (a *nodeAcc) summary(name string) NodeSummary {
	n := NodeSummary{
		Node: name, Transactions: len(a.spans), Bytes: a.bytes, Errors: a.errs,
		First: time.Duration(a.first), Last: time.Duration(a.last), Span: time.Duration(a.last - a.first),
		Busy: time.Duration(busy(a.spans)), InTransfer: time.Duration(a.sum), Kinds: []KindSummary{},
		Timeline: a.timeline,
	}
	if n.Span > 0 {
		n.Utilisation = float64(n.Busy) / float64(n.Span)
	}
	if len(a.late) > 0 {
		slices.Sort(a.late)
		n.Late = LateSummary{P50: percentile(a.late, 50), P99: percentile(a.late, 99), Max: time.Duration(a.late[len(a.late)-1])}
		i, _ := slices.BinarySearch(a.late, int64(LateThreshold)+1)
		n.Late.Over = len(a.late) - i
	}
	for _, sp := range spibridge.Spaces {
		k := a.kinds[sp]
		if k == nil {
			continue
		}
		slices.Sort(k.durs)
		slices.Sort(k.late)
		ks := KindSummary{
			Space: sp, Count: len(k.durs), Bytes: k.bytes, Errors: k.errs,
			P50: percentile(k.durs, 50), P90: percentile(k.durs, 90), P99: percentile(k.durs, 99),
			Max:     time.Duration(k.durs[len(k.durs)-1]),
			LateP50: percentile(k.late, 50), LateP99: percentile(k.late, 99),
			Short: k.short,
		}
		if len(k.calls) > 0 {
			slices.Sort(k.calls)
			ks.CallP50, ks.CallP99 = percentile(k.calls, 50), percentile(k.calls, 99)
		}
		n.Kinds = append(n.Kinds, ks)
	}
	if len(a.errnos) > 0 {
		n.ErrorsByErrno = maps.Clone(a.errnos)
	}
	if len(a.faults) > 0 {
		n.Faults = maps.Clone(a.faults)
	}
	return n
}

// percentile is the nearest-rank p-th percentile of sorted (not empty):
// the value at rank ceil(p/100 * n).
func percentile(sorted []int64, p int) time.Duration {
	rank := (p*len(sorted) + 99) / 100
	return time.Duration(sorted[max(rank, 1)-1])
}

// busy returns the length of the union of the spans; it sorts them.
func busy(spans []span) int64 {
	slices.SortFunc(spans, func(a, b span) int { return cmp.Compare(a.start, b.start) })
	var total, curStart, curEnd int64
	for i, s := range spans {
		end := s.start + s.dur
		switch {
		case i == 0:
			curStart, curEnd = s.start, end
		case s.start > curEnd:
			total += curEnd - curStart
			curStart, curEnd = s.start, end
		default:
			curEnd = max(curEnd, end)
		}
	}
	if len(spans) > 0 {
		total += curEnd - curStart
	}
	return total
}

// Summarise summarises records.
func Summarise(records []Record) Summary {
	s := NewSummariser()
	for _, r := range records {
		s.Add(r)
	}
	return s.Summary()
}

// SummariseReader summarises a trace file as it reads it, without
// keeping its records. A bad line fails with its line number.
func SummariseReader(r io.Reader) (Summary, error) {
	rd := NewReader(r)
	s := NewSummariser()
	for {
		rec, err := rd.Next()
		if errors.Is(err, io.EOF) {
			return s.Summary(), nil
		}
		if err != nil {
			return Summary{}, err
		}
		s.Add(rec)
	}
}
