// Command tsnsim emulates two LAN1QTSN boards, each an SPI TSN MAC driven
// by the driver core, cabled back to back.
//
// Usage:
//
//	tsnsim run [flags]   run two nodes and exchange verified test frames
//	tsnsim chip serve    serve emulated chips' SPI buses on sockets
//	tsnsim regs [flags] read|write|dump ...   register access, real or emulated chip
//	tsnsim fault ...     change the faults of a running tsnsim
//	tsnsim trace FILE    summarise an SPI trace file, or why a Go trace's SPI waits were late
//	tsnsim help          show this help
package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/pflag"
)

// exitUsage is the exit status for bad command lines, exitFail for
// commands that failed (and for runs whose verdict is LOSS; see
// topology.ExitLoss and topology.ExitUnaccounted).
const (
	exitFail  = 1
	exitUsage = 2
)

const usage = `tsnsim emulates two LAN1QTSN boards (SPI-attached TSN Ethernet MACs), each
driven by the same driver core over an emulated SPI bus, cabled back to back.

Usage:
  tsnsim run [flags]   run two nodes and exchange verified frames both ways
  tsnsim chip serve [flags]
                       run the chips and cable here and serve each chip's SPI
                       bus and interrupt line on a socket (run --attach)
  tsnsim regs [flags] read NAME|OFFSET | write NAME|OFFSET VALUE | dump
                       register access on an emulated, served (--attach) or
                       real (--spidev) chip
  tsnsim fault --control PATH list|counts|add SPEC|remove ID|clear
                       change the faults of a running tsnsim (--fault-control)
  tsnsim trace FILE    summarise an SPI trace file (JSON Lines): per node and
                       kind, counts, bus utilisation, latencies, errors, faults;
                       or, for a Go execution trace (run --go-trace), why the
                       SPI bus waits that ended late were late
  tsnsim help          show this help

The report of tsnsim run ends with its verdict, and the exit status follows it:
CLEAN (0), LOSS: N WHERE, ... (1), UNACCOUNTED: EQUATION off by N (3); a bad
command line exits 2. SIGINT/SIGTERM stop a run gracefully, with its report.

Run 'tsnsim COMMAND --help' for the flags of a command.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	switch args[0] {
	case "run":
		return runCommand(args[1:], stdout, stderr)
	case "chip":
		return chipCommand(args[1:], stdout, stderr)
	case "fault":
		return faultCommand(args[1:], stdout, stderr)
	case "regs":
		return regsCommand(args[1:], stdout, stderr)
	case "trace":
		return traceCommand(args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "tsnsim: unknown command %q\n\n%s", args[0], usage)
	return exitUsage
}

// parseFlags parses args into fs, printing help on --help; operands are
// an error.
func parseFlags(fs *pflag.FlagSet, args []string, stdout, stderr io.Writer) (ok bool, status int) {
	if ok, status := parseCommandLine(fs, args, stdout, stderr); !ok {
		return false, status
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "tsnsim %s: unexpected arguments %q\n", fs.Name(), fs.Args())
		return false, exitUsage
	}
	return true, 0
}

// parseCommandLine parses args into fs, printing help on --help (on
// stdout, once) and flag errors on stderr; operands are left in
// fs.Args().
func parseCommandLine(fs *pflag.FlagSet, args []string, stdout, stderr io.Writer) (ok bool, status int) {
	fs.SetOutput(stderr)
	usage := fs.Usage
	fs.Usage = func() {} // printed below, on the right stream
	err := fs.Parse(args)
	fs.Usage = usage
	if err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			fs.SetOutput(stdout)
			fs.Usage()
			return false, 0
		}
		fmt.Fprintf(stderr, "tsnsim %s: %v (see --help)\n", fs.Name(), err)
		return false, exitUsage
	}
	return true, 0
}
