// Package fault injects faults into every layer of a tsnsim topology: the
// SPI bus, the interrupt line, the chip (FIFO capacities, the SYSCOUNT
// clock) and the cable. A fault is described by a Spec (layer, kind,
// node, time window, probability, count and kind parameters); specs come
// from a plan file (ParsePlan, LoadPlan), from --fault flags (ParseSpec)
// or from a control socket while running (ServeControl, Control).
//
// An Injector holds the specs and implements the hooks of the layers
// (spibridge.SPIFaults, spibridge.IRQFaults, cable.Faults) and drives the
// chip's setters with timers. All randomness comes from one seed, with an
// independent stream per fault and node, so a run in virtual time
// (testing/synctest) makes the same decisions every time. Every injected
// fault is counted (Counts) and logged at debug level with its emulated
// time. docs/faults.md describes every kind.
package fault

import (
	"fmt"
	"math"
	"strings"
	"time"

	"tsnsim/chip"
)

// Layers.
const (
	LayerSPI   = "spi"
	LayerIRQ   = "irq"
	LayerChip  = "chip"
	LayerCable = "cable"
)

// Spec describes one fault. Times are emulated, from the injector's
// epoch. Which parameters a kind takes is in the kinds table (Kinds) and
// docs/faults.md; parameters a kind does not take must be zero.
type Spec struct {
	Layer string // spi, irq, chip, cable
	Kind  string // e.g. timeout-before; see Kinds
	// Node restricts the fault to one node ("a", "b"); "" is every node.
	// For the cable, the node is the sender: "a" = frames sent by a.
	Node string
	// Start is when the fault becomes active; Duration how long it stays
	// (0: until removed). Instant kinds (chip.clock-step) happen at Start
	// and take no Duration.
	Start, Duration time.Duration
	// Probability is the chance that an event (a transfer, an edge, a
	// frame, a spurious-edge candidate) gets the fault; 0 (omitted) means
	// 1, every event: the flag syntax and plans refuse an explicit 0
	// (ErrZeroProbability). Event kinds only.
	Probability float64
	// Count is at most this many injections per node; 0 is no limit.
	// Event kinds only.
	Count uint64

	Op         string        // spi: "read" or "write" transfers only; "" any
	Latency    time.Duration // spi.latency, cable.delay: added delay
	Jitter     time.Duration // spi.latency, cable.delay: plus uniform [0, Jitter]
	Bits       int           // spi.flip, cable.corrupt: bits to flip (0: 1)
	PPM        float64       // chip.clock-drift: drift while active
	Step       time.Duration // chip.clock-step: SYSCOUNT jump (negative: backwards)
	Rate       float64       // irq.spurious: candidate edges per second
	HostFrames int           // chip.fifo-limit: host TX FIFO cap, frames (0: unchanged)
	RxWords    int           // chip.fifo-limit: RX frame FIFO cap, 16-byte words (0: unchanged)
	RxMeta     int           // chip.fifo-limit: RX metadata FIFO cap, entries (0: unchanged)
}

// Name is the spec's "layer.kind".
func (s Spec) Name() string { return s.Layer + "." + s.Kind }

// shape says how a kind uses time.
type shape int

const (
	event   shape = iota // decided per event: probability and count apply
	window               // active from Start for Duration: no probability or count
	instant              // happens once at Start: no Duration, probability or count
)

// kindInfo is one row of the kinds table.
type kindInfo struct {
	layer, kind string
	shape       shape
	needDur     bool     // Duration must be > 0
	params      []string // kind parameters taken (names as in the flag syntax)
	check       func(s *Spec) error
	doc         string
}

func (k *kindInfo) name() string { return k.layer + "." + k.kind }

// kinds is the table of fault kinds, in the order a layer evaluates them
// for one event (the first that ends the event wins).
var kinds = []*kindInfo{
	{layer: LayerSPI, kind: "stuck", shape: window, needDur: true,
		doc: "the bus is stuck from Start for Duration: each transfer that owns it in the window times out at its deadline, or waits for the end if that comes first"},
	{layer: LayerSPI, kind: "timeout-before", params: []string{"op"}, check: checkOp,
		doc: "the transfer times out before the chip saw it"},
	{layer: LayerSPI, kind: "timeout-after", params: []string{"op"}, check: checkOp,
		doc: "the chip executes the transfer, then it times out"},
	{layer: LayerSPI, kind: "latency", params: []string{"op", "latency", "jitter"}, check: needDelay,
		doc: "the transfer holds the bus latency + uniform[0, jitter] longer"},
	{layer: LayerSPI, kind: "flip", params: []string{"bits"}, check: checkBits,
		doc: "bits of the read data on MISO are inverted (reads only)"},

	{layer: LayerIRQ, kind: "stuck", shape: window,
		doc: "the line is stuck asserted: no edge reaches the host"},
	{layer: LayerIRQ, kind: "lost", doc: "an edge of the chip is lost"},
	{layer: LayerIRQ, kind: "spurious", params: []string{"rate"}, check: checkRate,
		doc: "edges the chip did not raise, rate candidates per second"},

	{layer: LayerChip, kind: "fifo-limit", shape: window, params: []string{"host_frames", "rx_words", "rx_meta"}, check: checkFIFO,
		doc: "the FIFO capacities are capped while active"},
	{layer: LayerChip, kind: "host-fifo-full", shape: window,
		doc: "the host TX FIFO refuses every TX write while active"},
	{layer: LayerChip, kind: "clock-step", shape: instant, params: []string{"step"}, check: checkStep,
		doc: "SYSCOUNT jumps by step at Start"},
	{layer: LayerChip, kind: "clock-drift", shape: window, params: []string{"ppm"}, check: checkPPM,
		doc: "SYSCOUNT runs at ppm drift while active"},

	{layer: LayerCable, kind: "unplug", shape: window,
		doc: "the cable is unplugged: frames sent are lost"},
	{layer: LayerCable, kind: "loss", doc: "the frame is lost"},
	{layer: LayerCable, kind: "corrupt", params: []string{"bits"}, check: checkBits,
		doc: "bits of the frame are inverted; the receiver's FCS check drops it"},
	{layer: LayerCable, kind: "delay", params: []string{"latency", "jitter"}, check: needDelay,
		doc: "the frame arrives latency + uniform[0, jitter] later (order kept)"},
}

// order is a kind's position in the kinds table.
func (k *kindInfo) order() int {
	for i, x := range kinds {
		if x == k {
			return i
		}
	}
	return len(kinds)
}

// Kinds returns the names ("layer.kind") of every fault kind.
func Kinds() []string {
	var names []string
	for _, k := range kinds {
		names = append(names, k.name())
	}
	return names
}

func lookup(layer, kind string) (*kindInfo, error) {
	var known []string
	for _, k := range kinds {
		if k.layer == layer {
			if k.kind == kind {
				return k, nil
			}
			known = append(known, k.kind)
		}
	}
	if known == nil {
		return nil, fmt.Errorf("fault: unknown layer %q (spi, irq, chip, cable)", layer)
	}
	return nil, fmt.Errorf("fault: unknown kind %q of layer %s (%s)", kind, layer, strings.Join(known, ", "))
}

// Limits of kind parameters.
const (
	MaxBits = 1 << 16   // bits flipped in one event
	MaxPPM  = 100_000   // |drift|, 10 %
	MaxRate = 1_000_000 // spurious candidates per second
)

// Validate checks the spec: a known layer and kind, a valid node, times
// not negative, probability in [0, 1], and exactly the parameters the
// kind takes, in range. The error names the field.
func (s Spec) Validate() error {
	k, err := lookup(s.Layer, s.Kind)
	if err != nil {
		return err
	}
	bad := func(field, format string, args ...any) error {
		return fmt.Errorf("fault: %s: %s: "+format, append([]any{k.name(), field}, args...)...)
	}
	if strings.ContainsAny(s.Node, "@:,= \t\n") {
		return bad("node", "%q contains one of @ : , = or a space", s.Node)
	}
	if s.Start < 0 {
		return bad("start", "%v is negative", s.Start)
	}
	if s.Duration < 0 {
		return bad("duration", "%v is negative", s.Duration)
	}
	if k.needDur && s.Duration == 0 {
		return bad("duration", "required (> 0)")
	}
	if k.shape == instant && s.Duration != 0 {
		return bad("duration", "not taken: the fault happens once at start")
	}
	if math.IsNaN(s.Probability) || s.Probability < 0 || s.Probability > 1 {
		return bad("probability", "%v is not in [0, 1]", s.Probability)
	}
	if k.shape != event && s.Probability != 0 {
		return bad("probability", "not taken by a window or instant fault")
	}
	if k.shape != event && s.Count != 0 {
		return bad("count", "not taken by a window or instant fault")
	}
	for _, p := range params {
		if p.get(&s) != "" && !k.takes(p.name) {
			return bad(p.name, "not a parameter of this kind (takes: %s)", k.paramList())
		}
	}
	if k.check != nil {
		if err := k.check(&s); err != nil {
			return fmt.Errorf("fault: %s: %w", k.name(), err)
		}
	}
	return nil
}

func (k *kindInfo) takes(name string) bool {
	for _, p := range k.params {
		if p == name {
			return true
		}
	}
	return false
}

func (k *kindInfo) paramList() string {
	if len(k.params) == 0 {
		return "none"
	}
	return strings.Join(k.params, ", ")
}

func needDelay(s *Spec) error {
	switch {
	case s.Latency < 0:
		return fmt.Errorf("latency: %v is negative", s.Latency)
	case s.Jitter < 0:
		return fmt.Errorf("jitter: %v is negative", s.Jitter)
	case s.Latency == 0 && s.Jitter == 0:
		return fmt.Errorf("latency: required (latency or jitter > 0)")
	}
	return checkOp(s)
}

func checkOp(s *Spec) error {
	if s.Op != "" && s.Op != "read" && s.Op != "write" {
		return fmt.Errorf("op: %q is not read or write", s.Op)
	}
	return nil
}

func checkBits(s *Spec) error {
	if s.Bits < 0 || s.Bits > MaxBits {
		return fmt.Errorf("bits: %d is not in [0, %d]", s.Bits, MaxBits)
	}
	return nil
}

func checkRate(s *Spec) error {
	if math.IsNaN(s.Rate) || s.Rate <= 0 || s.Rate > MaxRate {
		return fmt.Errorf("rate: %v is not in (0, %d] per second", s.Rate, MaxRate)
	}
	return nil
}

func checkStep(s *Spec) error {
	if s.Step == 0 {
		return fmt.Errorf("step: required (not 0)")
	}
	return nil
}

func checkPPM(s *Spec) error {
	if math.IsNaN(s.PPM) || s.PPM == 0 || math.Abs(s.PPM) > MaxPPM {
		return fmt.Errorf("ppm: %v is not in [-%d, %d] without 0", s.PPM, MaxPPM, MaxPPM)
	}
	return nil
}

// Hard limits of the FIFO caps: the chip's register fields.
const (
	maxHostFrames = 1<<10 - 1
	maxRxWords    = 1<<13 - 1
	maxRxMeta     = 1<<9 - 1
)

func checkFIFO(s *Spec) error {
	for _, f := range []struct {
		name string
		v    int
		max  int
	}{{"host_frames", s.HostFrames, maxHostFrames}, {"rx_words", s.RxWords, maxRxWords}, {"rx_meta", s.RxMeta, maxRxMeta}} {
		if f.v < 0 || f.v > f.max {
			return fmt.Errorf("%s: %d is not in [0, %d]", f.name, f.v, f.max)
		}
	}
	if s.HostFrames == 0 && s.RxWords == 0 && s.RxMeta == 0 {
		return fmt.Errorf("host_frames: one of host_frames, rx_words, rx_meta is required (> 0)")
	}
	return nil
}

// fifoCaps are the chip.SetFIFOLimits arguments of the spec: its caps,
// chip.NoFIFOLimit where it leaves a FIFO alone.
func (s Spec) fifoCaps() [3]int {
	c := [3]int{chip.NoFIFOLimit, chip.NoFIFOLimit, chip.NoFIFOLimit}
	for i, v := range []int{s.HostFrames, s.RxWords, s.RxMeta} {
		if v > 0 {
			c[i] = v
		}
	}
	return c
}
