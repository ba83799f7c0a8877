package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/pflag"
	"go.uber.org/zap"

	"tsnsim/fault"
)

// faultOptions are the fault-injection flags of tsnsim run and tsnsim
// chip serve (docs/faults.md).
type faultOptions struct {
	specs   fault.SpecList
	plan    string
	seed    int64
	control string

	fs       *pflag.FlagSet
	planned  fault.Plan
	anything bool
}

func (o *faultOptions) addFlags(fs *pflag.FlagSet) {
	o.fs = fs
	fs.Var(&o.specs, "fault", "inject a fault, LAYER.KIND[@NODE][:key=value,...], e.g. spi.timeout-before@a:p=0.05 or cable.unplug:start=3s,dur=2s; repeatable (docs/faults.md)")
	fs.StringVar(&o.plan, "fault-plan", "", "inject the faults of this JSON plan file (docs/faults.md)")
	fs.Int64Var(&o.seed, "fault-seed", 1, "seed of every random fault decision (default: the plan's seed, else 1). In a real-time run the decisions depend on timing, so two runs differ; byte-for-byte replay (same seed and plan, same SPI trace) holds only in virtual time, under go test (integration/determinism_test.go)")
	fs.StringVar(&o.control, "fault-control", "", "serve the fault control protocol on this unix socket, so `tsnsim fault --control PATH ...` changes faults while running")
}

func (o *faultOptions) validate() error {
	if o.plan != "" {
		p, err := fault.LoadPlan(o.plan)
		if err != nil {
			return fmt.Errorf("--fault-plan: %w", err)
		}
		o.planned = p
		if !o.fs.Changed("fault-seed") && p.Seed != 0 {
			o.seed = p.Seed
		}
	}
	o.anything = len(o.specs) > 0 || len(o.planned.Faults) > 0 || o.control != ""
	for _, specs := range [][]fault.Spec{o.planned.Faults, o.specs} {
		for _, s := range specs {
			if err := fault.CheckNode(s, nodeNames); err != nil {
				return fmt.Errorf("--fault: %s", faultMessage(err))
			}
		}
	}
	return nil
}

// nodeNames are the nodes of every topology tsnsim builds.
var nodeNames = []string{"a", "b"}

// injector builds the injector of the flags, nil when none is asked for;
// its emulated time starts at epoch.
func (o *faultOptions) injector(epoch time.Time, log *zap.Logger) (*fault.Injector, error) {
	if !o.anything {
		return nil, nil
	}
	inj := fault.New(o.seed, epoch, log)
	inj.SetNodes(nodeNames...)
	for _, specs := range [][]fault.Spec{o.planned.Faults, o.specs} {
		if _, err := inj.AddAll(specs); err != nil {
			inj.Close()
			return nil, err
		}
	}
	return inj, nil
}

// serveControl serves the control socket, if asked, until the returned
// stop is called.
func (o *faultOptions) serveControl(inj *fault.Injector, r *outcome) (stop func(), err error) {
	if o.control == "" || inj == nil {
		return func() {}, nil
	}
	ln, err := fault.ListenUnix(o.control)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := fault.ServeControl(ctx, ln, inj); err != nil {
			r.fail("fault control: %v", err)
		}
	})
	r.printf("fault control on %s: tsnsim fault --control %s list|counts|add SPEC|remove ID|clear\n", o.control, o.control)
	return func() { cancel(); wg.Wait() }, nil
}

// reportFaults prints what the injector injected, by layer.kind@node.
func reportFaults(r *outcome, inj *fault.Injector) {
	if inj == nil {
		return
	}
	counts := inj.Counts()
	r.printf("faults injected (seed %d):", inj.Seed())
	if len(counts) == 0 {
		r.printf(" none\n")
		return
	}
	for _, k := range slices.Sorted(maps.Keys(counts)) {
		r.printf(" %s=%d", k, counts[k])
	}
	r.printf("\n")
}

// faultCommand is tsnsim fault: it changes or inspects the faults of a
// running tsnsim run or tsnsim chip serve through its control socket.
func faultCommand(args []string, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("fault", pflag.ContinueOnError)
	control := fs.String("control", "", "the --fault-control socket of the running tsnsim")
	timeout := fs.Duration("timeout", fault.ControlTimeout, "give up after this long")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: tsnsim fault --control PATH list | counts | add SPEC | remove ID | clear\n\n"+
			"Changes the faults of a running `tsnsim run` or `tsnsim chip serve` started\n"+
			"with --fault-control PATH. SPEC is the --fault syntax (docs/faults.md).\n\nFlags:\n")
		fs.PrintDefaults()
	}
	fs.SetInterspersed(true)
	if ok, status := parseCommandLine(fs, args, stdout, stderr); !ok {
		return status
	}
	req, err := faultRequest(fs.Args())
	if err == nil && *control == "" {
		err = fmt.Errorf("--control PATH is required")
	}
	if err != nil {
		fmt.Fprintf(stderr, "tsnsim fault: %s (see --help)\n", faultMessage(err))
		return exitUsage
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	resp, err := fault.Control(ctx, "unix:"+*control, req)
	if err != nil {
		var remote *fault.RemoteError
		if errors.As(err, &remote) {
			fmt.Fprintf(stderr, "tsnsim fault: refused by the running tsnsim: %s\n", faultMessage(err))
		} else {
			fmt.Fprintf(stderr, "tsnsim fault: %s\n", faultMessage(err))
		}
		return exitFail
	}
	switch req.Op {
	case "add":
		fmt.Fprintf(stdout, "added fault %d\n", resp.ID)
	case "list":
		tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintf(tw, "ID\tFAULT\tINJECTED\n")
		for _, e := range resp.Faults {
			fmt.Fprintf(tw, "%d\t%s\t%d\n", e.ID, e.Flag, e.Injected)
		}
		tw.Flush()
	case "counts":
		tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintf(tw, "FAULT@NODE\tINJECTED\n")
		for _, k := range slices.Sorted(maps.Keys(resp.Counts)) {
			fmt.Fprintf(tw, "%s\t%d\n", k, resp.Counts[k])
		}
		tw.Flush()
	default:
		fmt.Fprintln(stdout, "ok")
	}
	return 0
}

// faultMessage is err's text without the package prefixes the fault
// package puts in front ("fault: ", "control: "): the command's own
// prefix says where it comes from.
func faultMessage(err error) string {
	msg := err.Error()
	for {
		trimmed := strings.TrimPrefix(strings.TrimPrefix(msg, "fault: "), "control: ")
		if trimmed == msg {
			return msg
		}
		msg = trimmed
	}
}

// faultRequest is the request the operands of tsnsim fault ask for.
func faultRequest(args []string) (fault.Request, error) {
	if len(args) == 0 {
		return fault.Request{}, fmt.Errorf("missing operation: list, counts, add SPEC, remove ID or clear")
	}
	op, rest := args[0], args[1:]
	want := map[string]int{"list": 0, "counts": 0, "clear": 0, "add": 1, "remove": 1}
	n, ok := want[op]
	if !ok {
		return fault.Request{}, fmt.Errorf("unknown operation %q: want list, counts, add, remove or clear", op)
	}
	if len(rest) != n {
		return fault.Request{}, fmt.Errorf("%s takes %d operand(s), got %d", op, n, len(rest))
	}
	req := fault.Request{Op: op}
	switch op {
	case "add":
		if _, err := fault.ParseSpec(rest[0]); err != nil {
			return req, err
		}
		req.Flag = rest[0]
	case "remove":
		id, err := strconv.Atoi(rest[0])
		if err != nil || id <= 0 {
			return req, fmt.Errorf("remove %q: want a fault id (see list)", rest[0])
		}
		req.ID = id
	}
	return req, nil
}
