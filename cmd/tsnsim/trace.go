package main

import (
	"fmt"
	"io"
	"os"

	"github.com/spf13/pflag"

	"tsnsim/spitrace"
)

// traceCommand is tsnsim trace FILE [--json]: the summary of an SPI trace
// file, read as a stream.
func traceCommand(args []string, stdout, stderr io.Writer) int {
	var asJSON bool
	fs := pflag.NewFlagSet("trace", pflag.ContinueOnError)
	fs.BoolVar(&asJSON, "json", false, "print the summary as JSON (durations in integer nanoseconds) instead of tables")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: tsnsim trace FILE [--json]\n\n"+
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
	sum, err := summariseFile(path)
	if err != nil {
		fmt.Fprintf(stderr, "tsnsim trace: %v\n", err)
		return exitFail
	}
	if asJSON {
		err = sum.WriteJSON(stdout)
	} else {
		err = sum.Write(stdout)
	}
	if err != nil {
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
