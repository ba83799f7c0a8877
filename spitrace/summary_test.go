package spitrace

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"

	"tsnsim/chip/proto"
	"tsnsim/chip/regs"
	"tsnsim/spibridge"
)

// handTrace is a small trace written by hand. Node a: two overlapping
// register reads (busy 0-150), a TX write (200-500), a failed metadata
// read without errno (600-610), a timed-out register read with a fault
// (1000-2000). Node b: one metadata read (100-140). A blank line.
const handTrace = `{"t":0,"node":"a","space":"reg_read","dir":"read","addr":"0x3288","reg":"TSN_SYSCOUNT_H","len":8,"dur":100,"result":"ok","mosi":"0232880000000000","miso":"0000000000000001"}
{"t":100,"node":"b","space":"rx_meta","dir":"read","addr":"0xf000","len":14,"dur":40,"result":"ok","mosi":"02f000"}
{"t":50,"node":"a","space":"reg_read","dir":"read","addr":"0x328c","reg":"TSN_SYSCOUNT_L","len":8,"dur":100,"result":"ok","mosi":"02328c0000000000"}
{"t":200,"node":"a","space":"tx_frame","dir":"write","addr":"0x2000","len":99,"dur":300,"result":"ok","mosi":"012000"}

{"t":600,"node":"a","space":"rx_meta","dir":"read","addr":"0xf000","len":14,"dur":10,"result":"error","err":"socket: peer went away","mosi":"02f000"}
{"t":1000,"node":"a","space":"reg_read","dir":"read","addr":"0x3288","reg":"TSN_SYSCOUNT_H","len":8,"dur":1000,"result":"error","err":"timed out","errno":"ETIMEDOUT","fault":"timeout","mosi":"023288","some_future_field":1}
`

func handSummary() Summary {
	return Summary{Transactions: 6, Nodes: []NodeSummary{{
		Node: "a", Transactions: 5, Bytes: 8 + 8 + 99 + 14 + 8, Errors: 2,
		First: 0, Last: 2000, Span: 2000, Busy: 150 + 300 + 10 + 1000, InTransfer: 100 + 100 + 300 + 10 + 1000,
		Utilisation: 1460.0 / 2000,
		Kinds: []KindSummary{
			// Durations 100, 100, 1000: ranks ceil(1.5)=2, ceil(2.7)=3, ceil(2.97)=3.
			{Space: "reg_read", Count: 3, Bytes: 24, Errors: 1, P50: 100, P90: 1000, P99: 1000, Max: 1000},
			{Space: "rx_meta", Count: 1, Bytes: 14, Errors: 1, P50: 10, P90: 10, P99: 10, Max: 10},
			{Space: "tx_frame", Count: 1, Bytes: 99, Errors: 0, P50: 300, P90: 300, P99: 300, Max: 300},
		},
		ErrorsByErrno: map[string]int{"ETIMEDOUT": 1, ErrnoOther: 1},
		Faults:        map[string]int{"timeout": 1},
	}, {
		Node: "b", Transactions: 1, Bytes: 14, First: 100, Last: 140, Span: 40, Busy: 40, InTransfer: 40, Utilisation: 1,
		Kinds: []KindSummary{{Space: "rx_meta", Count: 1, Bytes: 14, P50: 40, P90: 40, P99: 40, Max: 40}},
	}}}
}

// TestSummariseHandTrace: exact counts, bytes, busy time (overlaps
// merged), utilisation, percentiles, errors and faults of a hand-made
// trace, read as a stream and from memory.
func TestSummariseHandTrace(t *testing.T) {
	got, err := SummariseReader(strings.NewReader(handTrace))
	if err != nil {
		t.Fatal(err)
	}
	if want := handSummary(); !reflect.DeepEqual(got, want) {
		t.Errorf("summary\n got %+v\nwant %+v", got, want)
	}
	recs, err := Read(strings.NewReader(handTrace))
	if err != nil {
		t.Fatal(err)
	}
	if got := Summarise(recs); !reflect.DeepEqual(got, handSummary()) {
		t.Errorf("Summarise differs from SummariseReader: %+v", got)
	}
}

// TestSummaryText: the text report of the hand-made trace, exactly.
func TestSummaryText(t *testing.T) {
	var out bytes.Buffer
	if err := handSummary().Write(&out); err != nil {
		t.Fatal(err)
	}
	want := `SPI trace: 6 transactions, 2 nodes

node a: 5 transactions, 137 bytes, 2 errors, from 0s to 2µs (span 2µs)
  bus busy 1.46µs (73.0% of the span), 1.51µs in transfers (queueing included)
  kind      count  bytes  errors  p50    p90    p99    max  (whole calls, queueing included: the transport records no bus timeline)
  reg_read  3      24     1       100ns  1µs    1µs    1µs
  rx_meta   1      14     1       10ns   10ns   10ns   10ns
  tx_frame  1      99     0       300ns  300ns  300ns  300ns
  errors by errno: ETIMEDOUT 1, other 1
  faults by kind: timeout 1

node b: 1 transactions, 14 bytes, 0 errors, from 100ns to 140ns (span 40ns)
  bus busy 40ns (100.0% of the span), 40ns in transfers (queueing included)
  kind     count  bytes  errors  p50   p90   p99   max  (whole calls, queueing included: the transport records no bus timeline)
  rx_meta  1      14     0       40ns  40ns  40ns  40ns
`
	if out.String() != want {
		t.Errorf("text\n got:\n%s\nwant:\n%s", out.String(), want)
	}
}

func TestSummaryJSON(t *testing.T) {
	var out bytes.Buffer
	if err := handSummary().WriteJSON(&out); err != nil {
		t.Fatal(err)
	}
	var got Summary
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, handSummary()) {
		t.Errorf("JSON round trip\n got %+v\nwant %+v", got, handSummary())
	}
	for _, field := range []string{`"p99_ns": 1000`, `"busy_ns": 1460`, `"utilisation": 0.73`, `"ETIMEDOUT": 1`} {
		if !strings.Contains(out.String(), field) {
			t.Errorf("JSON lacks %s:\n%s", field, out.String())
		}
	}
}

func TestPercentile(t *testing.T) {
	var hundred []int64
	for i := range 100 {
		hundred = append(hundred, int64(i+1))
	}
	for _, tc := range []struct {
		durs          []int64
		p50, p90, p99 time.Duration
	}{
		{[]int64{7}, 7, 7, 7},
		{[]int64{1, 2}, 1, 2, 2},
		{[]int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, 5, 9, 10},
		{hundred, 50, 90, 99},
	} {
		if p50, p90, p99 := percentile(tc.durs, 50), percentile(tc.durs, 90), percentile(tc.durs, 99); p50 != tc.p50 || p90 != tc.p90 || p99 != tc.p99 {
			t.Errorf("%d values: p50 %v p90 %v p99 %v, want %v %v %v", len(tc.durs), p50, p90, p99, tc.p50, tc.p90, tc.p99)
		}
	}
}

func TestEmptyTrace(t *testing.T) {
	s, err := SummariseReader(strings.NewReader(""))
	if err != nil || s.Transactions != 0 || len(s.Nodes) != 0 {
		t.Fatalf("empty trace: %+v, %v", s, err)
	}
	var out bytes.Buffer
	if err := s.Write(&out); err != nil || out.String() != "SPI trace: 0 transactions, 0 nodes\n" {
		t.Errorf("empty summary text %q, %v", out.String(), err)
	}
}

// TestReaderErrors: a bad line fails with its line number and what is
// wrong with it.
func TestReaderErrors(t *testing.T) {
	good := `{"t":0,"node":"a","space":"reg_read","dir":"read","addr":"0x3288","len":8,"dur":1,"result":"ok","mosi":"02"}` + "\n"
	for _, tc := range []struct {
		bad, want string
	}{
		{"not json", "line 2: invalid character"},
		{`{"t":0,"node":"a","space":"reg_read","dir":"read","addr":"0x3288","len":8,"dur":1,"result":"ok","mosi":"zz"}`, "line 2: spitrace: bad hex bytes"},
		{`{"t":0,"node":"a","space":"reg_read","dir":"read","addr":"12345678","len":8,"dur":1,"result":"ok","mosi":""}`, "line 2: spitrace: bad address"},
		{`{"t":0,"node":"","space":"reg_read","dir":"read","addr":"0x3288","len":8,"dur":1,"result":"ok","mosi":""}`, "line 2: no node"},
		{`{"t":0,"node":"a","space":"dma","dir":"read","addr":"0x3288","len":8,"dur":1,"result":"ok","mosi":""}`, `line 2: unknown space "dma"`},
		{`{"t":0,"node":"a","space":"reg_read","dir":"up","addr":"0x3288","len":8,"dur":1,"result":"ok","mosi":""}`, `line 2: unknown dir "up"`},
		{`{"t":0,"node":"a","space":"reg_read","dir":"read","addr":"0x3288","len":8,"dur":1,"result":"maybe","mosi":""}`, `line 2: result "maybe"`},
		{`{"t":0,"node":"a","space":"reg_read","dir":"read","addr":"0x3288","len":8,"dur":-1,"result":"ok","mosi":""}`, "line 2: negative len 8, dur -1"},
		{`{"t":0,"node":"a","space":"reg_read","dir":"read","addr":"0x3288","len":1,"dur":1,"result":"ok","mosi":"0232"}`, "line 2: 2 MOSI and 0 MISO bytes exceed the transfer length 1"},
		{good[:len(good)-10], "line 2: unexpected end of JSON input"},
		{strings.Repeat("x", MaxLineLen+1), "line 2: longer than"},
	} {
		_, err := SummariseReader(strings.NewReader(good + tc.bad + "\n" + good))
		if err == nil || !strings.HasPrefix(err.Error(), "spitrace: ") || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%.40s: error %v, want one containing %q", tc.bad, err, tc.want)
		}
	}
}

// TestReaderNext: Next returns records then io.EOF, and Line counts
// blank lines too.
func TestReaderNext(t *testing.T) {
	rd := NewReader(strings.NewReader(handTrace))
	var n int
	for {
		_, err := rd.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != 6 || rd.Line() != 7 {
		t.Errorf("%d records over %d lines, want 6 over 7", n, rd.Line())
	}
}

// TestSummaryTimeline: records with the bus's modelled timeline (start,
// late_ns) are summarised by their time on the bus, queueing excluded,
// with the wall-clock lateness apart.
func TestSummaryTimeline(t *testing.T) {
	start := func(ns int64) *int64 { return &ns }
	recs := []Record{
		// Two reads queued at 0: the second waits 24266 ns for the first.
		{T: 0, Node: "a", Space: spibridge.SpaceRegRead, Dir: spibridge.DirRead, Len: 8, Dur: 24266, Start: start(0), LateNs: 30_000, Result: ResultOK},
		{T: 0, Node: "a", Space: spibridge.SpaceRegRead, Dir: spibridge.DirRead, Len: 8, Dur: 48532, Start: start(24266), LateNs: 150_000, Result: ResultOK},
		{T: 100_000, Node: "a", Space: spibridge.SpaceRxMeta, Dir: spibridge.DirRead, Len: 14, Dur: 27466, Start: start(100_000), LateNs: 20_000, Result: ResultOK},
		// Taken back after a late wake-up: the call took 2 µs.
		{T: 200_000, Node: "a", Space: spibridge.SpaceRxMeta, Dir: spibridge.DirRead, Len: 14, Dur: 27466, Start: start(200_000), LateNs: 40_000, CallNs: start(2_000), Result: ResultOK},
	}
	sum := Summarise(recs)
	n := sum.Nodes[0]
	if k := n.Kinds[0]; k.Space != spibridge.SpaceRegRead || k.P50 != 24266 || k.Max != 24266 {
		t.Errorf("reg_read %+v: want every transfer 24.266µs on the bus", k)
	}
	if !n.Timeline || Summarise(recs[:0]).Transactions != 0 {
		t.Error("records with a bus start: summary does not say it has the timeline")
	}
	if n.Busy != 2*24266+2*27466 || n.InTransfer != 24266+48532+2*27466 {
		t.Errorf("busy %v, in transfers %v", n.Busy, n.InTransfer)
	}
	if want := (LateSummary{P50: 30 * time.Microsecond, P99: 150 * time.Microsecond, Max: 150 * time.Microsecond, Over: 1}); n.Late != want {
		t.Errorf("late %+v, want %+v", n.Late, want)
	}
	var out bytes.Buffer
	if err := sum.Write(&out); err != nil {
		t.Fatal(err)
	}
	if want := "wall clock: transfers returned p50 30µs, p99 150µs, max 150µs after their modelled end; 1 later than 100µs"; !strings.Contains(out.String(), want) {
		t.Errorf("text report lacks %q:\n%s", want, out.String())
	}
	// Each kind's lateness apart: the per-transfer figure of a kind is
	// its occupancy plus its lateness.
	if k := n.Kinds[0]; k.LateP50 != 30*time.Microsecond || k.LateP99 != 150*time.Microsecond {
		t.Errorf("reg_read lateness p50 %v, p99 %v; want 30µs, 150µs", k.LateP50, k.LateP99)
	}
	if k := n.Kinds[1]; k.LateP50 != 20*time.Microsecond || k.LateP99 != 40*time.Microsecond {
		t.Errorf("rx_meta lateness p50 %v, p99 %v; want 20µs, 40µs", k.LateP50, k.LateP99)
	}
	// The calls as the host saw them: dur unless call_ns says otherwise;
	// one rx_meta call took less than its time on the bus.
	if k := n.Kinds[0]; k.CallP50 != 24266 || k.CallP99 != 48532 || k.Short != 0 {
		t.Errorf("reg_read calls p50 %v, p99 %v, %d short; want 24.266µs, 48.532µs, 0", k.CallP50, k.CallP99, k.Short)
	}
	if k := n.Kinds[1]; k.CallP50 != 2*time.Microsecond || k.CallP99 != 27466 || k.Short != 1 {
		t.Errorf("rx_meta calls p50 %v, p99 %v, %d short; want 2µs, 27.466µs, 1", k.CallP50, k.CallP99, k.Short)
	}
	for _, want := range []string{"late p50", "late p99", "call p50", "call p99", "short"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("text report lacks the column %q:\n%s", want, out.String())
		}
	}
	// The fields survive the file: write, read back, same summary.
	var buf bytes.Buffer
	for _, r := range recs {
		line, err := appendRecord(nil, &r)
		if err != nil {
			t.Fatal(err)
		}
		buf.Write(line)
	}
	back, err := Read(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(Summarise(back), sum) {
		t.Errorf("read back: %+v", back)
	}
	bad := `{"t":10,"node":"a","space":"reg_read","dir":"read","addr":"0x3288","len":8,"dur":5,"start":2,"result":"ok","mosi":""}`
	if _, err := Read(strings.NewReader(bad)); err == nil || !strings.Contains(err.Error(), "outside") {
		t.Errorf("start before t: error %v", err)
	}
}

// TestRecordCallTime: a record carries call_ns only when the call, as
// the host saw it, took other than its modelled dur (real time), so
// virtual-time traces are unchanged; CallTime falls back to dur.
func TestRecordCallTime(t *testing.T) {
	read := proto.RegRead(regs.TSNSysCount)
	ev := spibridge.TraceEvent{Node: "a", Start: epoch, Duration: 24266, BusStart: epoch, Len: len(read), MOSI: read,
		Header: spibridge.DecodeHeader(read)}
	for _, c := range []struct {
		call, want time.Duration
		has        bool
	}{{0, 24266, false}, {24266, 24266, false}, {3000, 3000, true}, {60000, 60000, true}} {
		ev.Call = c.call
		r := RecordOf(ev, epoch)
		if (r.CallNs != nil) != c.has || r.CallTime() != int64(c.want) {
			t.Errorf("call %v: call_ns %v, CallTime %d; want present %v, %d", c.call, r.CallNs, r.CallTime(), c.has, c.want)
		}
		line, err := appendRecord(nil, &r)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(line), "call_ns") != c.has {
			t.Errorf("call %v: line %s", c.call, line)
		}
	}
}
