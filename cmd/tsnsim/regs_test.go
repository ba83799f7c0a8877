package main

import (
	"bytes"
	"context"
	"fmt"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"go.uber.org/goleak"

	"tsnsim/chip"
	"tsnsim/chip/regs"
	"tsnsim/driver"
	"tsnsim/spibridge/spitest"
)

// runRegs runs tsnsim regs in-process and returns its status and output.
func runRegs(t *testing.T, args ...string) (status int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	status = run(append([]string{"regs"}, args...), &out, &errOut)
	return status, out.String(), errOut.String()
}

// resetValue is the reset value of a register of a default emulated chip.
func resetValue(off uint16) uint64 {
	c := chip.New(chip.Config{})
	return c.Register(off)
}

// TestRegsReadResetValues: reading TSN_SYSTEM_INFO and TSN_MAC_ADDR (by
// name, any case, and by offset) prints both halves, the 64-bit reset
// value and the decoded fields.
func TestRegsReadResetValues(t *testing.T) {
	info, mac := resetValue(regs.TSNSystemInfo), resetValue(regs.TSNMACAddr)
	for _, c := range []struct {
		target string
		want   []string
	}{
		{"TSN_SYSTEM_INFO", []string{
			fmt.Sprintf(`TSN_SYSTEM_INFO_H\s+0x0278\s+%#08x`, uint32(info>>32)),
			`TSN_SYSTEM_INFO_L\s+0x027c\s+0x00000000`,
			fmt.Sprintf(`value\s+%#016x`, info),
			`YEAR\s+26\n`, `MONTH\s+11\n`, `DAY\s+21\n`, `COMMIT\s+1\n`}},
		{"tsn_mac_addr", []string{
			`TSN_MAC_ADDR_H\s+0x0280\s+0x00000200`, `TSN_MAC_ADDR_L\s+0x0284\s+0x00000001`,
			fmt.Sprintf(`value\s+%#016x`, mac), `MAC_ADDR\s+02:00:00:00:00:01`}},
		{"0x0280", []string{`TSN_MAC_ADDR_H`, `MAC_ADDR\s+02:00:00:00:00:01`}},
		{"0x284", []string{`^TSN_MAC_ADDR_L\s+0x0284\s+RW\s+0x00000001\n$`}},
		{"TSN_SYSTEM_INFO_H", []string{`^TSN_SYSTEM_INFO_H\s+0x0278\s+RO\s+0x1a0b1501\n\s+YEAR\s+26\n\s+MONTH\s+11\n\s+DAY\s+21\n\s+COMMIT\s+1\n$`}},
		{"TSN_SYSCOUNT_L", []string{`^TSN_SYSCOUNT_L\s+0x028c\s+LIVE\s+0x[0-9a-f]{8}\n$`}},
		{"0x800", []string{`\(unmapped 0x0800\)\s+0x0800\s+0x00000000\s+not in the register map`}},
	} {
		status, out, errOut := runRegs(t, "--emulated", "read", c.target)
		if status != 0 {
			t.Fatalf("read %s: status %d\n%s%s", c.target, status, out, errOut)
		}
		for _, re := range c.want {
			if !regexp.MustCompile(re).MatchString(out) {
				t.Errorf("read %s: output does not match %q:\n%s", c.target, re, out)
			}
		}
	}
}

// TestRegsWriteReadBack: a write of a RW register is read back in the
// same command, and a later command over the same transport reads it
// too; writing one half leaves the other alone.
func TestRegsWriteReadBack(t *testing.T) {
	status, out, errOut := runRegs(t, "write", "TSN_MAC_ADDR", "02:aa:bb:cc:dd:ee", "--emulated")
	if status != 0 || errOut != "" || !strings.Contains(out, "wrote 0x000002aabbccddee to TSN_MAC_ADDR (H then L)") ||
		!regexp.MustCompile(`MAC_ADDR\s+02:aa:bb:cc:dd:ee`).MatchString(out) {
		t.Errorf("status %d\n%s%s", status, out, errOut)
	}

	e := newEmulatedChip(nil)
	defer e.Close()
	d := driver.New(e, driver.Config{})
	var out2, errOut2 bytes.Buffer
	for _, args := range [][]string{{"write", "TSN_TX_CONTROL_L", "0x00100040"}, {"read", "TSN_TX_CONTROL"}} {
		op, err := parseRegsOp(args)
		if err != nil {
			t.Fatal(err)
		}
		if status := op.run(context.Background(), d, &out2, &errOut2); status != 0 {
			t.Fatalf("%q: status %d\n%s", args, status, errOut2.String())
		}
	}
	if got := e.chip.Register(regs.TSNTxControl); got != 0x00100040 {
		t.Errorf("TSN_TX_CONTROL %#x after the write, want 0x00100040", got)
	}
	for _, re := range []string{`ETHERNET_INTER_FRAME_GAP\s+16\n`, `HOST_FIFO_FULL_LIMIT\s+64\n`} {
		if n := len(regexp.MustCompile(re).FindAllString(out2.String(), -1)); n != 2 {
			t.Errorf("%q appears %d times (write read-back, then read), want 2:\n%s", re, n, out2.String())
		}
	}
	if !regexp.MustCompile(`TSN_TX_CONTROL_L\s+0x02a4\s+RW\s+0x00100040\n`).MatchString(out2.String()) ||
		!regexp.MustCompile(`TSN_TX_CONTROL_H\s+0x02a0\s+0x00000000\n(.*\n)?\s+value\s+0x0000000000100040\n`).MatchString(out2.String()) {
		t.Errorf("read-back of the half or the whole register is wrong:\n%s", out2.String())
	}
}

// TestRegsWriteReadOnly: a write to a read-only register is performed
// (the chip counts and ignores it), warned about on stderr, and exits 0.
func TestRegsWriteReadOnly(t *testing.T) {
	e := newEmulatedChip(nil)
	defer e.Close()
	before := e.chip.Register(regs.TSNSystemInfo)
	op, err := parseRegsOp([]string{"write", "TSN_SYSTEM_INFO", "5"})
	if err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	if status := op.run(context.Background(), driver.New(e, driver.Config{}), &out, &errOut); status != 0 {
		t.Fatalf("status %d: %s", status, errOut.String())
	}
	if !strings.Contains(errOut.String(), "warning: TSN_SYSTEM_INFO is read-only (RO); the chip ignores the write") {
		t.Errorf("stderr %q", errOut.String())
	}
	if e.chip.Register(regs.TSNSystemInfo) != before || !strings.Contains(out.String(), fmt.Sprintf("%#016x", before)) {
		t.Errorf("register changed or not read back:\n%s", out.String())
	}
	if n := e.chip.Stats().ReadOnlyWrites; n != 2 {
		t.Errorf("chip counted %d read-only writes, want 2 (H and L)", n)
	}
	status, _, stderr := runRegs(t, "--emulated", "write", "FT_TOTAL_TX_FRAME_CNT_L", "1")
	if status != 0 || !strings.Contains(stderr, "FT_TOTAL_TX_FRAME_CNT_L is read-only (CNT)") {
		t.Errorf("counter write: status %d, stderr %q", status, stderr)
	}
}

// TestRegsDumpListsEveryRegister: dump prints a header and one row per
// register of regs.Map, in map order, each exactly once, with its offset,
// access, value and every field decoded as NAME=value.
func TestRegsDumpListsEveryRegister(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	status, out, errOut := runRegs(t, "dump", "--emulated")
	if status != 0 || errOut != "" {
		t.Fatalf("status %d\n%s", status, errOut)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != len(regs.Map)+1 || !regexp.MustCompile(`^REGISTER\s+OFFSET\s+ACCESS\s+VALUE\s+FIELDS$`).MatchString(lines[0]) {
		t.Fatalf("%d lines, want a header and %d rows:\n%s", len(lines), len(regs.Map), out)
	}
	seen := map[string]int{}
	for i, line := range lines[1:] {
		cols := strings.Fields(line)
		def := regs.Map[i]
		seen[cols[0]]++
		if len(cols) < 4 || cols[0] != def.Name || cols[1] != fmt.Sprintf("%#04x", def.Offset) || cols[2] != def.Access.String() ||
			!regexp.MustCompile(`^0x[0-9a-f]{16}$`).MatchString(cols[3]) {
			t.Errorf("row %d %q: want %s %#04x %s 0x<16 hex digits>", i, line, def.Name, def.Offset, def.Access)
			continue
		}
		var fields []string
		for _, f := range cols[4:] {
			name, _, ok := strings.Cut(f, "=")
			if !ok {
				t.Errorf("%s: field %q is not NAME=value", def.Name, f)
			}
			fields = append(fields, name)
		}
		var want []string
		for _, f := range def.Fields {
			want = append(want, f.Name)
		}
		if strings.Join(fields, " ") != strings.Join(want, " ") {
			t.Errorf("%s: fields %v, want %v", def.Name, fields, want)
		}
	}
	for _, def := range regs.Map {
		if seen[def.Name] != 1 {
			t.Errorf("%s listed %d times", def.Name, seen[def.Name])
		}
	}
	for _, want := range []string{"YEAR=26 MONTH=11 DAY=21 COMMIT=1", "MAC_ADDR=02:00:00:00:00:01", "MAX_FRAME_LENGTH=1560 ", "HOST_FIFO_EMPTY=1"} {
		if !strings.Contains(out, want) {
			t.Errorf("dump lacks %q", want)
		}
	}
}

// TestRegsDumpWarnsDeadMISO: a bus that answers all ones or all zeros is
// recognised as wiring or power, not as register contents.
func TestRegsDumpWarnsDeadMISO(t *testing.T) {
	for fill, want := range map[byte]string{0xFF: "MISO not connected", 0x00: "MISO stuck low"} {
		f := spitest.NewFake()
		for range 2*len(regs.Map) + 1 { // SYSCOUNT takes three reads
			f.Push(bytes.Repeat([]byte{fill}, 8))
		}
		op, _ := parseRegsOp([]string{"dump"})
		var out, errOut bytes.Buffer
		if status := op.run(context.Background(), driver.New(f, driver.Config{}), &out, &errOut); status != 0 {
			t.Fatalf("fill %#x: status %d: %s", fill, status, errOut.String())
		}
		if !strings.Contains(errOut.String(), want) || !strings.Contains(errOut.String(), "docs/bring-up.md") {
			t.Errorf("fill %#x: stderr %q, want %q", fill, errOut.String(), want)
		}
	}
}

// TestRegsTransferError: a failing transfer stops the command with
// status 1 and the transport's error.
func TestRegsTransferError(t *testing.T) {
	f := spitest.NewFake() // no replies: every transfer fails
	op, _ := parseRegsOp([]string{"read", "TSN_SYSTEM_INFO"})
	var out, errOut bytes.Buffer
	if status := op.run(context.Background(), driver.New(f, driver.Config{}), &out, &errOut); status != exitFail ||
		!strings.Contains(errOut.String(), "driver: read register 0x0278") {
		t.Errorf("status %d, stderr %q", status, errOut.String())
	}
}

// TestRegsBadCommandLines: every bad command line is refused with status 2
// and a message before any transport is opened; a missing spidev node is
// status 1 with the bring-up hint.
func TestRegsBadCommandLines(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--emulated", "read", "TSN_NO_SUCH_REG"}, `unknown register "TSN_NO_SUCH_REG"`},
		{[]string{"--emulated", "read", "TSN_MAC_ADDR_X"}, "unknown register"},
		{[]string{"--emulated", "read", "0x27a"}, "multiples of 4"},
		{[]string{"--emulated", "read", "0x1000"}, "12-bit register space"},
		{[]string{"--emulated", "read", "0xzz"}, "not a number"},
		{[]string{"--emulated", "write", "TSN_SYSTEM_CONTROL_L", "0x100000000"}, "32-bit number"},
		{[]string{"--emulated", "write", "TSN_MAC_ADDR", "02:00:00"}, "MAC address"},
		{[]string{"--emulated", "write", "TSN_MAC_ADDR"}, "write NAME|OFFSET VALUE"},
		{[]string{"--emulated", "read"}, "read NAME|OFFSET"},
		{[]string{"--emulated", "dump", "extra"}, "dump and no arguments"},
		{[]string{"--emulated", "peek", "x"}, `unknown subcommand "peek"`},
		{[]string{"--emulated"}, "missing subcommand"},
		{[]string{"dump"}, "--spidev PATH (real hardware) or --emulated"},
		{[]string{"dump", "--emulated", "--spidev", "/dev/spidev0.0"}, "exclude each other"},
		{[]string{"dump", "--emulated", "--speed", "1000000"}, "--speed applies to --spidev only"},
		{[]string{"dump", "--spidev", "/dev/spidev0.0", "--speed", "0"}, "--speed 0"},
		{[]string{"dump", "--no-such-flag"}, "unknown flag"},
	} {
		status, out, errOut := runRegs(t, c.args...)
		if status != exitUsage || !strings.Contains(errOut, c.want) || out != "" {
			t.Errorf("%q: status %d, stderr %q; want %d and %q", c.args, status, errOut, exitUsage, c.want)
		}
	}
	status, _, errOut := runRegs(t, "dump", "--spidev", "/dev/spidev-none9.9")
	if status != exitFail || !strings.Contains(errOut, syscall.ENOENT.Error()) || !strings.Contains(errOut, "dtparam=spi=on") {
		t.Errorf("missing spidev: status %d, stderr %q", status, errOut)
	}
}

func TestRegsHelp(t *testing.T) {
	status, out, _ := runRegs(t, "--help")
	if status != 0 {
		t.Fatalf("status %d", status)
	}
	for _, want := range []string{"tsnsim regs [flags] read NAME|OFFSET", "--spidev", "--speed", "--emulated", "--verbose", "read-only"} {
		if !strings.Contains(out, want) {
			t.Errorf("help lacks %q", want)
		}
	}
	var top bytes.Buffer
	run([]string{"help"}, &top, &top)
	if !strings.Contains(top.String(), "tsnsim regs") {
		t.Errorf("tsnsim help does not mention regs:\n%s", top.String())
	}
}
