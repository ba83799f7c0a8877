package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"tsnsim/chip"
	"tsnsim/chip/proto"
	"tsnsim/chip/regs"
	"tsnsim/spibridge"
	"tsnsim/spitrace"
)

// writeTrace traces, in virtual time, a real chip on an in-process bus:
// three register reads, one register write and one TX frame write, and
// returns the trace file.
func writeTrace(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "spi.jsonl")
	synctest.Test(t, func(t *testing.T) {
		epoch := time.Now()
		w, err := spitrace.Create(path, epoch)
		if err != nil {
			t.Fatal(err)
		}
		c := chip.New(chip.Config{Name: "a", Epoch: epoch})
		defer c.Close()
		tr := spibridge.NewTraced(spibridge.NewInProcess(c, spibridge.DefaultTiming(), nil), "a", w)
		defer tr.Close()
		tx, err := proto.TxFrameWrite(proto.SendNow(64, proto.PriorityBestEffort), make([]byte, 60))
		if err != nil {
			t.Fatal(err)
		}
		for _, mosi := range [][]byte{
			proto.RegRead(regs.TSNSysCount), proto.RegRead(regs.TSNSysCount + 4), proto.RegRead(regs.TSNSysCount),
			proto.RegWrite(regs.TSNSystemControl+4, 1), tx,
		} {
			if err := tr.Transfer(context.Background(), mosi, make([]byte, len(mosi))); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	})
	return path
}

// TestTraceCommand: tsnsim trace summarises a trace written by a traced
// bus: exact counts and modelled latencies (20 us + 8 bits a byte at
// 15 MHz), as text and as JSON.
func TestTraceCommand(t *testing.T) {
	path := writeTrace(t)

	var out, errOut bytes.Buffer
	if status := run([]string{"trace", path}, &out, &errOut); status != 0 {
		t.Fatalf("status %d: %s", status, errOut.String())
	}
	for _, want := range []string{
		"SPI trace: 5 transactions, 1 nodes",
		"node a: 5 transactions, 130 bytes, 0 errors, from 0s to 169.331µs (span 169.331µs)",
		"bus busy 169.331µs (100.0% of the span)",
		"reg_read   3      24     0       24.266µs  24.266µs  24.266µs  24.266µs",
		"reg_write  1      7      0       23.733µs",
		"tx_frame   1      99     0       72.8µs",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}

	out.Reset()
	if status := run([]string{"trace", "--json", path}, &out, &errOut); status != 0 {
		t.Fatalf("--json: status %d: %s", status, errOut.String())
	}
	var s spitrace.Summary
	if err := json.Unmarshal(out.Bytes(), &s); err != nil {
		t.Fatalf("--json output: %v\n%s", err, out.String())
	}
	if len(s.Nodes) != 1 || s.Transactions != 5 || len(s.Nodes[0].Kinds) != 3 || s.Nodes[0].Kinds[0].P99 != 24266*time.Nanosecond {
		t.Errorf("--json summary %+v", s)
	}
}

// TestTraceCommandErrors: a bad line is reported with the file and line
// number; missing files and bad command lines fail with a message.
func TestTraceCommandErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.jsonl")
	good := `{"t":0,"node":"a","space":"reg_read","dir":"read","addr":"0x3288","len":8,"dur":1,"result":"ok","mosi":"02"}`
	if err := os.WriteFile(bad, []byte(good+"\n"+good+"\n{\"t\":0,\"node\":\"a\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args   []string
		status int
		want   string
	}{
		{[]string{"trace", bad}, exitFail, "tsnsim trace: " + bad + ": spitrace: line 3: unexpected end of JSON input"},
		{[]string{"trace", filepath.Join(dir, "missing")}, exitFail, "no such file or directory"},
		{[]string{"trace"}, exitUsage, "want one trace FILE, got 0 arguments"},
		{[]string{"trace", bad, bad}, exitUsage, "want one trace FILE, got 2 arguments"},
		{[]string{"trace", "--csv", bad}, exitUsage, "unknown flag: --csv"},
	} {
		var out, errOut bytes.Buffer
		if status := run(tc.args, &out, &errOut); status != tc.status || !strings.Contains(errOut.String(), tc.want) {
			t.Errorf("%q: status %d, stderr %q; want %d and %q", tc.args, status, errOut.String(), tc.status, tc.want)
		}
		if out.Len() != 0 {
			t.Errorf("%q: wrote to stdout: %q", tc.args, out.String())
		}
	}
}

func TestTraceHelp(t *testing.T) {
	var out, errOut bytes.Buffer
	if status := run([]string{"trace", "--help"}, &out, &errOut); status != 0 || errOut.Len() != 0 {
		t.Fatalf("status %d, stderr %q", status, errOut.String())
	}
	for _, want := range []string{"Usage: tsnsim trace FILE [--json]", "--json", "percentiles"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("help lacks %q:\n%s", want, out.String())
		}
	}
	out.Reset()
	if status := run([]string{"help"}, &out, &errOut); status != 0 || !strings.Contains(out.String(), "tsnsim trace FILE") {
		t.Errorf("tsnsim help does not list trace:\n%s", out.String())
	}
}

// TestRunTracePPS: a run's --spi-trace holds both chips' PPS edges (an
// untouched chip pulses at SYSCOUNT 0, then every second), and tsnsim
// trace summarises them per node.
func TestRunTracePPS(t *testing.T) {
	path := filepath.Join(t.TempDir(), "spi.jsonl")
	var out, errOut bytes.Buffer
	if status := run([]string{"run", "--backend", "frames", "--frames", "1200", "--spi-trace", path}, &out, &errOut); strings.Contains(out.String(), "UNACCOUNTED") {
		t.Fatalf("status %d\n%s\n%s", status, out.String(), errOut.String())
	}
	out.Reset()
	if status := run([]string{"trace", "--json", path}, &out, &errOut); status != 0 {
		t.Fatalf("trace: status %d: %s", status, errOut.String())
	}
	var s spitrace.Summary
	if err := json.Unmarshal(out.Bytes(), &s); err != nil {
		t.Fatal(err)
	}
	if len(s.Nodes) != 2 {
		t.Fatalf("summary %+v", s)
	}
	for _, n := range s.Nodes {
		p := n.PPS
		if p == nil || p.FirstSeq != 1 || p.First != 0 || p.LastSeq != uint64(p.Edges) {
			t.Errorf("node %s: PPS %+v, want edges 1..n from SYSCOUNT 0", n.Node, p)
			continue
		}
		if p.Edges > 1 && p.MeanInterval != time.Second {
			t.Errorf("node %s: PPS every %v, want 1s", n.Node, p.MeanInterval)
		}
		t.Logf("node %s: %d transactions, PPS %+v", n.Node, n.Transactions, *p)
	}
}
