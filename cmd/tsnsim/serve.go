package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/pflag"
	"go.uber.org/zap"

	"tsnsim/cable"
	"tsnsim/chip"
	"tsnsim/pcap"
	"tsnsim/spibridge"
	"tsnsim/spibridge/socket"
	"tsnsim/topology"
)

// serveOptions are the flags of tsnsim chip serve.
type serveOptions struct {
	modelOptions
	faultOptions
	listen        []string
	socketDir     string
	allowTCP      bool
	allowAbstract bool
	helloTimeout  time.Duration
	msgTimeout    time.Duration
	idleTimeout   time.Duration
	cableEnd      string
	node          string
	duration      time.Duration
	pcap          string
	goTrace       string
	verbosity     int
}

func (o *serveOptions) flags() *pflag.FlagSet {
	fs := pflag.NewFlagSet("chip serve", pflag.ContinueOnError)
	fs.SortFlags = false
	fs.StringArrayVar(&o.listen, "listen", nil, "NODE=ADDR: serve NODE's SPI bus and interrupt line on ADDR, unix:PATH, (with --allow-abstract) unix:@NAME or (with --allow-tcp) tcp:HOST:PORT; repeatable (default: unix sockets a.sock and b.sock in --socket-dir)")
	fs.StringVar(&o.socketDir, "socket-dir", defaultSocketDir(), "directory of the default unix sockets: created with mode 0700, or used if it exists, is this user's and is not group- or world-writable (refused otherwise)")
	fs.BoolVar(&o.allowTCP, "allow-tcp", false, "allow tcp: listen addresses (bound to 127.0.0.1 unless HOST says otherwise; the protocol has no authentication)")
	fs.BoolVar(&o.allowAbstract, "allow-abstract", false, "allow abstract unix sockets (unix:@NAME): they have no file permissions, so any local user can connect and drive the chip")
	fs.DurationVar(&o.helloTimeout, "hello-timeout", socket.DefaultServerHelloTimeout, "close a connection that has not sent its hello this long after connecting")
	fs.DurationVar(&o.msgTimeout, "message-timeout", socket.DefaultServerMessageTimeout, "close a connection that stops inside a message for this long after its first byte")
	fs.DurationVar(&o.idleTimeout, "idle-timeout", socket.DefaultServerIdleTimeout, "close a connection that sends nothing for this long and holds no interrupt subscription (register tools; a driver's connections are spared)")
	fs.StringVar(&o.cableEnd, "cable-end", "", "serve one chip (--node) and carry its cable end over a socket to another chip server or a QEMU NIC: stream-listen:unix:PATH, stream-connect:tcp:HOST:PORT, dgram:udp:LHOST:LPORT:RHOST:RPORT, ... (docs/cable-sockets.md)")
	fs.StringVar(&o.node, "node", "a", "with --cable-end: the node this server emulates, a or b (its name and MAC)")
	fs.DurationVar(&o.duration, "duration", 0, "stop after this long (0: serve until SIGINT or SIGTERM)")
	fs.StringVar(&o.pcap, "pcap", "", "write every frame on the virtual cable to this pcap file")
	fs.StringVar(&o.goTrace, "go-trace", "", "write a Go execution trace of the server to this file, with each SPI bus wait's lateness as a log event (tsnsim trace FILE says why the late ones were late)")
	o.modelOptions.addFlags(fs)
	o.faultOptions.addFlags(fs)
	fs.CountVarP(&o.verbosity, "verbose", "v", "log more: -v info, -vv debug")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: tsnsim chip serve [flags]\n\n"+
			"Runs the emulated chips and their cable in this process and serves each chip's\n"+
			"SPI bus and interrupt line on its own socket (docs/socket-protocol.md), for\n"+
			"drivers in other processes: tsnsim run --attach ADDR --attach ADDR, or\n"+
			"tsnsim regs --attach ADDR. Clients may come and go; the chips keep their state.\n"+
			"A chip has one driver at a time: another run --attach is refused with an error\n"+
			"naming it, unless it passes --takeover (to replace a driver that died); tsnsim\n"+
			"regs works alongside.\n"+
			"On SIGINT/SIGTERM (or after --duration) it prints the chip-side counters.\n\n"+
			"Flags:\n")
		fs.PrintDefaults()
	}
	return fs
}

// defaultSocketDir is $XDG_RUNTIME_DIR/tsnsim, else /tmp/tsnsim-UID.
func defaultSocketDir() string {
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		return filepath.Join(d, "tsnsim")
	}
	return filepath.Join(os.TempDir(), fmt.Sprintf("tsnsim-%d", os.Getuid()))
}

// served is one chip a server serves: its node index and address.
type served struct {
	node int
	addr string
}

func (o *serveOptions) validate() ([]served, error) {
	if err := o.modelOptions.validate(); err != nil {
		return nil, err
	}
	if err := o.faultOptions.validate(); err != nil {
		return nil, err
	}
	if o.duration < 0 {
		return nil, fmt.Errorf("--duration must not be negative")
	}
	for _, t := range []struct {
		name string
		d    time.Duration
	}{{"--hello-timeout", o.helloTimeout}, {"--message-timeout", o.msgTimeout}, {"--idle-timeout", o.idleTimeout}} {
		if t.d <= 0 {
			return nil, fmt.Errorf("%s must be positive", t.name)
		}
	}
	if o.node != "a" && o.node != "b" {
		return nil, fmt.Errorf("--node %q: want a or b", o.node)
	}
	nodes := []int{0, 1}
	if o.cableEnd != "" {
		if _, err := cable.ParseSocketEnd(o.cableEnd); err != nil {
			return nil, fmt.Errorf("--cable-end: %w", err)
		}
		nodes = []int{int(o.node[0] - 'a')}
	}
	addrs := map[int]string{}
	for _, l := range o.listen {
		name, addr, ok := strings.Cut(l, "=")
		if !ok || (name != "a" && name != "b") {
			return nil, fmt.Errorf("--listen %q: want a=ADDR or b=ADDR", l)
		}
		network, _, err := socket.ParseAddr(addr)
		if err != nil {
			return nil, fmt.Errorf("--listen %q: %w", l, err)
		}
		if network != "unix" && !o.allowTCP {
			return nil, fmt.Errorf("--listen %q: TCP carries unauthenticated register access; pass --allow-tcp to use it", l)
		}
		if isAbstract(addr) && !o.allowAbstract {
			return nil, fmt.Errorf("--listen %q: an abstract socket has no file permissions, so any local user could drive the chip; pass --allow-abstract to use it", l)
		}
		addrs[int(name[0]-'a')] = addr
	}
	var out []served
	for _, i := range nodes {
		addr, ok := addrs[i]
		if !ok {
			if o.socketDir == "" {
				return nil, fmt.Errorf("--socket-dir is empty: give a directory for the sockets (default %s)", defaultSocketDir())
			}
			addr = "unix:" + filepath.Join(o.socketDir, fmt.Sprintf("%c.sock", 'a'+i))
			if _, _, err := socket.ParseAddr(addr); err != nil {
				return nil, fmt.Errorf("--socket-dir %q: %w", o.socketDir, err)
			}
		}
		delete(addrs, i)
		out = append(out, served{i, addr})
	}
	for i := range addrs {
		return nil, fmt.Errorf("--listen: node %c is not served by this server", 'a'+i)
	}
	return out, nil
}

// isAbstract reports whether addr is an abstract unix socket.
func isAbstract(addr string) bool { return strings.HasPrefix(addr, "unix:@") }

// serveFail records a failure of chip serve and prints it to stderr.
func serveFail(r *outcome, stderr io.Writer, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	r.mu.Lock()
	r.verdict.Failures = append(r.verdict.Failures, msg)
	r.mu.Unlock()
	fmt.Fprintf(stderr, "FAIL: %s\n", msg)
}

func serveCommand(args []string, stdout, stderr io.Writer) int {
	var o serveOptions
	if ok, status := parseFlags(o.flags(), args, stdout, stderr); !ok {
		return status
	}
	list, err := o.validate()
	if err != nil {
		fmt.Fprintf(stderr, "tsnsim chip serve: %v\n", err)
		return exitUsage
	}
	log := newLogger(stderr, o.verbosity)
	defer log.Sync() //nolint:errcheck // nothing to do about a failed stderr sync
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if o.duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.duration)
		defer cancel()
	}
	r := &outcome{out: stdout}
	if err := serveChips(ctx, &o, list, r, stderr, log); err != nil {
		serveFail(r, stderr, "%v", err)
	}
	if r.hasFailed() {
		return exitFail
	}
	return 0
}

// chipServer is one served chip.
type chipServer struct {
	served
	chip   *chip.Chip
	bus    *spibridge.InProcess
	server *socket.Server
}

// serveChips builds the chips and the cable, serves each chip until ctx
// is done, then closes everything and prints the chip-side report.
func serveChips(ctx context.Context, o *serveOptions, list []served, r *outcome, stderr io.Writer, log *zap.Logger) error {
	if o.goTrace != "" {
		gt, err := startGoTrace(o.goTrace)
		if err != nil {
			return err
		}
		defer func() {
			if err := gt.stop(); err != nil {
				serveFail(r, stderr, "%v", err)
			} else {
				r.printf("go trace: written to %s (tsnsim trace %s)\n", o.goTrace, o.goTrace)
			}
		}()
	}
	if err := o.startTimer(log); err != nil {
		return err
	}
	defer o.stopTimer(log)
	// The socket directories first: a refused one stops the server before
	// any chip runs.
	for _, c := range list {
		if strings.HasPrefix(c.addr, "unix:") && !isAbstract(c.addr) {
			dir := filepath.Dir(strings.TrimPrefix(c.addr, "unix:"))
			if err := socketDir(dir, dir == filepath.Clean(o.socketDir)); err != nil {
				return err
			}
		}
	}
	var capture *pcap.Writer
	if o.pcap != "" {
		var err error
		if capture, err = pcap.Create(o.pcap); err != nil {
			return err
		}
	}
	cfg := o.topologyConfig(log, capture).WithDefaults()
	var chips []*chipServer
	for _, s := range list {
		c, bus := topology.NewChip(cfg, s.node)
		chips = append(chips, &chipServer{served: s, chip: c, bus: bus,
			server: socket.NewServer(bus, socket.ServerConfig{Name: c.Name(), Logger: log, IRQLevel: c.IRQAsserted,
				HelloTimeout: o.helloTimeout, MessageTimeout: o.msgTimeout, IdleTimeout: o.idleTimeout})})
	}
	var cab *cable.Cable
	var end *cable.SocketPort
	if o.cableEnd != "" {
		ec, _ := cable.ParseSocketEnd(o.cableEnd) // validated
		var err error
		if end, err = cable.OpenSocketEnd(ctx, ec, withInfo(log)); err != nil {
			return err
		}
		cab = cable.Connect(chips[0].chip, end, cfg.Cable)
		r.printf("cable end of %s: %s%s\n", chips[0].chip.Name(), o.cableEnd, boundAddr(end))
	} else {
		cab = cable.Connect(chips[0].chip, chips[1].chip, cfg.Cable)
	}
	inj, err := o.injector(cfg.Chip.Epoch, log)
	if err != nil {
		return err
	}
	if inj != nil {
		defer inj.Close()
		for i, c := range chips {
			if err := topology.InjectFaults(inj, c.chip, c.bus, cab, i); err != nil {
				return err
			}
		}
	}
	stopControl, err := o.serveControl(inj, r)
	if err != nil {
		return err
	}
	defer stopControl()
	for _, c := range chips {
		c.chip.Start()
	}
	start := time.Now()

	var wg sync.WaitGroup
	var errs []error
	var mu sync.Mutex
	for _, c := range chips {
		if isAbstract(c.addr) {
			log.Warn("serving on an abstract socket: any local user can connect and drive the chip", zap.String("addr", c.addr))
		}
		ln, err := socket.Listen(c.addr)
		if err != nil {
			return fmt.Errorf("%s: %w", c.chip.Name(), err)
		}
		if a, ok := ln.Addr().(*net.TCPAddr); ok {
			c.addr = "tcp:" + a.String() // the port bound for tcp:HOST:0
		}
		r.printf("chip %s (mac %s): SPI bus and interrupt line on %s\n", c.chip.Name(), c.chip.MAC(), c.addr)
		wg.Go(func() {
			if err := c.server.Serve(ctx, ln); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("%s: %w", c.chip.Name(), err))
				mu.Unlock()
			}
		})
	}
	wg.Go(func() { releaseAfterFloods(ctx, chips, log) })
	r.printf("ready; attach with: tsnsim run")
	for _, c := range chips {
		r.printf(" --attach %s", c.addr)
	}
	if len(chips) == 1 {
		r.printf(" --node %c", 'a'+chips[0].node)
		if end != nil {
			r.printf(" --serve\n  (or --backend tap --netns for the host's Linux stack; docs/cable-sockets.md)")
		}
	}
	r.printf("\n")
	<-ctx.Done()
	elapsed := time.Since(start)
	r.printf("stopping after %v\n", elapsed.Round(time.Millisecond))
	for _, c := range chips {
		if err := c.server.Close(); err != nil {
			serveFail(r, stderr, "%s: %v", c.chip.Name(), err)
		}
	}
	wg.Wait()
	for _, c := range chips {
		c.chip.Close()
	}
	cab.Close()
	if end != nil {
		if err := end.Close(); err != nil {
			serveFail(r, stderr, "cable end: %v", err)
		}
	}
	for _, c := range chips {
		c.bus.Close()
	}
	if capture != nil {
		if err := capture.Close(); err != nil {
			serveFail(r, stderr, "%v", err)
		}
	}
	for _, err := range errs {
		serveFail(r, stderr, "%v", err)
	}
	writeServeReport(r, chips, cab, end, elapsed)
	reportFaults(r, inj)
	return nil
}

// writeServeReport prints the chip side of every served chip, the
// servers' connection accounting, and the cable.
func writeServeReport(r *outcome, chips []*chipServer, cab *cable.Cable, end *cable.SocketPort, elapsed time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range chips {
		fmt.Fprintf(r.out, "%s: mac %s, served on %s\n", c.chip.Name(), c.chip.MAC(), c.addr)
		fmt.Fprintf(r.out, "    server: %+v\n", c.server.Stats())
		topology.WriteChipReport(r.out, c.chip, c.bus, elapsed)
	}
	if end == nil {
		topology.WriteCableReport(r.out, chips[0].chip.Name(), chips[1].chip.Name(), cab)
		return
	}
	topology.WriteCableReport(r.out, chips[0].chip.Name(), "socket", cab)
	fmt.Fprintf(r.out, "cable end: %+v\n", end.Stats())
}

// Flood relief: a burst of at least floodConns connections (accepted or
// refused) within floodTick is a flood; at the first quiet tick after one,
// the memory it took is handed back to the system.
const (
	floodTick  = 5 * time.Second
	floodConns = 200
)

// releaseAfterFloods watches the servers' connection counts until ctx is
// done and, once a flood of connections is over, runs a garbage
// collection and returns the freed memory to the system at once
// (debug.FreeOSMemory): without it an idle server keeps the pages of the
// flood's goroutines and buffers for minutes, since nothing allocates to
// trigger a collection.
func releaseAfterFloods(ctx context.Context, chips []*chipServer, log *zap.Logger) {
	t := time.NewTicker(floodTick)
	defer t.Stop()
	count := func() uint64 {
		var n uint64
		for _, c := range chips {
			st := c.server.Stats()
			n += st.Accepted + st.Refused
		}
		return n
	}
	last, flood := count(), false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		n := count()
		switch {
		case n-last >= floodConns:
			flood = true
		case flood:
			flood = false
			debug.FreeOSMemory()
			log.Info("connection flood over: memory returned to the system")
		}
		last = n
	}
}

// socketDir makes sure dir is fit to hold the chip sockets: the server
// creates it (mode 0700) if it does not exist. An existing --socket-dir
// (own) must belong to this user and not be group- or world-writable;
// the directory of a --listen path may also be a sticky one such as /tmp
// (others cannot remove or rename what is ours there) or belong to root.
// Anything else is refused: another user could replace a socket with an
// impostor.
func socketDir(dir string, own bool) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("socket directory: %w", err)
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("socket directory: %w", err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	switch {
	case fi.Mode()&os.ModeSymlink != 0:
		return fmt.Errorf("socket directory %s is a symbolic link: refusing it (another user could point it elsewhere); give the real path", dir)
	case !fi.IsDir():
		return fmt.Errorf("socket directory %s is not a directory", dir)
	case !ok:
		return fmt.Errorf("socket directory %s: cannot tell its owner on this system", dir)
	}
	uid := uint32(os.Geteuid())
	sticky := fi.Mode()&os.ModeSticky != 0
	switch {
	case st.Uid != uid && (own || st.Uid != 0):
		return fmt.Errorf("socket directory %s belongs to uid %d, not to this user (uid %d): refusing it, since its owner could replace the sockets with impostors; remove it or choose another --socket-dir", dir, st.Uid, uid)
	case fi.Mode().Perm()&0o022 != 0 && (own || !sticky):
		return fmt.Errorf("socket directory %s has mode %04o: group- or world-writable, so another user could replace the sockets with impostors; chmod 700 it or choose another --socket-dir", dir, fi.Mode().Perm())
	}
	return nil
}

// chipCommand is tsnsim chip SUBCOMMAND.
func chipCommand(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "serve" {
		return serveCommand(args[1:], stdout, stderr)
	}
	fmt.Fprintf(stderr, "tsnsim chip: want the subcommand serve (tsnsim chip serve --help)\n")
	return exitUsage
}
