package fault

import (
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// Injector holds the active faults of a run and decides, for every event
// its hooks see, which faults to inject. It is safe for concurrent use:
// faults can be added and removed while the topology runs. Create it with
// New; Close stops its timers.
type Injector struct {
	seed  int64
	epoch time.Time
	log   *zap.Logger

	// live counts the faults per layer, so that hooks of a layer without
	// faults return without taking the lock.
	live [numLayers]atomic.Int32

	mu     sync.Mutex
	closed bool
	nextID int
	faults []*entry // sorted by kind (the kinds table order), then id
	counts map[string]uint64
	chips  map[string]*chipState
	lines  map[string]chan struct{} // spurious edges, per node
	nodes  []string                 // the nodes that exist (SetNodes); nil: any
}

const numLayers = 4

func layerIndex(layer string) int {
	switch layer {
	case LayerSPI:
		return 0
	case LayerIRQ:
		return 1
	case LayerChip:
		return 2
	}
	return 3
}

// entry is one added fault and its state.
type entry struct {
	id      int
	spec    Spec
	k       *kindInfo
	order   int
	rngs    map[string]*rand.Rand // per node
	perNode map[string]uint64     // injected, per node
	total   uint64
	active  bool // timer-driven kinds: started, not ended
	ended   bool
	removed bool
	timers  []*time.Timer
	tick    *time.Timer // irq.spurious: the next candidate
}

// New returns an injector whose randomness comes from seed and whose
// times (Spec.Start, log lines) count from epoch: the emulated time of
// the topology (the chips' epoch). log may be nil.
func New(seed int64, epoch time.Time, log *zap.Logger) *Injector {
	if log == nil {
		log = zap.NewNop()
	}
	return &Injector{
		seed: seed, epoch: epoch, log: log.Named("fault"),
		counts: map[string]uint64{}, chips: map[string]*chipState{}, lines: map[string]chan struct{}{},
	}
}

// Seed returns the injector's seed.
func (inj *Injector) Seed() int64 { return inj.seed }

// now is the emulated time: since the epoch.
func (inj *Injector) now() time.Duration { return time.Since(inj.epoch) }

// SetNodes names the nodes that exist: from then on Add refuses a fault
// naming any other node (a typo would otherwise inject nothing, silently).
// Without SetNodes any node name is taken.
func (inj *Injector) SetNodes(names ...string) {
	inj.mu.Lock()
	defer inj.mu.Unlock()
	inj.nodes = slices.Clone(names)
}

// CheckNode fails if s names a node that is not one of nodes.
func CheckNode(s Spec, nodes []string) error {
	if s.Node == "" || nodes == nil || slices.Contains(nodes, s.Node) {
		return nil
	}
	return fmt.Errorf("fault: %s@%s: there is no node %q (nodes: %s)", s.Name(), s.Node, s.Node, strings.Join(nodes, ", "))
}

// Add validates s and activates it; it returns the fault's id. A fault
// whose window has already ended is an error; one whose Start has passed
// is active at once (an instant fault happens at once).
func (inj *Injector) Add(s Spec) (int, error) {
	if err := s.Validate(); err != nil {
		return 0, err
	}
	k, _ := lookup(s.Layer, s.Kind)
	inj.mu.Lock()
	defer inj.mu.Unlock()
	if inj.closed {
		return 0, fmt.Errorf("fault: injector closed")
	}
	if err := CheckNode(s, inj.nodes); err != nil {
		return 0, err
	}
	now := inj.now()
	if s.Duration > 0 && now >= s.Start+s.Duration {
		return 0, fmt.Errorf("fault: %s: its window ended at %v, before now (%v)", s.Name(), s.Start+s.Duration, now)
	}
	inj.nextID++
	e := &entry{id: inj.nextID, spec: s, k: k, order: k.order(),
		rngs: map[string]*rand.Rand{}, perNode: map[string]uint64{}}
	i, _ := slices.BinarySearchFunc(inj.faults, e, func(a, b *entry) int {
		if a.order != b.order {
			return a.order - b.order
		}
		return a.id - b.id
	})
	inj.faults = slices.Insert(inj.faults, i, e)
	inj.live[layerIndex(s.Layer)].Add(1)
	inj.log.Debug("fault added", zap.Int("id", e.id), zap.Stringer("spec", s), zap.Duration("at", now))
	switch {
	case k.layer == LayerChip:
		inj.armChip(e, now)
	case s.Name() == "irq.spurious":
		inj.nextSpurious(e, now)
	}
	return e.id, nil
}

// AddAll adds every spec (a plan's faults) after validating them all; on
// an error nothing is added.
func (inj *Injector) AddAll(specs []Spec) ([]int, error) {
	for i, s := range specs {
		if err := s.Validate(); err != nil {
			return nil, fmt.Errorf("fault: faults[%d]: %w", i, err)
		}
	}
	var ids []int
	for i, s := range specs {
		id, err := inj.Add(s)
		if err != nil {
			for _, id := range ids {
				inj.Remove(id)
			}
			return nil, fmt.Errorf("fault: faults[%d]: %w", i, err)
		}
		ids = append(ids, id)
	}
	return ids, nil
}

// Remove deactivates the fault with the given id; a chip fault's effect
// is undone (FIFO caps and drift restored; a clock step stays).
func (inj *Injector) Remove(id int) error {
	inj.mu.Lock()
	defer inj.mu.Unlock()
	i := slices.IndexFunc(inj.faults, func(e *entry) bool { return e.id == id })
	if i < 0 {
		return fmt.Errorf("fault: no fault with id %d", id)
	}
	inj.remove(i)
	inj.reconcileChips()
	return nil
}

// remove drops faults[i]; called with mu held. The caller reconciles the
// chips.
func (inj *Injector) remove(i int) {
	e := inj.faults[i]
	e.removed = true
	for _, t := range e.timers {
		t.Stop()
	}
	if e.tick != nil {
		e.tick.Stop()
	}
	inj.faults = slices.Delete(inj.faults, i, i+1)
	inj.live[layerIndex(e.spec.Layer)].Add(-1)
	inj.log.Debug("fault removed", zap.Int("id", e.id), zap.Stringer("spec", e.spec), zap.Duration("at", inj.now()))
}

// Clear removes every fault.
func (inj *Injector) Clear() {
	inj.mu.Lock()
	defer inj.mu.Unlock()
	inj.clear()
}

func (inj *Injector) clear() {
	for len(inj.faults) > 0 {
		inj.remove(len(inj.faults) - 1)
	}
	inj.reconcileChips()
}

// Close removes every fault, stopping its timers and restoring the
// chips; later Adds fail. Counts stay readable.
func (inj *Injector) Close() error {
	inj.mu.Lock()
	defer inj.mu.Unlock()
	inj.clear()
	inj.closed = true
	return nil
}

// Entry is one active fault as List reports it.
type Entry struct {
	ID       int    `json:"id"`
	Spec     Spec   `json:"spec"`
	Flag     string `json:"flag"`     // the spec in the flag syntax
	Injected uint64 `json:"injected"` // injections so far, all nodes
}

// List returns the faults in id order.
func (inj *Injector) List() []Entry {
	inj.mu.Lock()
	defer inj.mu.Unlock()
	out := make([]Entry, 0, len(inj.faults))
	for _, e := range inj.faults {
		out = append(out, Entry{ID: e.id, Spec: e.spec, Flag: e.spec.String(), Injected: e.total})
	}
	slices.SortFunc(out, func(a, b Entry) int { return a.ID - b.ID })
	return out
}

// Counts returns how many faults were injected, keyed "layer.kind@node"
// (node: where it was injected; for the cable, the sender). Removing a
// fault does not reset its counts.
func (inj *Injector) Counts() map[string]uint64 {
	inj.mu.Lock()
	defer inj.mu.Unlock()
	out := make(map[string]uint64, len(inj.counts))
	for k, v := range inj.counts {
		out[k] = v
	}
	return out
}

// applies reports whether e targets node.
func (e *entry) applies(node string) bool { return e.spec.Node == "" || e.spec.Node == node }

// inWindow reports whether emulated time now lies in e's window.
func (e *entry) inWindow(now time.Duration) bool {
	return now >= e.spec.Start && (e.spec.Duration == 0 || now < e.spec.Start+e.spec.Duration)
}

// fires decides whether event fault e injects into this event of node: it
// targets the node, is in its window, has count left and wins its draw.
// Called with mu held.
func (inj *Injector) fires(e *entry, node string, now time.Duration) bool {
	if !e.applies(node) || !e.inWindow(now) || (e.spec.Count > 0 && e.perNode[node] >= e.spec.Count) {
		return false
	}
	p := e.spec.Probability
	return p == 0 || p >= 1 || inj.rng(e, node).Float64() < p
}

// rng is the random stream of fault e on node: seeded from the seed, the
// kind, the node and the fault's id, so neither other nodes nor other
// faults can change its draws.
func (inj *Injector) rng(e *entry, node string) *rand.Rand {
	r := e.rngs[node]
	if r == nil {
		h := fnv.New64a()
		fmt.Fprintf(h, "%s@%s#%d", e.k.name(), node, e.id)
		r = rand.New(rand.NewPCG(uint64(inj.seed), h.Sum64()))
		e.rngs[node] = r
	}
	return r
}

// jitter draws uniform [0, max].
func (inj *Injector) jitter(e *entry, node string, max time.Duration) time.Duration {
	if max <= 0 {
		return 0
	}
	return time.Duration(inj.rng(e, node).Int64N(int64(max) + 1))
}

// record counts one injection of e on node and logs it at debug level
// with the emulated time. Called with mu held.
func (inj *Injector) record(e *entry, node string, now time.Duration, fields ...zap.Field) {
	key := e.k.name() + "@" + node
	inj.counts[key]++
	e.perNode[node]++
	e.total++
	if ce := inj.log.Check(zap.DebugLevel, "fault injected"); ce != nil {
		ce.Write(append([]zap.Field{zap.Duration("at", now), zap.String("node", node),
			zap.String("kind", e.k.name()), zap.Int("id", e.id)}, fields...)...)
	}
}
