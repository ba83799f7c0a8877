package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"tsnsim/spibridge"
)

// TestRunGoTrace: --go-trace writes a Go execution trace of a real-time
// run, with the SPI buses' waits as log events, and says where; a file
// that cannot be created fails the run before anything starts.
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

	out.Reset()
	errOut.Reset()
	bad := filepath.Join(t.TempDir(), "missing", "run.trace")
	if status := run([]string{"run", "--backend", "frames", "--frames", "10", "--go-trace", bad}, &out, &errOut); status == 0 ||
		!strings.Contains(out.String(), "go trace: open "+bad) {
		t.Errorf("status %d for an uncreatable trace file:\n%s\n%s", status, out.String(), errOut.String())
	}
}
