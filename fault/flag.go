package fault

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// param is one key=value of the flag syntax (and a JSON field of the same
// name): how to set it from text and how to print it ("" when unset).
type param struct {
	name  string
	alias string
	set   func(s *Spec, v string) error
	get   func(s *Spec) string
}

// common are the keys every kind takes; params the kind parameters.
var (
	common = []param{
		{name: "p", alias: "probability", set: setFloat(func(s *Spec) *float64 { return &s.Probability }),
			get: getFloat(func(s *Spec) float64 { return s.Probability })},
		{name: "count", set: func(s *Spec, v string) error {
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				return fmt.Errorf("%q is not a whole number of injections (0 or omitted: no limit)", v)
			}
			s.Count = n
			return nil
		}, get: func(s *Spec) string { return fmtUint(s.Count) }},
		{name: "start", set: setDur(func(s *Spec) *time.Duration { return &s.Start }),
			get: getDur(func(s *Spec) time.Duration { return s.Start })},
		{name: "dur", alias: "duration", set: setDur(func(s *Spec) *time.Duration { return &s.Duration }),
			get: getDur(func(s *Spec) time.Duration { return s.Duration })},
	}
	params = []param{
		{name: "op", set: func(s *Spec, v string) error { s.Op = v; return nil }, get: func(s *Spec) string { return s.Op }},
		{name: "latency", set: setDur(func(s *Spec) *time.Duration { return &s.Latency }),
			get: getDur(func(s *Spec) time.Duration { return s.Latency })},
		{name: "jitter", set: setDur(func(s *Spec) *time.Duration { return &s.Jitter }),
			get: getDur(func(s *Spec) time.Duration { return s.Jitter })},
		{name: "bits", set: setInt(func(s *Spec) *int { return &s.Bits }), get: getInt(func(s *Spec) int { return s.Bits })},
		{name: "ppm", set: setFloat(func(s *Spec) *float64 { return &s.PPM }), get: getFloat(func(s *Spec) float64 { return s.PPM })},
		{name: "step", set: setDur(func(s *Spec) *time.Duration { return &s.Step }),
			get: getDur(func(s *Spec) time.Duration { return s.Step })},
		{name: "rate", set: setFloat(func(s *Spec) *float64 { return &s.Rate }), get: getFloat(func(s *Spec) float64 { return s.Rate })},
		{name: "host_frames", set: setInt(func(s *Spec) *int { return &s.HostFrames }),
			get: getInt(func(s *Spec) int { return s.HostFrames })},
		{name: "rx_words", set: setInt(func(s *Spec) *int { return &s.RxWords }),
			get: getInt(func(s *Spec) int { return s.RxWords })},
		{name: "rx_meta", set: setInt(func(s *Spec) *int { return &s.RxMeta }),
			get: getInt(func(s *Spec) int { return s.RxMeta })},
	}
)

func setDur(f func(*Spec) *time.Duration) func(*Spec, string) error {
	return func(s *Spec, v string) error {
		d, err := time.ParseDuration(v)
		*f(s) = d
		return err
	}
}

func getDur(f func(*Spec) time.Duration) func(*Spec) string {
	return func(s *Spec) string {
		if d := f(s); d != 0 {
			return d.String()
		}
		return ""
	}
}

func setFloat(f func(*Spec) *float64) func(*Spec, string) error {
	return func(s *Spec, v string) error {
		x, err := strconv.ParseFloat(v, 64)
		*f(s) = x
		return err
	}
}

func getFloat(f func(*Spec) float64) func(*Spec) string {
	return func(s *Spec) string {
		if x := f(s); x != 0 {
			return strconv.FormatFloat(x, 'g', -1, 64)
		}
		return ""
	}
}

func setInt(f func(*Spec) *int) func(*Spec, string) error {
	return func(s *Spec, v string) error {
		n, err := strconv.Atoi(v)
		*f(s) = n
		return err
	}
}

func getInt(f func(*Spec) int) func(*Spec) string {
	return func(s *Spec) string {
		if n := f(s); n != 0 {
			return strconv.Itoa(n)
		}
		return ""
	}
}

func fmtUint(n uint64) string {
	if n == 0 {
		return ""
	}
	return strconv.FormatUint(n, 10)
}

func findParam(key string) *param {
	key = strings.ReplaceAll(key, "-", "_")
	for _, list := range [][]param{common, params} {
		for i := range list {
			if p := &list[i]; p.name == key || (p.alias != "" && p.alias == key) {
				return p
			}
		}
	}
	return nil
}

// ErrZeroProbability is the error for an explicit probability of 0: it
// would never inject, and an omitted probability means every event.
var ErrZeroProbability = errors.New("0 would never inject: omit p to inject at every event, or leave the fault out")

// ParseSpec parses the compact flag syntax of --fault:
//
//	LAYER.KIND[@NODE][:key=value,...]
//
// for example "spi.timeout-before@a:p=0.05,start=1s,dur=2s,count=10",
// "cable.unplug:start=3s,dur=2s", "irq.lost@b:p=0.5",
// "chip.clock-step@a:step=1ms,start=5s". Keys: p (or probability), count,
// start, dur (or duration), and the kind parameters op, latency, jitter,
// bits, ppm, step, rate, host_frames, rx_words, rx_meta ("-" may stand for
// "_"). Durations are Go duration strings. Without p the fault hits
// every event; p=0 is an error (ErrZeroProbability). The spec is
// validated.
func ParseSpec(text string) (Spec, error) {
	var s Spec
	head, opts, hasOpts := strings.Cut(strings.TrimSpace(text), ":")
	name, node, hasNode := strings.Cut(head, "@")
	layer, kind, ok := strings.Cut(name, ".")
	if !ok || layer == "" || kind == "" {
		return Spec{}, fmt.Errorf("fault: %q: want LAYER.KIND[@NODE][:key=value,...]", text)
	}
	if hasNode && node == "" {
		return Spec{}, fmt.Errorf("fault: %q: empty node after @", text)
	}
	s.Layer, s.Kind, s.Node = strings.TrimSpace(layer), strings.TrimSpace(kind), strings.TrimSpace(node)
	layer, kind = s.Layer, s.Kind
	if _, err := lookup(layer, kind); err != nil {
		return Spec{}, err
	}
	if hasOpts {
		seen := map[string]bool{}
		for _, kv := range strings.Split(opts, ",") {
			key, val, ok := strings.Cut(kv, "=")
			key, val = strings.TrimSpace(key), strings.TrimSpace(val)
			if !ok || key == "" {
				return Spec{}, fmt.Errorf("fault: %s: %q: want key=value", s.Name(), kv)
			}
			p := findParam(key)
			if p == nil {
				return Spec{}, fmt.Errorf("fault: %s: unknown key %q", s.Name(), key)
			}
			if seen[p.name] {
				return Spec{}, fmt.Errorf("fault: %s: %s: given twice", s.Name(), p.name)
			}
			seen[p.name] = true
			if err := p.set(&s, val); err != nil {
				return Spec{}, fmt.Errorf("fault: %s: %s: %w", s.Name(), p.name, err)
			}
			if p.name == "p" && s.Probability == 0 {
				return Spec{}, fmt.Errorf("fault: %s: p: %w", s.Name(), ErrZeroProbability)
			}
		}
	}
	if err := s.Validate(); err != nil {
		return Spec{}, err
	}
	return s, nil
}

// String formats the spec in the flag syntax; ParseSpec(s.String())
// returns s for a valid spec.
func (s Spec) String() string {
	var b strings.Builder
	b.WriteString(s.Name())
	if s.Node != "" {
		b.WriteString("@" + s.Node)
	}
	sep := ":"
	for _, list := range [][]param{common, params} {
		for _, p := range list {
			if v := p.get(&s); v != "" {
				b.WriteString(sep + p.name + "=" + v)
				sep = ","
			}
		}
	}
	return b.String()
}

// SpecList is a repeatable --fault flag: each Set parses one spec with
// ParseSpec. It implements pflag.Value (and flag.Value).
type SpecList []Spec

// Set parses and appends one spec.
func (l *SpecList) Set(text string) error {
	s, err := ParseSpec(text)
	if err != nil {
		return err
	}
	*l = append(*l, s)
	return nil
}

// String lists the specs in the flag syntax, space-separated.
func (l *SpecList) String() string {
	if l == nil {
		return ""
	}
	var parts []string
	for _, s := range *l {
		parts = append(parts, s.String())
	}
	return strings.Join(parts, " ")
}

// Type names the flag's value type for help output.
func (l *SpecList) Type() string { return "fault" }
