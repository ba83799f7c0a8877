package fault

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"
)

// Plan is a fault-plan file: the seed of the run's randomness and the
// faults to add at start.
//
//	{"seed": 1, "faults": [
//	  {"layer": "spi", "kind": "timeout-after", "node": "a",
//	   "start": "1s", "duration": "2s", "probability": 0.05, "count": 10},
//	  {"layer": "cable", "kind": "unplug", "start": "3s", "duration": "2s"}]}
//
// Durations are Go duration strings. Unknown fields, unknown kinds and
// invalid specs are errors.
type Plan struct {
	Seed   int64  `json:"seed"`
	Faults []Spec `json:"faults"`
}

// MaxPlanSize bounds a plan file.
const MaxPlanSize = 1 << 20

// LoadPlan reads and parses a plan file.
func LoadPlan(path string) (Plan, error) {
	f, err := os.Open(path)
	if err != nil {
		return Plan{}, fmt.Errorf("fault: plan: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxPlanSize+1))
	if err != nil {
		return Plan{}, fmt.Errorf("fault: plan %s: %w", path, err)
	}
	if len(data) > MaxPlanSize {
		return Plan{}, fmt.Errorf("fault: plan %s: larger than %d bytes", path, MaxPlanSize)
	}
	p, err := ParsePlan(data)
	if err != nil {
		return Plan{}, fmt.Errorf("%w (in %s)", err, path)
	}
	return p, nil
}

// ParsePlan parses a plan and validates every spec; errors name the
// fault by index (faults[2]) and the field.
func ParsePlan(data []byte) (Plan, error) {
	var raw struct {
		Seed   int64             `json:"seed"`
		Faults []json.RawMessage `json:"faults"`
	}
	if err := strictDecode(data, &raw); err != nil {
		return Plan{}, fmt.Errorf("fault: plan: %w", err)
	}
	p := Plan{Seed: raw.Seed}
	for i, r := range raw.Faults {
		var s Spec
		if err := s.UnmarshalJSON(r); err != nil {
			return Plan{}, fmt.Errorf("fault: plan: faults[%d]: %w", i, err)
		}
		if err := s.Validate(); err != nil {
			return Plan{}, fmt.Errorf("fault: plan: faults[%d]: %w", i, err)
		}
		p.Faults = append(p.Faults, s)
	}
	return p, nil
}

// strictDecode decodes exactly one JSON value, refusing unknown fields
// and trailing data.
func strictDecode(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("trailing data after the JSON value")
	}
	return nil
}

// specJSON is the JSON form of a Spec: durations as Go duration strings,
// parameter names as in the flag syntax.
type specJSON struct {
	Layer       string   `json:"layer"`
	Kind        string   `json:"kind"`
	Node        string   `json:"node,omitempty"`
	Start       string   `json:"start,omitempty"`
	Duration    string   `json:"duration,omitempty"`
	Probability *float64 `json:"probability,omitempty"`
	Count       uint64   `json:"count,omitempty"`
	Op          string   `json:"op,omitempty"`
	Latency     string   `json:"latency,omitempty"`
	Jitter      string   `json:"jitter,omitempty"`
	Bits        int      `json:"bits,omitempty"`
	PPM         float64  `json:"ppm,omitempty"`
	Step        string   `json:"step,omitempty"`
	Rate        float64  `json:"rate,omitempty"`
	HostFrames  int      `json:"host_frames,omitempty"`
	RxWords     int      `json:"rx_words,omitempty"`
	RxMeta      int      `json:"rx_meta,omitempty"`
}

// MarshalJSON writes the spec with durations as Go duration strings.
func (s Spec) MarshalJSON() ([]byte, error) {
	d := func(v time.Duration) string {
		if v == 0 {
			return ""
		}
		return v.String()
	}
	var p *float64
	if s.Probability != 0 {
		p = &s.Probability
	}
	return json.Marshal(specJSON{
		Layer: s.Layer, Kind: s.Kind, Node: s.Node, Start: d(s.Start), Duration: d(s.Duration),
		Probability: p, Count: s.Count, Op: s.Op, Latency: d(s.Latency), Jitter: d(s.Jitter),
		Bits: s.Bits, PPM: s.PPM, Step: d(s.Step), Rate: s.Rate,
		HostFrames: s.HostFrames, RxWords: s.RxWords, RxMeta: s.RxMeta,
	})
}

// UnmarshalJSON reads a spec, refusing unknown fields. It does not
// validate; ParsePlan and Injector.Add do.
func (s *Spec) UnmarshalJSON(data []byte) error {
	var j specJSON
	if err := strictDecode(data, &j); err != nil {
		return err
	}
	if j.Probability != nil && *j.Probability == 0 {
		return fmt.Errorf("probability: %w", ErrZeroProbability)
	}
	out := Spec{Layer: j.Layer, Kind: j.Kind, Node: j.Node, Count: j.Count,
		Op: j.Op, Bits: j.Bits, PPM: j.PPM, Rate: j.Rate, HostFrames: j.HostFrames, RxWords: j.RxWords, RxMeta: j.RxMeta}
	for _, f := range []struct {
		name string
		text string
		dst  *time.Duration
	}{{"start", j.Start, &out.Start}, {"duration", j.Duration, &out.Duration}, {"latency", j.Latency, &out.Latency},
		{"jitter", j.Jitter, &out.Jitter}, {"step", j.Step, &out.Step}} {
		if f.text == "" {
			continue
		}
		d, err := time.ParseDuration(f.text)
		if err != nil {
			return fmt.Errorf("%s: %w", f.name, err)
		}
		*f.dst = d
	}
	if j.Probability != nil {
		out.Probability = *j.Probability
	}
	*s = out
	return nil
}
