package gotrace

import (
	"bytes"
	"context"
	rtrace "runtime/trace"
	"strings"
	"testing"
	"time"

	"golang.org/x/exp/trace"

	"tsnsim/spibridge"
)

const us = trace.Time(time.Microsecond)

// TestCause: each cause from a goroutine's events before a late wake-up.
// The wait is logged at 1000 µs, 60 µs late after a 50 µs wait: the
// stretch looked at starts at 880 µs.
func TestCause(t *testing.T) {
	const g, other = trace.GoID(7), trace.GoID(8)
	w := wait{at: 1000 * us, g: g, late: 60 * time.Microsecond, dur: 50 * time.Microsecond}
	running := transition{at: 100 * us, from: trace.GoRunnable, to: trace.GoRunning, proc: 0}
	for _, tc := range []struct {
		name   string
		trs    []transition
		starts map[trace.ProcID][]start
		want   string
	}{
		{"timerfd", []transition{running, {at: 890 * us, to: trace.GoWaiting, reason: "network"}, {at: 995 * us, to: trace.GoRunnable}, {at: 998 * us, to: trace.GoRunning}}, nil, CauseTimer},
		{"other wait", []transition{running, {at: 890 * us, to: trace.GoWaiting, reason: "sleep"}, {at: 998 * us, to: trace.GoRunning}}, nil, "blocked (sleep), woken late"},
		{"yielded, others ran", []transition{running, {at: 900 * us, from: trace.GoRunning, to: trace.GoRunnable, reason: "runtime.Gosched", proc: 1}, {at: 990 * us, to: trace.GoRunning, proc: 1}},
			map[trace.ProcID][]start{1: {{at: 901 * us, g: other}, {at: 990 * us, g: g}}}, CauseYieldedOthers},
		{"yielded, others ran elsewhere", []transition{running, {at: 900 * us, from: trace.GoRunning, to: trace.GoRunnable, reason: "runtime.Gosched", proc: 1}, {at: 990 * us, to: trace.GoRunning, proc: 1}},
			map[trace.ProcID][]start{0: {{at: 901 * us, g: other}}, 1: {{at: 990 * us, g: g}}}, CauseYieldedOff},
		{"running throughout", []transition{running}, nil, CauseRunningOff},
		{"short gaps, then a long running one", []transition{running, {at: 890 * us, from: trace.GoRunning, to: trace.GoRunnable, proc: 0}, {at: 891 * us, to: trace.GoRunning, proc: 0}}, nil, CauseRunningOff},
		{"woken, not yet running", []transition{running, {at: 885 * us, from: trace.GoRunning, to: trace.GoWaiting, reason: "network"}, {at: 890 * us, from: trace.GoWaiting, to: trace.GoRunnable, proc: 1}, {at: 999 * us, to: trace.GoRunning, proc: 0}}, nil, CauseWoken},
		{"syscall", []transition{running, {at: 900 * us, to: trace.GoSyscall}, {at: 999 * us, to: trace.GoRunning}}, nil, CauseSyscall},
		{"no state", nil, nil, CauseUnknown},
	} {
		h := &history{goroutines: map[trace.GoID][]transition{g: tc.trs}, starts: tc.starts}
		if got := h.cause(w); got != tc.want {
			t.Errorf("%s: cause %q, want %q", tc.name, got, tc.want)
		}
	}
}

// TestAnalyse: a real execution trace with logged waits, some late, is
// counted and every late one explained; a wait with a malformed message
// fails the analysis.
func TestAnalyse(t *testing.T) {
	var buf bytes.Buffer
	if err := rtrace.Start(&buf); err != nil {
		t.Skipf("cannot trace (is the test itself traced?): %v", err)
	}
	ctx := context.Background()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 20 {
			time.Sleep(100 * time.Microsecond)
			late := 5 * time.Microsecond
			if i%4 == 0 {
				late = 200 * time.Microsecond
			}
			rtrace.Logf(ctx, spibridge.WaitLogCategory, "late_ns=%d wait_ns=%d", late, 100*time.Microsecond)
		}
		rtrace.Log(ctx, "other.category", "late_ns=1 wait_ns=1")
	}()
	<-done
	rtrace.Stop()
	raw := buf.Bytes()

	rep, err := Analyse(bytes.NewReader(raw), DefaultThreshold)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Waits != 20 || rep.Late != 5 || rep.Threshold != DefaultThreshold {
		t.Fatalf("report %+v, want 20 waits, 5 late", rep)
	}
	n := 0
	for _, c := range rep.Causes {
		n += c.Waits
		if c.LateP50 != 200*time.Microsecond || c.LateMax != 200*time.Microsecond {
			t.Errorf("cause %+v: want p50 and max 200µs", c)
		}
	}
	if n != 5 {
		t.Errorf("causes %+v explain %d waits, want 5", rep.Causes, n)
	}
	var text bytes.Buffer
	if err := rep.Write(&text); err != nil {
		t.Fatal(err)
	}
	if want := "20 SPI bus waits, 5 ended more than 40µs after their end (25.00%)"; !strings.Contains(text.String(), want) {
		t.Errorf("text lacks %q:\n%s", want, text.String())
	}

	if _, err := Analyse(strings.NewReader(`{"t":0}`), DefaultThreshold); err == nil || !strings.Contains(err.Error(), "not a Go execution trace") {
		t.Errorf("an SPI trace line analysed: %v", err)
	}
}

// TestAnalyseBadMessage: a spibridge.wait event that is not
// "late_ns=L wait_ns=W" is an error, not a silent zero.
func TestAnalyseBadMessage(t *testing.T) {
	var buf bytes.Buffer
	if err := rtrace.Start(&buf); err != nil {
		t.Skipf("cannot trace (is the test itself traced?): %v", err)
	}
	rtrace.Log(context.Background(), spibridge.WaitLogCategory, "late=soon")
	rtrace.Stop()
	if _, err := Analyse(&buf, DefaultThreshold); err == nil || !strings.Contains(err.Error(), `"late=soon"`) {
		t.Errorf("malformed wait event: %v", err)
	}
}

// TestAnalyseCut: a trace cut short, as a killed process leaves it, is
// reported as far as it reads, saying it ends early; cut before any
// event, it is an error.
func TestAnalyseCut(t *testing.T) {
	var buf bytes.Buffer
	if err := rtrace.Start(&buf); err != nil {
		t.Skipf("cannot trace (is the test itself traced?): %v", err)
	}
	ctx := context.Background()
	logWaits := func(n int) {
		for range n {
			rtrace.Logf(ctx, spibridge.WaitLogCategory, "late_ns=%d wait_ns=%d", 100*time.Microsecond, 50*time.Microsecond)
		}
	}
	logWaits(10)
	time.Sleep(1200 * time.Millisecond) // the tracer starts a new generation every second
	logWaits(10)
	rtrace.Stop()
	raw := buf.Bytes()
	whole, err := Analyse(bytes.NewReader(raw), DefaultThreshold)
	if err != nil || whole.Waits != 20 || whole.Incomplete != "" {
		t.Fatalf("whole trace: %+v, %v", whole, err)
	}
	cut, err := Analyse(bytes.NewReader(raw[:len(raw)-100]), DefaultThreshold)
	if err != nil || cut.Incomplete == "" || cut.Waits < 10 || cut.Waits >= 20 {
		t.Errorf("cut trace: %+v, %v; want the first generation's 10 waits or more, and Incomplete", cut, err)
	}
	var text bytes.Buffer
	if err := cut.Write(&text); err != nil || !strings.Contains(text.String(), "the trace ends early") {
		t.Errorf("text of a cut trace: %v\n%s", err, text.String())
	}
	if _, err := Analyse(bytes.NewReader(raw[:64]), DefaultThreshold); err == nil {
		t.Error("a trace cut before any event analysed without an error")
	}
}
