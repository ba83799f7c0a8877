package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestRunTSN: the TSN workload in real time. Only what holds on a busy
// machine is asserted: every frame accounted for, no SPI transfer from
// transmit, the reports printed (timing figures live in the driver's
// virtual-time tests). Window violations are not asserted here: a
// transmitter that wakes later than the chip's backdate bound (250 us
// with the precise timer) on a contended machine puts a frame on the
// line after its window closed, which the report counts and fails.
func TestRunTSN(t *testing.T) {
	var out, errOut bytes.Buffer
	status := run([]string{"run", "--backend", "frames", "--frames", "300", "--drift", "a=+25,b=-25",
		"--taprio", "num_tc 4 map 0 1 2 3 base-time 0 sched-entry S 08 100000 sched-entry S 07 900000 fail-policy 3 retry"}, &out, &errOut)
	if strings.Contains(out.String(), "UNACCOUNTED") {
		t.Errorf("status %d\n%s\n%s", status, out.String(), errOut.String())
	}
	for _, want := range []string{"clock model a: error vs SYSCOUNT", "SPI transfers from transmit: 0",
		"taprio b class 3:", "window violations (frames on the wire outside an open interval of their class)", "stamps b: TX"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

func TestRunTSNBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"run", "--taprio", "num_tc 1 sched-entry S 1 1000"}, // not the frames backend
		{"run", "--backend", "frames", "--taprio", "bogus"},
		{"run", "--backend", "frames", "--clock-model", "--clock-sample", "0"},
		{"run", "--backend", "frames", "--drift", "c=5"},
		{"run", "--backend", "frames", "--clock-model", "--drift", "a=x"},
		{"run", "--backend", "frames", "--drift", "a=5"}, // no TSN workload or gPTP
		{"run", "--plot", "x.svg"},                       // --plot without --ptp
		{"run", "--backend", "tap", "--ptp"},
		{"run", "--ptp", "--ptp-report", "0s"},
		{"run", "--backend", "frames", "--clock-sample", "1s"}, // no clock model
		{"run", "--backend", "frames", "--clock-model", "--tsn-interval", "-1s"},
	} {
		var out, errOut bytes.Buffer
		if status := run(args, &out, &errOut); status != exitUsage {
			t.Errorf("%q: status %d, want %d", args, status, exitUsage)
		}
		if errOut.Len() == 0 {
			t.Errorf("%q: no error message", args)
		}
	}
}

// TestRunPTP: gPTP in real time on the frames backend; asserted is what
// holds on a busy machine: the ports exchange every message kind, every
// frame is accounted for (PTP frames included), the plot is written.
func TestRunPTP(t *testing.T) {
	plot := filepath.Join(t.TempDir(), "offset.svg")
	var out, errOut bytes.Buffer
	status := run([]string{"run", "--backend", "frames", "--frames", "100", "--ptp", "--ptp-time", "3s",
		"--drift", "a=+25,b=-25", "--plot", plot}, &out, &errOut)
	if status != 0 {
		t.Fatalf("status %d\n%s\n%s", status, out.String(), errOut.String())
	}
	for _, want := range []string{"gPTP: a grandmaster", "SYNC:", "FOLLOW_UP:", "PDELAY_RESP_FOLLOW_UP:", "plot: follower offset curve"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	if b, err := os.ReadFile(plot); err != nil || !bytes.Contains(b, []byte("<svg")) {
		t.Errorf("plot: %v", err)
	}
}

// TestRunPTPPcapTshark: tshark's PTP dissector reads every gPTP message
// kind of a --ptp run's pcap (Sync 0x0, Pdelay_Req 0x2, Pdelay_Resp 0x3,
// Follow_Up 0x8, Pdelay_Resp_Follow_Up 0xa) and finds none malformed and
// no expert warning.
func TestRunPTPPcapTshark(t *testing.T) {
	if _, err := exec.LookPath("tshark"); err != nil {
		t.Skipf("needs tshark in PATH (apt-get install tshark): %v", err)
	}
	pcapFile := filepath.Join(t.TempDir(), "ptp.pcap")
	var out, errOut bytes.Buffer
	status := run([]string{"run", "--backend", "frames", "--frames", "50", "--ptp", "--ptp-time", "3s", "--pcap", pcapFile}, &out, &errOut)
	if strings.Contains(out.String(), "UNACCOUNTED") {
		t.Fatalf("status %d\n%s\n%s", status, out.String(), errOut.String())
	}
	types, err := exec.Command("tshark", "-r", pcapFile, "-Y", "ptp", "-T", "fields", "-e", "ptp.v2.messagetype").Output()
	if err != nil {
		t.Fatalf("tshark: %v", err)
	}
	count := map[string]int{}
	for _, f := range strings.Fields(string(types)) {
		count[f]++
	}
	t.Logf("PTP messages by type in the pcap: %v", count)
	for _, want := range []string{"0x00", "0x02", "0x03", "0x08", "0x0a"} {
		if count[want] == 0 {
			t.Errorf("tshark read no PTP message of type %s: %v", want, count)
		}
	}
	bad, err := exec.Command("tshark", "-r", pcapFile, "-Y", `ptp && (_ws.malformed || _ws.expert.severity >= "Warning")`).Output()
	if err != nil {
		t.Fatalf("tshark: %v", err)
	}
	if s := strings.TrimSpace(string(bad)); s != "" {
		t.Errorf("tshark finds PTP messages malformed or warned about:\n%s", s)
	}
}
