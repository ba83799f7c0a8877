package driver

import (
	"strings"
	"testing"
	"time"

	"tsnsim/chip/proto"
)

// schedule3 is the schedule: 1 ms cycle, class 3 open 0-100 us,
// the others 100-1000 us; priority 3 (gPTP) to class 3.
const schedule3 = "num_tc 4 map 0 1 2 3 0 1 2 0 base-time 0 sched-entry S 08 100000 sched-entry S 07 900000"

func TestParseTaprio(t *testing.T) {
	tp, err := ParseTaprio(schedule3 + " fail-policy 3 retry clockid CLOCK_TAI")
	if err != nil {
		t.Fatal(err)
	}
	if tp.NumTC != 4 || tp.CycleTime != time.Millisecond || len(tp.Entries) != 2 ||
		tp.Entries[0] != (GateEntry{0x08, 100 * time.Microsecond}) || tp.Map[3] != 3 || tp.Map[8] != 0 ||
		tp.FailPolicy[3] != proto.FailRetry || tp.Horizon != 10*time.Millisecond {
		t.Errorf("parsed %+v", tp)
	}
	again, err := ParseTaprio(tp.String())
	if err != nil || again.String() != tp.String() {
		t.Errorf("round trip: %v\n%s\n%s", err, tp, again)
	}
	for _, bad := range []string{
		"", "map 0 1", "num_tc 9 sched-entry S 1 1000", "num_tc 2 map 0 2 sched-entry S 1 1000",
		"num_tc 2 sched-entry S 04 1000", "num_tc 2 sched-entry S 1 0", "num_tc 2 sched-entry R 1 100",
		"num_tc 2 queues 1@0 1@1 sched-entry S 1 100", "num_tc 2 sched-entry S 1 100 clockid CLOCK_REALTIME",
		"num_tc 2 sched-entry S 1 100 cycle-time 50", "num_tc 2 sched-entry S 1 100 bogus",
		"num_tc 2 sched-entry S 1 100 fail-policy 1 maybe",
	} {
		if _, err := ParseTaprio(bad); err == nil || !strings.HasPrefix(err.Error(), "taprio: ") {
			t.Errorf("%q: err %v", bad, err)
		}
	}
}

// TestTaprioWindow: hand-computed windows of the schedule. A
// 100-byte frame with FCS occupies (8+104)*80 = 8960 ns of line.
func TestTaprioWindow(t *testing.T) {
	tp, err := ParseTaprio(schedule3)
	if err != nil {
		t.Fatal(err)
	}
	const us = int64(time.Microsecond)
	const w = 8960
	for _, tc := range []struct {
		name           string
		class          int
		earliest       int64
		from, to, shut int64
		ok             bool
	}{
		{"class 3 at the cycle start", 3, 0, 0, 100*us - w, 100 * us, true},
		{"class 3 inside", 3, 50 * us, 50 * us, 100*us - w, 100 * us, true},
		{"class 3 too late to fit: next cycle", 3, 100*us - w + 1, 1000 * us, 1100*us - w, 1100 * us, true},
		{"class 0 before its gate", 0, 10 * us, 100 * us, 1000*us - w, 1000 * us, true},
		{"class 0 fits exactly", 0, 1000*us - w, 1000*us - w, 1000*us - w, 1000 * us, true},
		{"class 0 one ns late: next cycle", 0, 1000*us - w + 1, 1100 * us, 2000*us - w, 2000 * us, true},
		{"before the base time (cycles extend back)", 3, -1500 * us, -1000 * us, -900*us - w, -900 * us, true},
		{"class 5 has no gate", 5, 0, 0, 0, 0, false},
	} {
		from, to, shut, ok := tp.window(tc.class, tc.earliest, w, tc.earliest+int64(tp.Horizon))
		if ok != tc.ok || ok && (from != tc.from || to != tc.to || shut != tc.shut) {
			t.Errorf("%s: (%d, %d, %d, %v), want (%d, %d, %d, %v)", tc.name, from, to, shut, ok, tc.from, tc.to, tc.shut, tc.ok)
		}
	}
	// Beyond the horizon: nothing.
	if _, _, _, ok := tp.window(3, 150*us, w, 500*us); ok {
		t.Error("window found beyond the horizon")
	}
	// Intervals merge across entries and cycles: gates always open for
	// class 0 give one interval, capped at the horizon.
	open, _ := ParseTaprio("num_tc 1 sched-entry S 1 300 sched-entry S 1 700")
	if from, to, _, ok := open.window(0, 5, w, 5+10_000_000); !ok || from != 5 || to != 10_000_005 {
		t.Errorf("always open: %d %d %v", from, to, ok)
	}
	// A gap longer than the frame can never fit.
	tiny, _ := ParseTaprio("num_tc 2 sched-entry S 1 5000 sched-entry S 2 995000")
	if _, _, _, ok := tiny.window(0, 0, w, int64(tiny.Horizon)); ok {
		t.Error("frame fitted a 5 us interval")
	}
}

func TestClassify(t *testing.T) {
	frame := func(et ...byte) []byte {
		f := make([]byte, 60)
		copy(f[12:], et)
		return f
	}
	for _, tc := range []struct {
		name string
		f    []byte
		prio int
		meta uint8
	}{
		{"untagged IPv4", frame(0x08, 0x00), 0, 7},
		{"gPTP", frame(0x88, 0xf7), 3, 3},
		{"VLAN PCP 5", frame(0x81, 0x00, 0xa0, 0x01, 0x08, 0x00), 5, 5},
		{"VLAN PCP 2", frame(0x81, 0x00, 0x40, 0x01, 0x08, 0x00), 2, 5},
		{"tagged gPTP", frame(0x81, 0x00, 0xe0, 0x01, 0x88, 0xf7), 3, 3},
		{"runt", []byte{1, 2, 3}, 0, 7},
	} {
		if p, m := Classify(tc.f); p != tc.prio || m != tc.meta {
			t.Errorf("%s: %d/%d, want %d/%d", tc.name, p, m, tc.prio, tc.meta)
		}
	}
	sync := frame(0x88, 0xf7, 0x10)
	fup := frame(0x88, 0xf7, 0x18)
	if !IsPTPEvent(sync) || IsPTPEvent(fup) || IsPTPEvent(frame(0x08, 0x00)) {
		t.Error("IsPTPEvent")
	}
}
