package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestChipServeAndAttach: tsnsim chip serve runs the chips; tsnsim run
// --attach drives them from "another process" (here another goroutine
// over the same unix sockets) with the frames backend, twice in a row,
// and tsnsim regs --attach reads a register; the server's report shows
// the traffic of both clients, and its Go trace (--go-trace) the buses'
// waits.
func TestChipServeAndAttach(t *testing.T) {
	dir := t.TempDir()
	goTrace := filepath.Join(t.TempDir(), "serve.trace")
	var sout, serr bytes.Buffer
	done := make(chan int)
	go func() {
		done <- run([]string{"chip", "serve", "--socket-dir", dir, "--duration", "6s", "--go-trace", goTrace}, &sout, &serr)
	}()
	for _, sock := range []string{"a.sock", "b.sock"} {
		deadline := time.Now().Add(5 * time.Second)
		for {
			if _, err := os.Stat(filepath.Join(dir, sock)); err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s never appeared: %s", sock, serr.String())
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	attach := []string{"--attach", "unix:" + filepath.Join(dir, "a.sock"), "--attach", "unix:" + filepath.Join(dir, "b.sock")}
	for range 2 {
		var out, errOut bytes.Buffer
		status := run(append([]string{"run", "--backend", "frames", "--frames", "100"}, attach...), &out, &errOut)
		checkUnderLoad(t, status, out.String())
		if status == 0 && !strings.Contains(out.String(), "a->b: 100/100") {
			t.Errorf("run --attach:\n%s", out.String())
		}
	}
	var out, errOut bytes.Buffer
	if status := run([]string{"regs", "--attach", attach[1], "read", "TSN_MAC_ADDR"}, &out, &errOut); status != 0 ||
		!strings.Contains(strings.ToLower(out.String()), "0x0000020000000001") {
		t.Errorf("regs --attach: status %d\n%s\n%s", status, out.String(), errOut.String())
	}
	if status := <-done; status != 0 {
		t.Fatalf("chip serve: status %d\n%s\n%s", status, sout.String(), serr.String())
	}
	for _, want := range []string{"chip a (mac 02:00:00:00:00:01): SPI bus and interrupt line on unix:", "FT_TOTAL_TX_FRAME_CNT", "cable a->b: 200 frames",
		"go trace: written to " + goTrace} {
		if !strings.Contains(sout.String(), want) {
			t.Errorf("server report lacks %q:\n%s", want, sout.String())
		}
	}
	// The server's Go trace has its buses' waits.
	out.Reset()
	if status := run([]string{"trace", goTrace}, &out, &errOut); status != 0 ||
		!regexp.MustCompile(`Go execution trace: [1-9][0-9]* SPI bus waits`).MatchString(out.String()) {
		t.Errorf("trace of the server's Go trace: status %d\n%s\n%s", status, out.String(), errOut.String())
	}
}

func TestChipServeBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"chip"},
		{"chip", "serve", "--listen", "c=unix:/x"},
		{"chip", "serve", "--listen", "a=tcp:127.0.0.1:0"},
		{"chip", "serve", "--cable-end", "bogus"},
		{"chip", "serve", "--node", "z"},
		{"run", "--attach", "unix:/x", "--attach", "unix:/y", "--attach", "unix:/z"},
		{"run", "--attach", "http://x"},
		{"run", "--spidev", "/dev/spidev0.0"},
		{"run", "--attach", "unix:/x", "--fault", "cable.loss:p=0.1"},
		{"run", "--xmit-clock", "sometimes"},
	} {
		var out, errOut bytes.Buffer
		if status := run(args, &out, &errOut); status != exitUsage || errOut.Len() == 0 {
			t.Errorf("%q: status %d, stderr %q", args, status, errOut.String())
		}
	}
}
