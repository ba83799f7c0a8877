package fault

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestParseSpecGolden: the flag syntax of the brief and every kind.
func TestParseSpecGolden(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Spec
		out  string // String(); "" = in
	}{
		{"spi.timeout-before@a:p=0.05,start=1s,dur=2s,count=10",
			Spec{Layer: "spi", Kind: "timeout-before", Node: "a", Probability: 0.05, Start: time.Second, Duration: 2 * time.Second, Count: 10},
			"spi.timeout-before@a:p=0.05,count=10,start=1s,dur=2s"},
		{"cable.unplug:start=3s,dur=2s", Spec{Layer: "cable", Kind: "unplug", Start: 3 * time.Second, Duration: 2 * time.Second}, ""},
		{"irq.lost@b:p=0.5", Spec{Layer: "irq", Kind: "lost", Node: "b", Probability: 0.5}, ""},
		{"chip.clock-step@a:step=1ms,start=5s", Spec{Layer: "chip", Kind: "clock-step", Node: "a", Step: time.Millisecond, Start: 5 * time.Second},
			"chip.clock-step@a:start=5s,step=1ms"},
		{"chip.clock-step:step=-2ms", Spec{Layer: "chip", Kind: "clock-step", Step: -2 * time.Millisecond}, ""},
		{"spi.timeout-after@a:op=write,probability=1", Spec{Layer: "spi", Kind: "timeout-after", Node: "a", Op: "write", Probability: 1},
			"spi.timeout-after@a:p=1,op=write"},
		{"spi.latency:latency=200us,jitter=1ms,p=0.01", Spec{Layer: "spi", Kind: "latency", Latency: 200 * time.Microsecond, Jitter: time.Millisecond, Probability: 0.01},
			"spi.latency:p=0.01,latency=200µs,jitter=1ms"},
		{"spi.flip@b:bits=3", Spec{Layer: "spi", Kind: "flip", Node: "b", Bits: 3}, ""},
		{"spi.stuck:start=2s,duration=1s", Spec{Layer: "spi", Kind: "stuck", Start: 2 * time.Second, Duration: time.Second},
			"spi.stuck:start=2s,dur=1s"},
		{"irq.spurious@a:rate=50", Spec{Layer: "irq", Kind: "spurious", Node: "a", Rate: 50}, ""},
		{"irq.stuck:start=1s,dur=100ms", Spec{Layer: "irq", Kind: "stuck", Start: time.Second, Duration: 100 * time.Millisecond}, ""},
		{"chip.fifo-limit@b:rx-meta=2,host_frames=1", Spec{Layer: "chip", Kind: "fifo-limit", Node: "b", RxMeta: 2, HostFrames: 1},
			"chip.fifo-limit@b:host_frames=1,rx_meta=2"},
		{"chip.host-fifo-full:dur=1s", Spec{Layer: "chip", Kind: "host-fifo-full", Duration: time.Second}, ""},
		{"chip.clock-drift@a:ppm=-150.5", Spec{Layer: "chip", Kind: "clock-drift", Node: "a", PPM: -150.5}, ""},
		{"cable.loss@a:p=0.1,count=3", Spec{Layer: "cable", Kind: "loss", Node: "a", Probability: 0.1, Count: 3}, ""},
		{"cable.corrupt:bits=2", Spec{Layer: "cable", Kind: "corrupt", Bits: 2}, ""},
		{" cable.delay : latency=1ms , jitter=100us ", Spec{Layer: "cable", Kind: "delay", Latency: time.Millisecond, Jitter: 100 * time.Microsecond},
			"cable.delay:latency=1ms,jitter=100µs"},
		{"irq.lost", Spec{Layer: "irq", Kind: "lost"}, ""},
	} {
		got, err := ParseSpec(tc.in)
		if err != nil {
			t.Errorf("ParseSpec(%q): %v", tc.in, err)
			continue
		}
		if got != tc.want {
			t.Errorf("ParseSpec(%q) = %+v, want %+v", tc.in, got, tc.want)
		}
		out := tc.out
		if out == "" {
			out = tc.in
		}
		if got.String() != out {
			t.Errorf("String() = %q, want %q", got.String(), out)
		}
		if again, err := ParseSpec(got.String()); err != nil || again != got {
			t.Errorf("round trip of %q: %+v, %v", got.String(), again, err)
		}
	}
}

// TestParseSpecErrors: each bad flag gets an error naming the problem.
func TestParseSpecErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", "want LAYER.KIND"},
		{"spi", "want LAYER.KIND"},
		{"spi.", "want LAYER.KIND"},
		{"usb.lost", `unknown layer "usb"`},
		{"spi.explode", `unknown kind "explode" of layer spi (stuck, timeout-before`},
		{"irq.lost@", "empty node"},
		{"irq.lost@a b", "node"},
		{"irq.lost:p", `"p": want key=value`},
		{"irq.lost:p=0.1,", `"": want key=value`},
		{"irq.lost:colour=red", `unknown key "colour"`},
		{"irq.lost:p=0.1,probability=0.2", "p: given twice"},
		{"irq.lost:p=x", "irq.lost: p: strconv.ParseFloat"},
		{"irq.lost:p=1.5", "irq.lost: probability: 1.5 is not in [0, 1]"},
		{"irq.lost:start=-1s", "irq.lost: start: -1s is negative"},
		{"irq.lost:dur=soon", `irq.lost: dur: time: invalid duration "soon"`},
		{"irq.lost:count=-1", `irq.lost: count: "-1" is not a whole number`},
		{"irq.lost:p=0", "irq.lost: p: 0 would never inject"},
		{"irq.lost:latency=1ms", "irq.lost: latency: not a parameter of this kind (takes: none)"},
		{"cable.unplug:p=0.5,dur=1s", "cable.unplug: probability: not taken by a window or instant fault"},
		{"cable.unplug:count=2", "cable.unplug: count: not taken"},
		{"spi.stuck:start=1s", "spi.stuck: duration: required"},
		{"chip.clock-step:step=1ms,dur=1s", "chip.clock-step: duration: not taken"},
		{"chip.clock-step", "chip.clock-step: step: required"},
		{"chip.clock-drift:ppm=0", "chip.clock-drift: ppm: 0 is not in"},
		{"chip.clock-drift:ppm=200000", "chip.clock-drift: ppm: 200000 is not in"},
		{"chip.fifo-limit", "chip.fifo-limit: host_frames: one of host_frames, rx_words, rx_meta is required"},
		{"chip.fifo-limit:rx_meta=600", "chip.fifo-limit: rx_meta: 600 is not in [0, 511]"},
		{"spi.latency", "spi.latency: latency: required"},
		{"spi.latency:latency=-1ms", "spi.latency: latency: -1ms is negative"},
		{"spi.latency:latency=1ms,op=erase", `spi.latency: op: "erase" is not read or write`},
		{"spi.timeout-before:op=erase", `spi.timeout-before: op: "erase"`},
		{"spi.flip:bits=-1", "spi.flip: bits: -1 is not in"},
		{"spi.flip:op=read", "spi.flip: op: not a parameter of this kind (takes: bits)"},
		{"irq.spurious", "irq.spurious: rate: 0 is not in (0, 1000000]"},
		{"cable.delay:jitter=-1s", "cable.delay: jitter: -1s is negative"},
	} {
		_, err := ParseSpec(tc.in)
		if err == nil {
			t.Errorf("ParseSpec(%q) accepted", tc.in)
			continue
		}
		if !strings.HasPrefix(err.Error(), "fault: ") || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseSpec(%q): %q, want it to contain %q", tc.in, err, tc.want)
		}
	}
}

// TestSpecList: the repeatable --fault flag value.
func TestSpecList(t *testing.T) {
	var l SpecList
	for _, s := range []string{"irq.lost@b:p=0.5", "cable.unplug:start=3s,dur=2s"} {
		if err := l.Set(s); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Set("cable.unplug:p=1"); err == nil {
		t.Error("bad spec accepted")
	}
	if len(l) != 2 || l.String() != "irq.lost@b:p=0.5 cable.unplug:start=3s,dur=2s" || l.Type() != "fault" {
		t.Errorf("list %v %q", l, l.String())
	}
}

const goldenPlan = `{
  "seed": 1,
  "faults": [
    {"layer": "spi", "kind": "timeout-after", "node": "a", "start": "1s", "duration": "2s", "probability": 0.05, "count": 10},
    {"layer": "cable", "kind": "unplug", "start": "3s", "duration": "2s"},
    {"layer": "chip", "kind": "fifo-limit", "node": "b", "rx_meta": 4, "rx_words": 100},
    {"layer": "spi", "kind": "latency", "latency": "250us", "jitter": "1ms", "op": "read"},
    {"layer": "chip", "kind": "clock-drift", "ppm": 50},
    {"layer": "irq", "kind": "spurious", "rate": 10.5}
  ]
}
`

// TestParsePlanGolden: the documented plan format, and JSON round trip.
func TestParsePlanGolden(t *testing.T) {
	p, err := ParsePlan([]byte(goldenPlan))
	if err != nil {
		t.Fatal(err)
	}
	want := Plan{Seed: 1, Faults: []Spec{
		{Layer: "spi", Kind: "timeout-after", Node: "a", Start: time.Second, Duration: 2 * time.Second, Probability: 0.05, Count: 10},
		{Layer: "cable", Kind: "unplug", Start: 3 * time.Second, Duration: 2 * time.Second},
		{Layer: "chip", Kind: "fifo-limit", Node: "b", RxMeta: 4, RxWords: 100},
		{Layer: "spi", Kind: "latency", Latency: 250 * time.Microsecond, Jitter: time.Millisecond, Op: "read"},
		{Layer: "chip", Kind: "clock-drift", PPM: 50},
		{Layer: "irq", Kind: "spurious", Rate: 10.5},
	}}
	if !reflect.DeepEqual(p, want) {
		t.Errorf("plan %+v\nwant %+v", p, want)
	}
	out, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), `"start":"1s","duration":"2s"`) {
		t.Errorf("durations not written as Go duration strings: %s", out)
	}
	again, err := ParsePlan(out)
	if err != nil || !reflect.DeepEqual(again, want) {
		t.Errorf("round trip: %+v, %v", again, err)
	}
	path := filepath.Join(t.TempDir(), "plan.json")
	if err := os.WriteFile(path, []byte(goldenPlan), 0o644); err != nil {
		t.Fatal(err)
	}
	if p, err := LoadPlan(path); err != nil || !reflect.DeepEqual(p, want) {
		t.Errorf("LoadPlan: %+v, %v", p, err)
	}
	if _, err := LoadPlan(filepath.Join(t.TempDir(), "missing.json")); err == nil || !strings.HasPrefix(err.Error(), "fault: plan: ") {
		t.Errorf("LoadPlan of a missing file: %v", err)
	}
}

// TestParsePlanErrors: unknown fields and kinds, bad durations, invalid
// specs and trailing data are errors naming the fault and field.
func TestParsePlanErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`{"seed": 1, "faults": [], "extra": 1}`, `unknown field "extra"`},
		{`{"seed": 1, "faults": [{"layer": "spi", "kind": "flip", "colour": "red"}]}`, `faults[0]: json: unknown field "colour"`},
		{`{"faults": [{"layer": "irq", "kind": "lost"}, {"layer": "spi", "kind": "melt"}]}`, `faults[1]: fault: unknown kind "melt"`},
		{`{"faults": [{"layer": "irq", "kind": "lost", "start": "soon"}]}`, `faults[0]: start: time: invalid duration "soon"`},
		{`{"faults": [{"layer": "irq", "kind": "lost", "start": 1}]}`, `faults[0]: json: cannot unmarshal number`},
		{`{"faults": [{"layer": "cable", "kind": "unplug", "probability": 0.5}]}`, `faults[0]: fault: cable.unplug: probability: not taken`},
		{`{"faults": []} {}`, "trailing data"},
		{`{"faults": [`, "unexpected EOF"},
		{`[]`, "cannot unmarshal array"},
	} {
		_, err := ParsePlan([]byte(tc.in))
		if err == nil {
			t.Errorf("ParsePlan(%s) accepted", tc.in)
			continue
		}
		if !strings.HasPrefix(err.Error(), "fault: plan: ") || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParsePlan(%s): %q, want it to contain %q", tc.in, err, tc.want)
		}
	}
}

// TestKinds: every kind is documented and its parameters exist.
func TestKinds(t *testing.T) {
	if n := len(Kinds()); n != 16 {
		t.Errorf("%d kinds, want 16", n)
	}
	doc, err := os.ReadFile("../docs/faults.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range kinds {
		if k.doc == "" {
			t.Errorf("%s has no doc", k.name())
		}
		if !strings.Contains(string(doc), "`"+k.name()+"`") {
			t.Errorf("%s is not in docs/faults.md", k.name())
		}
		for _, p := range k.params {
			if findParam(p) == nil {
				t.Errorf("%s takes unknown parameter %s", k.name(), p)
			}
		}
	}
}
