package integration

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// buildTsnsim builds the tsnsim command into dir and returns its path.
func buildTsnsim(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "tsnsim")
	cmd := exec.Command("go", "build", "-o", bin, "tsnsim/cmd/tsnsim")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// startChipServer starts `tsnsim chip serve` on dir's sockets and waits
// until both sockets answer.
func startChipServer(t *testing.T, ctx context.Context, bin, dir, log string) *exec.Cmd {
	t.Helper()
	for _, s := range []string{"a.sock", "b.sock"} {
		os.Remove(filepath.Join(dir, s)) // a killed server leaves its socket files
	}
	f, err := os.Create(log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	cmd := exec.CommandContext(ctx, bin, "chip", "serve", "--socket-dir", dir)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, s := range []string{"a.sock", "b.sock"} {
		for {
			if _, err := os.Stat(filepath.Join(dir, s)); err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("chip server: %s never appeared", s)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	return cmd
}

// TestChipServerKilledReset kills a `tsnsim chip serve` process with
// SIGKILL in the middle of an attached `tsnsim run` and starts a fresh
// one (new chips: TSN off, counters at zero) on the same sockets. Both
// drivers must find their chip reset, re-initialise it and carry on: the
// run ends by itself, its report shows the resets, and its audit
// balances (no unaccounted frame). It reports how long after the fresh
// server started the drivers had their chips back. Real time: it asserts
// recovery and accounting, not speed.
func TestChipServerKilledReset(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the tsnsim command")
	}
	dir := t.TempDir()
	bin := buildTsnsim(t, dir)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	srv := startChipServer(t, ctx, bin, dir, filepath.Join(dir, "serve1.log"))
	defer func() {
		if srv.Process != nil {
			srv.Process.Kill()
			srv.Wait()
		}
	}()
	run := exec.CommandContext(ctx, bin, "run", "-v", "--backend", "frames", "--frames", "8000", "--frame-size", "200",
		"--attach", "unix:"+filepath.Join(dir, "a.sock"), "--attach", "unix:"+filepath.Join(dir, "b.sock"))
	var out bytes.Buffer
	run.Stdout = &out
	stderr, err := run.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	// Kill the server once frames flow (the drivers' first info line
	// is the worker's start; wait a little more for traffic).
	lines := make(chan string, 1024)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var logs []string
	time.Sleep(1500 * time.Millisecond)
	if err := srv.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	srv.Wait()
	time.Sleep(200 * time.Millisecond)
	restarted := time.Now()
	srv = startChipServer(t, ctx, bin, dir, filepath.Join(dir, "serve2.log"))
	for l := range lines {
		logs = append(logs, l)
	}
	err = run.Wait()
	status := run.ProcessState.ExitCode()
	report := out.String()
	t.Logf("run exit status %d (%v)\n%s", status, err, report)
	if status != 0 && status != 1 {
		t.Errorf("run exit status %d, want 0 (clean) or 1 (frames lost, all accounted)", status)
	}
	if strings.Contains(strings.ToLower(report), "unaccounted") {
		t.Errorf("the audit does not balance after the reset")
	}
	if n := strings.Count(report, "chip found reset"); n != 2 {
		t.Errorf("%d drivers report a chip reset, want 2", n)
	}
	// How long after the fresh server started each driver had its chip
	// back (from the drivers' log timestamps).
	re := regexp.MustCompile(`^(\S+)\s+INFO\s+driver\s+.*chip re-initialised after a reset.*"if": "(\w)"`)
	back := 0
	for _, l := range logs {
		m := re.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		at, err := time.Parse("2006-01-02T15:04:05.000Z0700", m[1])
		if err != nil {
			t.Errorf("log time %q: %v", m[1], err)
			continue
		}
		back++
		t.Logf("driver %s: chip back %v after the fresh server started", m[2], at.Sub(restarted).Round(time.Millisecond))
	}
	if back < 2 {
		t.Errorf("%d drivers logged their chip re-initialised, want 2:\n%s", back, strings.Join(logs, "\n"))
	}
}
