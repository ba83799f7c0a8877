package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/pflag"

	"tsnsim/gotrace"
	"tsnsim/spitrace"
)

// traceCommand is tsnsim trace FILE [--json] [--late D]: the summary of
// an SPI trace file, read as a stream, or of a Go execution trace of a
// run (run --go-trace): why the SPI buses' waits ended late.
func traceCommand(args []string, stdout, stderr io.Writer) int {
	var asJSON bool
	var late time.Duration
	fs := pflag.NewFlagSet("trace", pflag.ContinueOnError)
	fs.BoolVar(&asJSON, "json", false, "print the summary as JSON (durations in integer nanoseconds) instead of tables")
	fs.DurationVar(&late, "late", gotrace.DefaultThreshold, "a Go execution trace (run --go-trace): explain the SPI bus waits that ended more than this long after their end")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: tsnsim trace FILE [--json] [--late D]\n\n"+
			"Summarises an SPI trace file (JSON Lines, one line per SPI transaction or PPS\n"+
			"edge): per node, transactions and bytes per kind (register read/write, RX\n"+
			"metadata, RX frame, TX frame, invalid), bus utilisation, percentiles\n"+
			"p50/p90/p99/max per kind of each transfer's time on the bus (the model's\n"+
			"overhead + 8n/f on the in-process bus, in real time too; queueing excluded),\n"+
			"how late on the wall clock the transfers returned after their modelled end\n"+
			"(late_ns: how far a real-time run was behind the model there: timer\n"+
			"lateness and scheduling, and with run --model-wakeups the host wake-ups the\n"+
			"bus could not take back; kept out of the durations), overall and as p50/p99\n"+
			"per kind, with p50/p99 of how long the calls took as the host saw them\n"+
			"(call_ns, queueing included) and how many took less than their time on the\n"+
			"bus (short: the bus took back an oversleep it repaid or a late wake-up),\n"+
			"errors by errno, injected faults by kind, and the chips' PPS edges (how\n"+
			"many, the first and last, their mean interval).\n\n"+
			"Given a Go execution trace of a run instead (run --go-trace), it counts the\n"+
			"SPI bus waits, and for those that ended more than --late after their end\n"+
			"says what the waiting goroutine was doing in its longest stretch without an\n"+
			"event of its own: blocked on its timer (the precise timer's timerfd in the\n"+
			"netpoller) and woken late; yielded in the polled tail while other goroutines\n"+
			"ran on its processor; yielded, or running, with its thread off the CPU; in a\n"+
			"system call. Per cause: how many, and how late (p50, max).\n\n"+
			"Flags:\n")
		fs.PrintDefaults()
	}
	if ok, status := parseCommandLine(fs, args, stdout, stderr); !ok {
		return status
	}
	if fs.NArg() != 1 {
		fmt.Fprintf(stderr, "tsnsim trace: want one trace FILE, got %d arguments (see --help)\n", fs.NArg())
		return exitUsage
	}
	path := fs.Arg(0)
	switch isGo, err := isGoTrace(path); {
	case err != nil:
		fmt.Fprintf(stderr, "tsnsim trace: %v\n", err)
		return exitFail
	case isGo:
		return goTraceReport(path, late, asJSON, stdout, stderr)
	case fs.Changed("late"):
		fmt.Fprintf(stderr, "tsnsim trace: --late applies to a Go execution trace (run --go-trace); %s is an SPI trace\n", path)
		return exitUsage
	}
	sum, err := summariseFile(path)
	if err != nil {
		fmt.Fprintf(stderr, "tsnsim trace: %v\n", err)
		return exitFail
	}
	return printReport(sum, asJSON, stdout, stderr)
}

// report is a summary tsnsim trace prints: spitrace.Summary or
// gotrace.Report.
type report interface {
	Write(io.Writer) error
	WriteJSON(io.Writer) error
}

// printReport prints r as text or JSON.
func printReport(r report, asJSON bool, stdout, stderr io.Writer) int {
	write := r.Write
	if asJSON {
		write = r.WriteJSON
	}
	if err := write(stdout); err != nil {
		fmt.Fprintf(stderr, "tsnsim trace: %v\n", err)
		return exitFail
	}
	return 0
}

// summariseFile summarises the trace at path; errors name the file.
func summariseFile(path string) (spitrace.Summary, error) {
	f, err := os.Open(path)
	if err != nil {
		return spitrace.Summary{}, err
	}
	defer f.Close()
	sum, err := spitrace.SummariseReader(f)
	if err != nil {
		return spitrace.Summary{}, fmt.Errorf("%s: %w", path, err)
	}
	return sum, nil
}

// goTraceMagic begins every Go execution trace ("go 1.26 trace").
const goTraceMagic = "go 1."

// isGoTrace reports whether the file at path is a Go execution trace
// rather than an SPI trace (JSON Lines).
func isGoTrace(path string) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	head := make([]byte, len(goTraceMagic))
	n, err := io.ReadFull(f, head)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return false, fmt.Errorf("%s: %w", path, err)
	}
	return string(head[:n]) == goTraceMagic, nil
}

// goTraceReport prints why the SPI waits of a Go execution trace ended
// late.
func goTraceReport(path string, late time.Duration, asJSON bool, stdout, stderr io.Writer) int {
	if late <= 0 {
		fmt.Fprintf(stderr, "tsnsim trace: --late %v: want a positive duration\n", late)
		return exitUsage
	}
	f, err := os.Open(path)
	if err != nil {
		fmt.Fprintf(stderr, "tsnsim trace: %v\n", err)
		return exitFail
	}
	defer f.Close()
	rep, err := gotrace.Analyse(f, late)
	if err != nil {
		fmt.Fprintf(stderr, "tsnsim trace: %s: %v\n", path, err)
		return exitFail
	}
	return printReport(rep, asJSON, stdout, stderr)
}
