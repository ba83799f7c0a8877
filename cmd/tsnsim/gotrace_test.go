package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"tsnsim/spibridge"
)

// TestRunGoTrace: --go-trace writes a Go execution trace of a real-time
// run, with the SPI buses' waits as log events, and says where; tsnsim
// trace explains its late waits; a file that cannot be created fails the
// run before anything starts.
func TestRunGoTrace(t *testing.T) {
	path := filepath.Join(t.TempDir(), "run.trace")
	var out, errOut bytes.Buffer
	if status := run([]string{"run", "--backend", "frames", "--frames", "100", "--go-trace", path}, &out, &errOut); status != 0 {
		t.Fatalf("status %d\n%s\n%s", status, out.String(), errOut.String())
	}
	if want := "go trace: written to " + path; !strings.Contains(out.String(), want) {
		t.Errorf("report lacks %q:\n%s", want, out.String())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// A Go execution trace starts "go 1.NN trace"; log categories are in
	// its string table.
	if !bytes.HasPrefix(b, []byte("go 1.")) || !bytes.Contains(b[:16], []byte(" trace")) {
		t.Errorf("not a Go execution trace: starts %q", b[:min(len(b), 16)])
	}
	if !bytes.Contains(b, []byte(spibridge.WaitLogCategory)) {
		t.Errorf("trace of %d bytes has no %s events", len(b), spibridge.WaitLogCategory)
	}

	// tsnsim trace reads it: the waits, and why the late ones were late.
	out.Reset()
	if status := run([]string{"trace", "--late", "1ns", path}, &out, &errOut); status != 0 ||
		!regexp.MustCompile(`Go execution trace: [1-9][0-9]* SPI bus waits, [0-9]+ ended more than 1ns after their end`).MatchString(out.String()) {
		t.Errorf("trace of the Go trace: status %d\n%s\n%s", status, out.String(), errOut.String())
	}
	out.Reset()
	if status := run([]string{"trace", "--json", path}, &out, &errOut); status != 0 || !strings.Contains(out.String(), `"threshold": 40000`) {
		t.Errorf("trace --json of the Go trace: status %d\n%s\n%s", status, out.String(), errOut.String())
	}
	errOut.Reset()
	if status := run([]string{"trace", "--late", "0", path}, &out, &errOut); status != exitUsage || !strings.Contains(errOut.String(), "want a positive duration") {
		t.Errorf("trace --late 0: status %d\n%s", status, errOut.String())
	}

	out.Reset()
	errOut.Reset()
	bad := filepath.Join(t.TempDir(), "missing", "run.trace")
	if status := run([]string{"run", "--backend", "frames", "--frames", "10", "--go-trace", bad}, &out, &errOut); status == 0 ||
		!strings.Contains(out.String(), "go trace: open "+bad) {
		t.Errorf("status %d for an uncreatable trace file:\n%s\n%s", status, out.String(), errOut.String())
	}
}

// TestTraceLateOnSPITrace: --late is for Go execution traces; given with
// an SPI trace it is refused, not ignored.
func TestTraceLateOnSPITrace(t *testing.T) {
	path := filepath.Join(t.TempDir(), "spi.jsonl")
	if err := os.WriteFile(path, []byte(`{"t":0,"node":"a","event":"pps","seq":1,"syscount":0}`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	if status := run([]string{"trace", "--late", "10us", path}, &out, &errOut); status != exitUsage ||
		!strings.Contains(errOut.String(), "--late applies to a Go execution trace") {
		t.Errorf("status %d\n%s", status, errOut.String())
	}
	errOut.Reset()
	if status := run([]string{"trace", path}, &out, &errOut); status != 0 {
		t.Errorf("without --late: status %d\n%s", status, errOut.String())
	}
}
