package main

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestMain lets a test run the tsnsim command in a child process (so it
// can be sent signals): with TSNSIM_MAIN_ARGS set, the test binary is
// tsnsim.
func TestMain(m *testing.M) {
	if args := os.Getenv("TSNSIM_MAIN_ARGS"); args != "" {
		os.Exit(run(strings.Fields(args), os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

func skipUnlessTAP(t *testing.T, tools ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for TAP devices and namespaces (CI runs as root)")
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		t.Skipf("needs /dev/net/tun: %v", err)
	}
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s in PATH (apt-get install iproute2 iputils-ping arping tshark)", tool)
		}
	}
}

// TestTAPTeardownOnSIGTERM starts `tsnsim run --backend tap --netns
// --pcap FILE`, pings and arpings through it, stops it with SIGTERM, and
// checks that no interface or namespace of its remains, that it reported
// success, and that tshark reads the ICMP and ARP frames from the pcap.
func TestTAPTeardownOnSIGTERM(t *testing.T) {
	skipUnlessTAP(t, "ip", "ping", "arping", "tshark")
	prefix := fmt.Sprintf("tsnx%04d", rand.IntN(10000))
	pcapFile := filepath.Join(t.TempDir(), "cable.pcap")
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "TSNSIM_MAIN_ARGS=run --backend tap --netns --tap-prefix "+prefix+" --pcap "+pcapFile)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		exec.Command("ip", "netns", "del", prefix+"-a").Run()
		exec.Command("ip", "netns", "del", prefix+"-b").Run()
	})
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var out []string
	timeout := time.After(30 * time.Second)
	for ready := false; !ready; {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("tsnsim exited before ready:\n%s\n%s", strings.Join(out, "\n"), stderr.String())
			}
			out = append(out, l)
			ready = strings.HasPrefix(l, "ready:")
		case <-timeout:
			t.Fatalf("tsnsim not ready after 30s:\n%s", strings.Join(out, "\n"))
		}
	}
	a, b := prefix+"-a", prefix+"-b"
	if o, err := exec.Command("ip", "netns", "exec", a, "ping", "-c", "5", "-i", "0.01", "-W", "1", "10.0.0.2").CombinedOutput(); err != nil {
		t.Errorf("ping: %v\n%s", err, o)
	}
	if o, err := exec.Command("ip", "netns", "exec", b, "arping", "-c", "3", "-W", "0.05", "-i", b, "10.0.0.1").CombinedOutput(); err != nil {
		t.Errorf("arping: %v\n%s", err, o)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for l := range lines {
		out = append(out, l)
	}
	err = cmd.Wait()
	report := strings.Join(out, "\n")
	status := 0
	if ee, ok := err.(*exec.ExitError); ok {
		status = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	checkUnderLoad(t, status, report)
	if o, _ := exec.Command("ip", "netns", "list").CombinedOutput(); strings.Contains(string(o), prefix) {
		t.Errorf("namespaces left behind:\n%s", o)
	}
	if o, _ := exec.Command("ip", "link", "show").CombinedOutput(); strings.Contains(string(o), prefix) {
		t.Errorf("interfaces left behind:\n%s", o)
	}
	for filter, min := range map[string]int{"icmp.type == 8": 5, "icmp.type == 0": 5, "arp.opcode == 1": 3, "arp.opcode == 2": 3} {
		o, err := exec.Command("tshark", "-r", pcapFile, "-Y", filter).Output()
		if err != nil {
			t.Errorf("tshark -r %s -Y %q: %v", pcapFile, filter, err)
			continue
		}
		if n := strings.Count(string(o), "\n"); n < min {
			t.Errorf("tshark -Y %q: %d frames, want at least %d:\n%s", filter, n, min, o)
		}
	}
}

// TestTAPWithoutRoot: as a non-root user the tap backend fails with an
// error that says what is missing. As root this is covered by host/tap's
// own tests of the prerequisite check.
func TestTAPWithoutRoot(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("running as root: the missing-privilege path is tested in host/tap")
	}
	var out, errOut strings.Builder
	if status := run([]string{"run", "--backend", "tap"}, &out, &errOut); status != exitFail {
		t.Fatalf("status %d, want %d", status, exitFail)
	}
	if !strings.Contains(out.String()+errOut.String(), "root") {
		t.Errorf("error does not mention root:\n%s%s", out.String(), errOut.String())
	}
}

// TestTAPRestartAfterSIGKILL: a `tsnsim run --backend tap --netns` killed
// with SIGKILL cannot clean up, so its namespaces stay in /run/netns;
// the next run with the same names removes them (they carry the dead
// run's owner mark), says so, and works. A run whose names are held by a
// live tsnsim is refused with a message naming its pid.
func TestTAPRestartAfterSIGKILL(t *testing.T) {
	skipUnlessTAP(t, "ip", "ping")
	prefix := fmt.Sprintf("tsnk%04d", rand.IntN(10000))
	t.Cleanup(func() {
		exec.Command("ip", "netns", "del", prefix+"-a").Run()
		exec.Command("ip", "netns", "del", prefix+"-b").Run()
	})
	args := []string{"run", "--backend", "tap", "--netns", "--tap-prefix", prefix}
	first := startTsnsim(t, "ready:", args...)
	if err := first.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	first.cmd.Wait()
	o, _ := exec.Command("ip", "netns", "list").CombinedOutput()
	if !strings.Contains(string(o), prefix+"-a") || !strings.Contains(string(o), prefix+"-b") {
		t.Fatalf("after SIGKILL the namespaces are gone already (nothing to test):\n%s", o)
	}

	second := startTsnsim(t, "ready:", args...)
	if o, err := exec.Command("ip", "netns", "exec", prefix+"-a", "ping", "-c", "3", "-i", "0.05", "-W", "2", "10.0.0.2").CombinedOutput(); err != nil {
		t.Errorf("ping after the restart: %v\n%s", err, o)
	}
	// A third run while the second lives: refused, naming the owner.
	var out, errOut strings.Builder
	status := run(args, &out, &errOut)
	msg := out.String() + errOut.String()
	if status == 0 || !strings.Contains(msg, "in use by a running tsnsim") ||
		!strings.Contains(msg, fmt.Sprintf("pid %d", second.cmd.Process.Pid)) {
		t.Errorf("run beside a live one: status %d:\n%s", status, msg)
	}
	report, err := second.stop()
	status = 0
	if ee, ok := err.(*exec.ExitError); ok {
		status = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	checkUnderLoad(t, status, report)
	if log := second.stderr.String(); strings.Count(log, "left by a tsnsim that is gone") != 2 {
		t.Errorf("the removal of the two stale namespaces is not logged:\n%s", log)
	}
	if o, _ := exec.Command("ip", "netns", "list").CombinedOutput(); strings.Contains(string(o), prefix) {
		t.Errorf("namespaces left behind:\n%s", o)
	}
}
