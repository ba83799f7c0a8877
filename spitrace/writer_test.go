package spitrace

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"tsnsim/chip/proto"
	"tsnsim/chip/regs"
	"tsnsim/spibridge"
)

var epoch = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// event builds the event a Traced transport records for mosi/miso.
func event(node string, start, dur time.Duration, mosi, miso []byte, err error) spibridge.TraceEvent {
	ev := spibridge.TraceEvent{
		Node: node, Start: epoch.Add(start), Duration: dur, Header: spibridge.DecodeHeader(mosi),
		Len: len(mosi), MOSI: mosi[:min(len(mosi), 64)], Err: err,
	}
	if err == nil {
		ev.MISO = miso[:min(len(miso), 64)]
	} else {
		ev.Errno, ev.Fault = spibridge.ErrnoOf(err), spibridge.FaultKind(err)
	}
	return ev
}

type faultErr struct{ kind string }

func (e *faultErr) Error() string     { return "spifault: injected " + e.kind }
func (e *faultErr) FaultKind() string { return e.kind }

// TestGoldenLines: the exact text of a register read, a TX frame write
// (prefix kept) and a failed transfer with errno and fault kind, in
// completion order although recorded out of it.
func TestGoldenLines(t *testing.T) {
	var out bytes.Buffer
	w := NewWriter(&out, epoch)

	read := proto.RegRead(regs.TSNSysCount)
	readMISO := []byte{0, 0, 0, 0, 0x00, 0x12, 0x34, 0x56}
	frame := append([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0, 0, 0, 0, 0x01, 0x08, 0x06}, make([]byte, 46)...)
	tx, err := proto.TxFrameWrite(proto.SendNow(64, proto.PriorityBestEffort), frame)
	if err != nil {
		t.Fatal(err)
	}
	meta := proto.RxMetaRead()
	timeout := fmt.Errorf("%w: spibridge: SPI transfer timed out after 500ms <bus>: %w", &faultErr{"timeout"}, syscall.ETIMEDOUT)

	w.Record(event("a", 30*time.Microsecond, 26600*time.Nanosecond, tx, make([]byte, len(tx)), nil))
	w.Record(event("a", 1234, 24266, read, readMISO, nil)) // completed earlier: a straggler, written at once
	w.Record(event("b", 100*time.Microsecond, 500*time.Millisecond, meta, make([]byte, 14), timeout))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	want := `{"t":1234,"node":"a","space":"reg_read","dir":"read","addr":"0x3288","reg":"TSN_SYSCOUNT_H","len":8,"dur":24266,"result":"ok","mosi":"0232880000000000","miso":"0000000000123456"}
{"t":30000,"node":"a","space":"tx_frame","dir":"write","addr":"0x2000","len":99,"dur":26600,"result":"ok","mosi":"` +
		"012000" + "00000007ffffffff00000007ffffffff" + "0040" + "0000" + "00" + "000000" + "0000000000000000" +
		"ffffffffffff" + "020000000001" + "0806" + strings.Repeat("00", 15) + `","miso":"` + strings.Repeat("00", 64) + `"}
{"t":100000,"node":"b","space":"rx_meta","dir":"read","addr":"0xf000","len":14,"dur":500000000,"result":"error","err":"spifault: injected timeout: spibridge: SPI transfer timed out after 500ms <bus>: connection timed out","errno":"ETIMEDOUT","fault":"timeout","mosi":"02f0000000000000000000000000"}
`
	if got := out.String(); got != want {
		t.Errorf("trace\n got:\n%s\nwant:\n%s", got, want)
	}
}

// TestWriterSameInstantOrder: records completing at one instant are
// written in the total order whatever order they arrive in; a record at
// a later instant releases them; a straggler from a past instant is
// written at once.
func TestWriterSameInstantOrder(t *testing.T) {
	read := proto.RegRead(regs.TSNSysCount)
	miso := make([]byte, 8)
	evs := []spibridge.TraceEvent{
		event("a", 0, 100, read, miso, nil),
		event("a", 50, 50, read, miso, nil),
		event("b", 0, 100, read, miso, nil),
		event("b", 0, 100, proto.RegRead(regs.TSNSysCount+4), miso, nil),
	}
	var want string
	for _, ev := range evs {
		line, err := appendRecord(nil, new(RecordOf(ev, epoch)))
		if err != nil {
			t.Fatal(err)
		}
		want += string(line)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 20 {
		var out bytes.Buffer
		w := NewWriter(&out, epoch)
		for _, i := range rng.Perm(len(evs)) {
			w.Record(evs[i])
		}
		if w.Written() != 0 {
			t.Fatalf("%d lines written before the instant passed", w.Written())
		}
		w.Record(event("a", 100, 100, read, miso, nil)) // releases instant 100
		if w.Written() != 4 {
			t.Fatalf("%d lines written after a later instant, want 4", w.Written())
		}
		w.Record(event("c", 120, 10, read, miso, nil)) // straggler at 130 < 200
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		lines := strings.SplitAfter(out.String(), "\n")
		if got := strings.Join(lines[:4], ""); got != want {
			t.Fatalf("same-instant lines\n got:\n%s\nwant:\n%s", got, want)
		}
		if !strings.Contains(lines[4], `"node":"c"`) || !strings.Contains(lines[5], `"t":100,`) {
			t.Fatalf("straggler not written ahead of the held line:\n%s", out.String())
		}
	}
}

// sleeper is a transport whose transfers take d and answer with the
// inverted MOSI bytes.
type sleeper struct{ d time.Duration }

func (s sleeper) Transfer(_ context.Context, tx, rx []byte) error {
	time.Sleep(s.d)
	for i := range tx {
		rx[i] = ^tx[i]
	}
	return nil
}
func (s sleeper) Interrupt() <-chan struct{} { return nil }
func (s sleeper) Close() error               { return nil }

// TestDeterministicTrace: in virtual time, four nodes whose transfers
// complete at the same instants, each with several goroutines sharing
// one traced transport and yielding a random number of times before
// each transfer, give the same trace file byte for byte on every run,
// although the order in which records arrive differs between runs.
func TestDeterministicTrace(t *testing.T) {
	const runs, nodes, workers, transfers = 8, 4, 2, 25
	var first []byte
	orders := map[string]bool{}
	for run := range runs {
		var out bytes.Buffer
		var arrival []string
		synctest.Test(t, func(t *testing.T) {
			start := time.Now()
			w := NewWriter(&out, start)
			rec := &orderRecorder{w: w, order: &arrival}
			var wg sync.WaitGroup
			for n := range nodes {
				tr := spibridge.NewTraced(sleeper{25 * time.Microsecond}, fmt.Sprintf("n%d", n), rec)
				for k := range workers {
					rng := rand.New(rand.NewPCG(uint64(run), uint64(n*workers+k)))
					wg.Go(func() {
						for i := range transfers {
							for range rng.IntN(4) {
								runtime.Gosched()
							}
							mosi := proto.RegRead(uint16(8 * (k*transfers + i)))
							if err := tr.Transfer(context.Background(), mosi, make([]byte, len(mosi))); err != nil {
								t.Error(err)
							}
						}
					})
				}
			}
			wg.Wait()
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
		})
		if got := bytes.Count(out.Bytes(), []byte("\n")); got != nodes*workers*transfers {
			t.Fatalf("run %d: %d lines, want %d", run, got, nodes*workers*transfers)
		}
		orders[strings.Join(arrival, ",")] = true
		if run == 0 {
			first = bytes.Clone(out.Bytes())
			checkSorted(t, first)
			continue
		}
		if !bytes.Equal(out.Bytes(), first) {
			t.Fatalf("run %d wrote a different trace", run)
		}
	}
	if len(orders) < 2 {
		t.Errorf("records arrived in the same order on all %d runs: the test did not exercise reordering", runs)
	}
}

// orderRecorder notes the order records arrive in, then writes them.
type orderRecorder struct {
	mu    sync.Mutex
	w     *Writer
	order *[]string
}

func (o *orderRecorder) Record(ev spibridge.TraceEvent) {
	o.mu.Lock()
	*o.order = append(*o.order, fmt.Sprintf("%s/%x", ev.Node, ev.MOSI[1:3]))
	o.mu.Unlock()
	o.w.Record(ev)
}

// checkSorted checks that a trace is in (completion, node, start) order.
func checkSorted(t *testing.T, trace []byte) {
	t.Helper()
	recs, err := Read(bytes.NewReader(trace))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.IsSortedFunc(recs, func(a, b Record) int {
		if c := a.End() - b.End(); c != 0 {
			return int(c)
		}
		return strings.Compare(a.Node, b.Node)
	}) {
		t.Error("trace not in completion, node order")
	}
}

// TestWriterBound: more records at one instant than MaxSameInstant are
// all written; the held buffer never exceeds the bound.
func TestWriterBound(t *testing.T) {
	var out bytes.Buffer
	w := NewWriter(&out, epoch)
	read := proto.RegRead(regs.TSNSysCount)
	n := MaxSameInstant + 10
	for i := range n {
		w.Record(event("a", time.Duration(i), time.Duration(n-i), read, make([]byte, 8), nil))
		if len(w.held) >= MaxSameInstant {
			t.Fatalf("%d records held", len(w.held))
		}
	}
	if got := w.Written(); got != MaxSameInstant {
		t.Errorf("%d written before Close, want %d", got, MaxSameInstant)
	}
	// A straggler is written at once and does not move the instant back.
	w.Record(event("b", 0, time.Duration(n-1), read, make([]byte, 8), nil))
	w.Record(event("b", 1, time.Duration(n-1), read, make([]byte, 8), nil))
	if got := w.Written(); got != MaxSameInstant+1 || len(w.held) != 11 {
		t.Errorf("after a straggler: %d written, %d held; want %d and 11", got, len(w.held), MaxSameInstant+1)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if got := bytes.Count(out.Bytes(), []byte("\n")); got != n+2 {
		t.Errorf("%d lines, want %d", got, n+2)
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, syscall.ENOSPC }

// TestWriterErrors: a failing output, records after Close and a bad
// path are reported, not swallowed.
func TestWriterErrors(t *testing.T) {
	w := NewWriter(failWriter{}, epoch)
	read := proto.RegRead(regs.TSNSysCount)
	w.Record(event("a", 0, 1, read, make([]byte, 8), nil))
	err := w.Close()
	if !errors.Is(err, syscall.ENOSPC) || !strings.HasPrefix(err.Error(), "spitrace: ") {
		t.Errorf("Close = %v, want a spitrace error wrapping ENOSPC", err)
	}

	w = NewWriter(io.Discard, epoch)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	w.Record(event("a", 0, 1, read, make([]byte, 8), nil))
	if err := w.Err(); err == nil || !strings.Contains(err.Error(), "1 records after Close") {
		t.Errorf("Err after a late record = %v", err)
	}
	if err := w.Close(); err == nil {
		t.Error("second Close forgot the late record")
	}

	if _, err := Create(filepath.Join(t.TempDir(), "no", "such", "dir"), epoch); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Create in a missing directory = %v", err)
	}
}

// TestCreateRoundTrip: Create writes a file that Read returns record for
// record.
func TestCreateRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "spi.jsonl")
	w, err := Create(path, epoch)
	if err != nil {
		t.Fatal(err)
	}
	read := proto.RegRead(regs.TSNSysCount)
	evs := []spibridge.TraceEvent{
		event("a", 0, 10, read, []byte{1, 2, 3, 4, 5, 6, 7, 8}, nil),
		event("b", 5, 10, proto.RegWrite(regs.TSNSystemControl+4, 1), make([]byte, 7), nil),
		event("a", 20, 5, proto.RxMetaRead(), nil, fmt.Errorf("spibridge: transport closed: %w", syscall.EBADF)),
	}
	for _, ev := range evs {
		w.Record(ev)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got, err := Read(f)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(evs) {
		t.Fatalf("%d records, want %d", len(got), len(evs))
	}
	for i, ev := range evs {
		want := RecordOf(ev, epoch)
		g := got[i]
		if g.T != want.T || g.Node != want.Node || g.Space != want.Space || g.Dir != want.Dir || g.Addr != want.Addr ||
			g.Reg != want.Reg || g.Len != want.Len || g.Dur != want.Dur || g.Result != want.Result || g.Err != want.Err ||
			g.Errno != want.Errno || g.Fault != want.Fault || !bytes.Equal(g.MOSI, want.MOSI) || !bytes.Equal(g.MISO, want.MISO) {
			t.Errorf("record %d\n got %+v\nwant %+v", i, g, want)
		}
	}
	if got[2].Errno != "EBADF" || got[1].Reg != "TSN_SYSTEM_CONTROL_L" {
		t.Errorf("errno %q, reg %q", got[2].Errno, got[1].Reg)
	}
}

func TestErrnoName(t *testing.T) {
	for e, want := range map[syscall.Errno]string{0: "", syscall.ETIMEDOUT: "ETIMEDOUT", syscall.EIO: "EIO", 4000: "errno 4000"} {
		if got := ErrnoName(e); got != want {
			t.Errorf("ErrnoName(%d) = %q, want %q", e, got, want)
		}
	}
}

// BenchmarkTracedTransfer measures the cost tracing adds to a register
// read over an instant transport: copying the prefixes, encoding the
// line and writing it.
func BenchmarkTracedTransfer(b *testing.B) {
	w := NewWriter(io.Discard, time.Now())
	tr := spibridge.NewTraced(sleeper{}, "a", w)
	mosi := proto.RegRead(regs.TSNSysCount)
	miso := make([]byte, len(mosi))
	b.ReportAllocs()
	for b.Loop() {
		if err := tr.Transfer(context.Background(), mosi, miso); err != nil {
			b.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
}

// TestPPSLines: a PPS edge's exact line, ordered with the transfers by
// its time, read back, and summarised per node; a line with an unknown
// event is refused.
func TestPPSLines(t *testing.T) {
	var out bytes.Buffer
	w := NewWriter(&out, epoch)
	read := proto.RegRead(regs.TSNSysCount)
	w.Record(event("a", 0, 24266, read, make([]byte, 8), nil))
	w.RecordPPS("a", epoch.Add(time.Second), 2, 125000000)
	w.Record(event("a", 999990000, 24266, read, make([]byte, 8), nil)) // ends after the edge
	w.RecordPPS("a", epoch.Add(3*time.Second), 4, 375000000)
	w.RecordPPS("b", epoch.Add(3*time.Second), 4, 375000003)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	want := []string{
		`{"t":0,"node":"a","space":"reg_read"`,
		`{"t":1000000000,"node":"a","event":"pps","seq":2,"syscount":125000000}`,
		`{"t":999990000,"node":"a","space":"reg_read"`,
		`{"t":3000000000,"node":"a","event":"pps","seq":4,"syscount":375000000}`,
		`{"t":3000000000,"node":"b","event":"pps","seq":4,"syscount":375000003}`,
	}
	if len(lines) != len(want) {
		t.Fatalf("%d lines, want %d:\n%s", len(lines), len(want), out.String())
	}
	for i := range want {
		if !strings.HasPrefix(lines[i], want[i]) {
			t.Errorf("line %d: %s\nwant it to start %s", i+1, lines[i], want[i])
		}
	}
	recs, err := Read(strings.NewReader(out.String()))
	if err != nil {
		t.Fatal(err)
	}
	if r := recs[1]; r.Event != EventPPS || r.Node != "a" || r.T != 1e9 || r.Seq != 2 || r.Syscount != 125000000 {
		t.Errorf("PPS record read back as %+v", r)
	}
	s := Summarise(recs)
	if s.Transactions != 2 || len(s.Nodes) != 2 {
		t.Fatalf("summary %+v", s)
	}
	if p := s.Nodes[0].PPS; p == nil || *p != (PPSSummary{Edges: 2, First: time.Second, Last: 3 * time.Second, FirstSeq: 2, LastSeq: 4, MeanInterval: 2 * time.Second}) {
		t.Errorf("node a PPS summary %+v", p)
	}
	if n := s.Nodes[1]; n.Node != "b" || n.Transactions != 0 || n.PPS == nil || n.PPS.Edges != 1 {
		t.Errorf("node b summary %+v", n)
	}
	var text bytes.Buffer
	if err := s.Write(&text); err != nil {
		t.Fatal(err)
	}
	if wantLine := "PPS: 2 edges (pulses 2 to 4), first at 1s, last at 3s, every 2s on average"; !strings.Contains(text.String(), wantLine) {
		t.Errorf("summary lacks %q:\n%s", wantLine, text.String())
	}
	if _, err := Read(strings.NewReader(`{"t":1,"node":"a","event":"irq","seq":1}` + "\n")); err == nil || !strings.Contains(err.Error(), `line 1: unknown event "irq"`) {
		t.Errorf("unknown event: %v", err)
	}
}
