package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/pflag"
	"go.uber.org/zap"

	"tsnsim/chip"
	"tsnsim/chip/regs"
	"tsnsim/driver"
	"tsnsim/spibridge"
	"tsnsim/spibridge/socket"
	"tsnsim/spibridge/spidev"
)

// regsOptions are the flags of tsnsim regs.
type regsOptions struct {
	attach    string
	spidev    string
	speed     uint32
	emulated  bool
	verbosity int
}

const regsUsage = `Usage: tsnsim regs [flags] read NAME|OFFSET
       tsnsim regs [flags] write NAME|OFFSET VALUE
       tsnsim regs [flags] dump

Reads and writes LAN1QTSN registers through the driver core, like the vendor's
READ_REG/WRITE_REG ioctl tool, without bringing the interface up.

NAME is a register of the map (TSN_SYSTEM_INFO), or one 32-bit half of it
(TSN_SYSCOUNT_H, TSN_SYSCOUNT_L); case does not matter. OFFSET is a register
address (0x0278): a register's offset means the whole 64-bit register,
offset+4 its L half; offsets outside the map access that 32-bit address.
A whole register is read H then L (TSN_SYSCOUNT tear-free: H, L, H) and
written H then L with all 64 bits of VALUE; write NAME_L or NAME_H to change
one half only. VALUE is decimal or 0x-hex (TSN_MAC_ADDR also takes
02:00:00:00:00:01). A write to a read-only register is performed (the chip
ignores it) with a warning on stderr and exit status 0; the register is read
back after every write. dump lists every register with its decoded fields.

Exit status: 0 done, 1 the transport or a transfer failed, 2 bad command line.

Flags:
`

func (o *regsOptions) flags() *pflag.FlagSet {
	fs := pflag.NewFlagSet("regs", pflag.ContinueOnError)
	fs.SortFlags = false
	fs.StringVar(&o.attach, "attach", "", "talk to a chip served by `tsnsim chip serve` at ADDR: unix:PATH or tcp:HOST:PORT")
	fs.StringVar(&o.spidev, "spidev", "", "talk to a real chip on this spidev node, such as /dev/spidev0.0 (see docs/bring-up.md)")
	fs.Uint32Var(&o.speed, "speed", spibridge.DefaultClockHz, "with --spidev: SPI clock in Hz")
	fs.BoolVar(&o.emulated, "emulated", false, "talk to an emulated chip at its reset state (in-process, default SPI timing)")
	fs.CountVarP(&o.verbosity, "verbose", "v", "log more: -v info, -vv debug")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), regsUsage)
		fs.PrintDefaults()
	}
	return fs
}

// validate checks the flags: exactly one transport, and no flag that the
// chosen transport would ignore.
func (o *regsOptions) validate(fs *pflag.FlagSet) error {
	chosen := 0
	for _, c := range []bool{o.attach != "", o.spidev != "", o.emulated} {
		if c {
			chosen++
		}
	}
	switch {
	case chosen > 1:
		return errors.New("--attach, --spidev and --emulated exclude each other")
	case chosen == 0:
		return errors.New("choose the chip: --attach ADDR (a chip server), --spidev PATH (real hardware) or --emulated")
	case fs.Changed("speed") && o.spidev == "":
		return errors.New("--speed applies to --spidev only")
	case o.speed == 0:
		return errors.New("--speed 0: want a positive SPI clock in Hz")
	}
	return nil
}

func regsCommand(args []string, stdout, stderr io.Writer) int {
	var o regsOptions
	fs := o.flags()
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			fs.SetOutput(stdout)
			fs.Usage()
			return 0
		}
		fmt.Fprintf(stderr, "tsnsim regs: %v (see --help)\n", err)
		return exitUsage
	}
	if err := o.validate(fs); err != nil {
		fmt.Fprintf(stderr, "tsnsim regs: %v\n", err)
		return exitUsage
	}
	op, err := parseRegsOp(fs.Args())
	if err != nil {
		fmt.Fprintf(stderr, "tsnsim regs: %v (see --help)\n", err)
		return exitUsage
	}
	log := newLogger(stderr, o.verbosity)
	defer log.Sync() //nolint:errcheck // nothing to do about a failed stderr sync

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	tr, err := openRegsTransport(&o, log)
	if err != nil {
		fmt.Fprintf(stderr, "tsnsim regs: %v\n", err)
		return exitFail
	}
	status := op.run(ctx, driver.New(tr, driver.Config{Name: "regs", Logger: log}), stdout, stderr)
	if err := tr.Close(); err != nil {
		fmt.Fprintf(stderr, "tsnsim regs: %v\n", err)
		status = max(status, exitFail)
	}
	return status
}

// openRegsTransport opens the transport the flags choose: the one place
// where a transport is picked for tsnsim regs.
func openRegsTransport(o *regsOptions, log *zap.Logger) (spibridge.Transport, error) {
	switch {
	case o.spidev != "":
		s, err := spidev.Open(spidev.Config{Path: o.spidev, SpeedHz: o.speed, Logger: log})
		if err != nil {
			return nil, err
		}
		return s, nil
	case o.emulated:
		return newEmulatedChip(log), nil
	case o.attach != "":
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		// A register tool: no interrupts, so it takes no driver slot.
		return socket.Dial(ctx, o.attach, socket.ClientConfig{Logger: log, NoInterrupts: true})
	}
	return nil, errors.New("no transport chosen")
}

// emulatedChip is a started chip model at its reset state behind an
// in-process bus with the default timing; Close stops both.
type emulatedChip struct {
	*spibridge.InProcess
	chip *chip.Chip
}

func newEmulatedChip(log *zap.Logger) *emulatedChip {
	c := chip.New(chip.Config{Name: "emulated", Logger: log})
	c.Start()
	return &emulatedChip{InProcess: spibridge.NewInProcess(c, spibridge.DefaultTiming(), log), chip: c}
}

// Close implements spibridge.Transport.
func (e *emulatedChip) Close() error {
	err := e.InProcess.Close()
	e.chip.Close()
	return err
}

// regsOp is one parsed regs subcommand.
type regsOp struct {
	verb   string // read, write or dump
	target regTarget
	value  uint64
}

func parseRegsOp(args []string) (regsOp, error) {
	if len(args) == 0 {
		return regsOp{}, errors.New("missing subcommand: read, write or dump")
	}
	op := regsOp{verb: args[0]}
	want := map[string]int{"read": 2, "write": 3, "dump": 1}[op.verb]
	switch {
	case want == 0:
		return op, fmt.Errorf("unknown subcommand %q: want read, write or dump", op.verb)
	case len(args) != want:
		return op, fmt.Errorf("%s: want %s", op.verb, map[string]string{
			"read": "read NAME|OFFSET", "write": "write NAME|OFFSET VALUE", "dump": "dump and no arguments"}[op.verb])
	case op.verb == "dump":
		return op, nil
	}
	var err error
	if op.target, err = parseTarget(args[1]); err != nil {
		return op, err
	}
	if op.verb == "write" {
		op.value, err = op.target.parseValue(args[2])
	}
	return op, err
}

// regTarget is what a NAME or OFFSET names: a whole 64-bit register, one
// 32-bit half of a declared register, or a 32-bit address outside the
// map (def nil).
type regTarget struct {
	def   *regs.Def
	whole bool
	half  regs.Half
	addr  uint16 // the register's offset when whole, else the half's address
}

func parseTarget(s string) (regTarget, error) {
	if s != "" && s[0] >= '0' && s[0] <= '9' {
		return parseOffset(s)
	}
	name := strings.ToUpper(s)
	for i := range regs.Map {
		d := &regs.Map[i]
		switch name {
		case d.Name:
			return regTarget{def: d, whole: true, addr: d.Offset}, nil
		case d.Name + "_H":
			return regTarget{def: d, half: regs.High, addr: d.Offset}, nil
		case d.Name + "_L":
			return regTarget{def: d, half: regs.Low, addr: d.Offset + 4}, nil
		}
	}
	return regTarget{}, fmt.Errorf("unknown register %q ('tsnsim regs dump' lists them all)", s)
}

func parseOffset(s string) (regTarget, error) {
	n, err := strconv.ParseUint(s, 0, 16)
	switch {
	case err != nil:
		return regTarget{}, fmt.Errorf("register offset %q: not a number", s)
	case n > 0xFFF:
		return regTarget{}, fmt.Errorf("register offset %q: beyond the 12-bit register space (max 0xffc)", s)
	case n%4 != 0:
		return regTarget{}, fmt.Errorf("register offset %q: registers are 32-bit halves at multiples of 4", s)
	}
	addr := uint16(n)
	d, h, ok := regs.Resolve(addr)
	switch {
	case !ok:
		return regTarget{addr: addr}, nil
	case h == regs.High:
		return regTarget{def: d, whole: true, addr: addr}, nil
	}
	return regTarget{def: d, half: regs.Low, addr: addr}, nil
}

// name is how the target is printed.
func (t regTarget) name() string {
	switch {
	case t.def == nil:
		return fmt.Sprintf("(unmapped %#04x)", t.addr)
	case t.whole:
		return t.def.Name
	case t.half == regs.High:
		return t.def.Name + "_H"
	}
	return t.def.Name + "_L"
}

func (t regTarget) parseValue(s string) (uint64, error) {
	if t.whole && t.def.Offset == regs.TSNMACAddr && strings.Contains(s, ":") {
		mac, err := net.ParseMAC(s)
		if err != nil || len(mac) != 6 {
			return 0, fmt.Errorf("value %q: not a 6-byte MAC address", s)
		}
		var v uint64
		for _, b := range mac {
			v = v<<8 | uint64(b)
		}
		return v, nil
	}
	bits := 32
	if t.whole {
		bits = 64
	}
	v, err := strconv.ParseUint(s, 0, bits)
	if err != nil {
		return 0, fmt.Errorf("value %q for %s: want a %d-bit number, decimal or 0x-hex", s, t.name(), bits)
	}
	return v, nil
}

func (op regsOp) run(ctx context.Context, d *driver.Driver, stdout, stderr io.Writer) int {
	var err error
	switch op.verb {
	case "read":
		err = readTarget(ctx, d, op.target, stdout)
	case "write":
		err = writeTarget(ctx, d, op.target, op.value, stdout, stderr)
	case "dump":
		err = dump(ctx, d, stdout, stderr)
	}
	if err != nil {
		fmt.Fprintf(stderr, "tsnsim regs: %v\n", err)
		return exitFail
	}
	return 0
}

// read64 reads a whole register: SYSCOUNT tear-free, others H then L.
func read64(ctx context.Context, d *driver.Driver, def *regs.Def) (uint64, error) {
	if def.Offset == regs.TSNSysCount {
		return d.ReadSysCount(ctx)
	}
	return d.ReadRegister64(ctx, def.Offset)
}

func readTarget(ctx context.Context, d *driver.Driver, t regTarget, stdout io.Writer) error {
	tw := tabwriter.NewWriter(stdout, 0, 8, 2, ' ', 0)
	if t.whole {
		v, err := read64(ctx, d, t.def)
		if err != nil {
			return err
		}
		fmt.Fprintln(tw, row(t.def.Name, fmt.Sprintf("%#04x", t.def.Offset), t.def.Access.String(), t.def.Doc))
		fmt.Fprintf(tw, "  %s_H\t%#04x\t%#08x\n", t.def.Name, t.def.Offset, uint32(v>>32))
		fmt.Fprintf(tw, "  %s_L\t%#04x\t%#08x\n", t.def.Name, t.def.Offset+4, uint32(v))
		fmt.Fprintf(tw, "  value\t\t%#016x\n", v)
		for _, f := range t.def.Fields {
			fmt.Fprintf(tw, "  %s\t\t%s\n", f.Name, fieldValue(f, v))
		}
		return tw.Flush()
	}
	v, err := d.ReadRegister(ctx, t.addr)
	if err != nil {
		return err
	}
	if t.def == nil {
		fmt.Fprintf(tw, "%s\t%#04x\t%#08x\tnot in the register map\n", t.name(), t.addr, v)
		return tw.Flush()
	}
	fmt.Fprintf(tw, "%s\t%#04x\t%s\t%#08x\n", t.name(), t.addr, t.def.Access, v)
	for _, f := range halfFields(t.def, t.half) {
		fmt.Fprintf(tw, "  %s\t\t\t%s\n", f.Name, fieldValue(f, place(v, t.half)))
	}
	return tw.Flush()
}

func writeTarget(ctx context.Context, d *driver.Driver, t regTarget, v uint64, stdout, stderr io.Writer) error {
	switch {
	case t.def == nil:
		fmt.Fprintf(stderr, "tsnsim regs: warning: %#04x is not in the register map; the chip ignores writes there\n", t.addr)
	case t.def.Access != regs.ReadWrite:
		fmt.Fprintf(stderr, "tsnsim regs: warning: %s is read-only (%s); the chip ignores the write (the emulated chip counts it)\n", t.name(), t.def.Access)
	}
	if t.whole {
		if err := d.WriteRegister(ctx, t.addr, uint32(v>>32)); err != nil {
			return err
		}
		if err := d.WriteRegister(ctx, t.addr+4, uint32(v)); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "wrote %#016x to %s (H then L); reads back:\n", v, t.name())
	} else {
		if err := d.WriteRegister(ctx, t.addr, uint32(v)); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "wrote %#08x to %s; reads back:\n", v, t.name())
	}
	return readTarget(ctx, d, t, stdout)
}

// dump reads every register of the map, in offset order, and prints one
// aligned row per register with its decoded fields. It warns when every
// half read the same all-ones or all-zeros word: the signature of an
// unwired MISO or an unpowered chip, not of a chip at any state.
func dump(ctx context.Context, d *driver.Driver, stdout, stderr io.Writer) error {
	tw := tabwriter.NewWriter(stdout, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "REGISTER\tOFFSET\tACCESS\tVALUE\tFIELDS")
	allOnes, allZeros := true, true
	for i := range regs.Map {
		def := &regs.Map[i]
		v, err := read64(ctx, d, def)
		if err != nil {
			tw.Flush()
			return err
		}
		allOnes = allOnes && v == ^uint64(0)
		allZeros = allZeros && v == 0
		fields := make([]string, len(def.Fields))
		for j, f := range def.Fields {
			fields[j] = f.Name + "=" + fieldValue(f, v)
		}
		fmt.Fprintln(tw, row(def.Name, fmt.Sprintf("%#04x", def.Offset), def.Access.String(), fmt.Sprintf("%#016x", v), strings.Join(fields, " ")))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	switch {
	case allOnes:
		fmt.Fprintln(stderr, "tsnsim regs: warning: every register reads all ones: MISO not connected or the chip not powered/configured (see docs/bring-up.md)")
	case allZeros:
		fmt.Fprintln(stderr, "tsnsim regs: warning: every register reads zero: MISO stuck low, or the chip held in reset (see docs/bring-up.md)")
	}
	return nil
}

// row joins tabwriter cells, leaving out empty trailing ones so that
// lines carry no trailing blanks.
func row(cells ...string) string {
	for len(cells) > 0 && cells[len(cells)-1] == "" {
		cells = cells[:len(cells)-1]
	}
	return strings.Join(cells, "\t")
}

// halfFields returns the fields of def that lie entirely in half h.
func halfFields(def *regs.Def, h regs.Half) []regs.Field {
	var out []regs.Field
	for _, f := range def.Fields {
		if (h == regs.High && f.Mask()&0xFFFFFFFF == 0) || (h == regs.Low && f.Mask()>>32 == 0) {
			out = append(out, f)
		}
	}
	return out
}

// place puts a 32-bit half at its position in the 64-bit register.
func place(v uint32, h regs.Half) uint64 {
	if h == regs.High {
		return uint64(v) << 32
	}
	return uint64(v)
}

// fieldValue formats a field of v: the MAC address as a MAC, fields of
// 32 bits or more in hex, narrower ones in decimal.
func fieldValue(f regs.Field, v uint64) string {
	x := f.Get(v)
	switch {
	case f == regs.MACAddress:
		mac := make(net.HardwareAddr, 6)
		for i := 5; i >= 0; i-- {
			mac[i] = byte(x >> (8 * (5 - i)))
		}
		return mac.String()
	case f.Hi-f.Lo+1 >= 32:
		return fmt.Sprintf("%#x", x)
	}
	return strconv.FormatUint(x, 10)
}

var _ spibridge.Transport = (*emulatedChip)(nil)
