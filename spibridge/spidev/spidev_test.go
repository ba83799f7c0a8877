package spidev

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"unsafe"

	"tsnsim/chip"
	"tsnsim/chip/proto"
	"tsnsim/chip/regs"
)

// ioctlCall is one ioctl as the fake device decoded it.
type ioctlCall struct {
	req   uintptr
	value uint32         // the u8/u32 argument of a SPI_IOC_WR_* call
	xfer  spiIOCTransfer // the argument of SPI_IOC_MESSAGE(1)
	tx    []byte         // copy of the MOSI bytes the transfer pointed at
}

// fakeSpidev is an ioctler that decodes and records every call, like the
// spidev driver would see it. transact, if set, plays the chip on each
// SPI_IOC_MESSAGE(1): it gets the caller's buffers through the addresses
// in the transfer struct, as the kernel would. fail, if set, is returned
// for calls with that request number.
type fakeSpidev struct {
	mu       sync.Mutex
	calls    []ioctlCall
	transact func(tx, rx []byte) error
	fail     map[uintptr]error
	closed   int
}

// bufAt returns the n bytes at the user-space address a (a u64 field of
// spi_ioc_transfer), reinterpreting the field's memory as a pointer.
func bufAt(a *uint64, n uint32) []byte {
	return unsafe.Slice(*(**byte)(unsafe.Pointer(a)), n)
}

func (f *fakeSpidev) Ioctl(req uintptr, arg unsafe.Pointer) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := ioctlCall{req: req}
	switch req {
	case spiIOCWrMode, spiIOCWrBitsPerWord:
		c.value = uint32(*(*uint8)(arg))
	case spiIOCWrMaxSpeedHz, spiIOCWrMode32:
		c.value = *(*uint32)(arg)
	case spiIOCMessage(1):
		c.xfer = *(*spiIOCTransfer)(arg)
		c.tx = slices.Clone(bufAt(&c.xfer.txBuf, c.xfer.length))
	default:
		return syscall.ENOTTY
	}
	f.calls = append(f.calls, c)
	if err := f.fail[req]; err != nil {
		return err
	}
	if req == spiIOCMessage(1) && f.transact != nil {
		x := (*spiIOCTransfer)(arg)
		return f.transact(bufAt(&x.txBuf, x.length), bufAt(&x.rxBuf, x.length))
	}
	return nil
}

func (f *fakeSpidev) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed++
	return nil
}

func (f *fakeSpidev) recorded() []ioctlCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

// TestIoctlNumbers checks the _IOW helper against the values of
// linux/spi/spidev.h and the layout of struct spi_ioc_transfer.
func TestIoctlNumbers(t *testing.T) {
	for _, c := range []struct {
		name      string
		got, want uintptr
	}{
		{"SPI_IOC_MESSAGE(1)", spiIOCMessage(1), 0x40206B00},
		{"SPI_IOC_MESSAGE(2)", spiIOCMessage(2), 0x40006B00 | 2*0x200000},
		{"SPI_IOC_MESSAGE(511)", spiIOCMessage(511), 0x40006B00 | 511*0x200000},
		{"SPI_IOC_MESSAGE(512)", spiIOCMessage(512), 0x40006B00}, // SPI_MSGSIZE overflows to 0
		{"SPI_IOC_WR_MODE", spiIOCWrMode, 0x40016B01},
		{"SPI_IOC_WR_BITS_PER_WORD", spiIOCWrBitsPerWord, 0x40016B03},
		{"SPI_IOC_WR_MAX_SPEED_HZ", spiIOCWrMaxSpeedHz, 0x40046B04},
		{"SPI_IOC_WR_MODE32", spiIOCWrMode32, 0x40046B05},
	} {
		if c.got != c.want {
			t.Errorf("%s = %#x, want %#x", c.name, c.got, c.want)
		}
	}
	var x spiIOCTransfer
	if s := unsafe.Sizeof(x); s != 32 {
		t.Errorf("sizeof(spi_ioc_transfer) = %d, want 32", s)
	}
	for _, f := range []struct {
		name      string
		got, want uintptr
	}{
		{"tx_buf", unsafe.Offsetof(x.txBuf), 0}, {"rx_buf", unsafe.Offsetof(x.rxBuf), 8},
		{"len", unsafe.Offsetof(x.length), 16}, {"speed_hz", unsafe.Offsetof(x.speedHz), 20},
		{"delay_usecs", unsafe.Offsetof(x.delayUsecs), 24}, {"bits_per_word", unsafe.Offsetof(x.bitsPerWord), 26},
		{"cs_change", unsafe.Offsetof(x.csChange), 27}, {"tx_nbits", unsafe.Offsetof(x.txNbits), 28},
		{"rx_nbits", unsafe.Offsetof(x.rxNbits), 29}, {"word_delay_usecs", unsafe.Offsetof(x.wordDelayUsecs), 30},
		{"pad", unsafe.Offsetof(x.pad), 31},
	} {
		if f.got != f.want {
			t.Errorf("offsetof(%s) = %d, want %d", f.name, f.got, f.want)
		}
	}
}

func openFake(t *testing.T, cfg Config, f *fakeSpidev) *Dev {
	t.Helper()
	if cfg.Path == "" {
		cfg.Path = "/dev/spidev0.0"
	}
	s, err := newSpidev(cfg, f)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestSpidevOpenConfigures: opening sets mode 0, 8 bits per word and the
// speed (15 MHz by default), in that order, and nothing else.
func TestSpidevOpenConfigures(t *testing.T) {
	for _, c := range []struct {
		speed, want uint32
	}{{0, 15_000_000}, {1_000_000, 1_000_000}} {
		f := &fakeSpidev{}
		s := openFake(t, Config{SpeedHz: c.speed}, f)
		got := f.recorded()
		want := []ioctlCall{{req: spiIOCWrMode, value: 0}, {req: spiIOCWrBitsPerWord, value: 8}, {req: spiIOCWrMaxSpeedHz, value: c.want}}
		if !slices.EqualFunc(got, want, func(a, b ioctlCall) bool { return a.req == b.req && a.value == b.value }) {
			t.Errorf("speed %d: ioctls %+v, want %+v", c.speed, got, want)
		}
		if s.SpeedHz() != c.want {
			t.Errorf("SpeedHz() = %d, want %d", s.SpeedHz(), c.want)
		}
	}
}

// TestSpidevTransferIoctl: each Transfer is exactly one SPI_IOC_MESSAGE(1)
// whose transfer struct points at the caller's buffers, with their length,
// the configured speed and 8 bits per word; MISO lands in rx.
func TestSpidevTransferIoctl(t *testing.T) {
	f := &fakeSpidev{transact: func(tx, rx []byte) error {
		for i := range rx {
			rx[i] = ^tx[i]
		}
		return nil
	}}
	s := openFake(t, Config{SpeedHz: 12_000_000}, f)
	before := len(f.recorded())
	tx := []byte{0x02, 0x32, 0x78, 0, 0, 0, 0, 0}
	rx := make([]byte, len(tx))
	if err := s.Transfer(context.Background(), tx, rx); err != nil {
		t.Fatal(err)
	}
	calls := f.recorded()[before:]
	if len(calls) != 1 {
		t.Fatalf("%d ioctls, want 1: %+v", len(calls), calls)
	}
	c := calls[0]
	want := spiIOCTransfer{
		txBuf: uint64(uintptr(unsafe.Pointer(&tx[0]))), rxBuf: uint64(uintptr(unsafe.Pointer(&rx[0]))),
		length: 8, speedHz: 12_000_000, bitsPerWord: 8,
	}
	if c.req != 0x40206B00 || c.xfer != want {
		t.Errorf("ioctl %#x %+v, want 0x40206b00 %+v", c.req, c.xfer, want)
	}
	if !bytes.Equal(c.tx, tx) {
		t.Errorf("MOSI seen by the kernel % x, want % x", c.tx, tx)
	}
	for i := range rx {
		if rx[i] != ^tx[i] {
			t.Fatalf("rx % x: not filled through the rx address", rx)
		}
	}
	if st := s.Stats(); st.Transfers != 1 || st.Bytes != 8 {
		t.Errorf("stats %+v, want 1 transfer of 8 bytes", st)
	}
}

// TestSpidevTransferBadBuffers: bad buffers fail with the kernel's errno
// and never reach the ioctl; 4096 bytes (spidev's bufsiz) is accepted.
func TestSpidevTransferBadBuffers(t *testing.T) {
	f := &fakeSpidev{}
	s := openFake(t, Config{}, f)
	before := len(f.recorded())
	for _, c := range []struct {
		tx, rx int
		want   error
	}{{0, 0, syscall.EINVAL}, {8, 7, syscall.EINVAL}, {7, 8, syscall.EINVAL}, {4097, 4097, syscall.EMSGSIZE}} {
		err := s.Transfer(context.Background(), make([]byte, c.tx), make([]byte, c.rx))
		if !errors.Is(err, c.want) || !strings.HasPrefix(err.Error(), "spidev: ") {
			t.Errorf("%d/%d bytes: %v, want spidev: ... %v", c.tx, c.rx, err, c.want)
		}
	}
	if n := len(f.recorded()) - before; n != 0 {
		t.Errorf("%d ioctls for bad buffers", n)
	}
	if err := s.Transfer(context.Background(), make([]byte, 4096), make([]byte, 4096)); err != nil {
		t.Errorf("4096 bytes: %v", err)
	}
}

// TestSpidevTransferErrno: a kernel error keeps its errno and says which
// ioctl on which device failed; timeouts are counted.
func TestSpidevTransferErrno(t *testing.T) {
	f := &fakeSpidev{fail: map[uintptr]error{spiIOCMessage(1): syscall.ETIMEDOUT}}
	s := openFake(t, Config{Path: "/dev/spidev0.1"}, f)
	err := s.Transfer(context.Background(), make([]byte, 8), make([]byte, 8))
	if !errors.Is(err, syscall.ETIMEDOUT) {
		t.Fatalf("got %v, want ETIMEDOUT", err)
	}
	if want := "spidev: SPI_IOC_MESSAGE(1) on /dev/spidev0.1: " + syscall.ETIMEDOUT.Error(); err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
	if st := s.Stats(); st.Timeouts != 1 || st.Transfers != 0 {
		t.Errorf("stats %+v, want 1 timeout, 0 transfers", st)
	}
}

// TestSpidevCanceledContext: a cancelled context stops the transfer
// before the kernel sees it.
func TestSpidevCanceledContext(t *testing.T) {
	f := &fakeSpidev{}
	s := openFake(t, Config{}, f)
	before := len(f.recorded())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Transfer(ctx, make([]byte, 8), make([]byte, 8)); !errors.Is(err, context.Canceled) {
		t.Errorf("got %v, want context.Canceled", err)
	}
	if n := len(f.recorded()) - before; n != 0 {
		t.Errorf("%d ioctls after cancel", n)
	}
}

// TestSpidevConfigFailure: a node that rejects the configuration ioctls
// is closed, and the error names the ioctl, keeps the errno and hints.
func TestSpidevConfigFailure(t *testing.T) {
	f := &fakeSpidev{fail: map[uintptr]error{spiIOCWrBitsPerWord: syscall.EINVAL}}
	_, err := newSpidev(Config{Path: "/dev/spidev0.0"}, f)
	if !errors.Is(err, syscall.EINVAL) || !strings.Contains(err.Error(), "SPI_IOC_WR_BITS_PER_WORD on /dev/spidev0.0") {
		t.Errorf("got %v", err)
	}
	if f.closed != 1 {
		t.Errorf("device closed %d times, want 1", f.closed)
	}
}

// closeCounter is an InterruptSource that counts Close calls.
type closeCounter struct {
	c      chan struct{}
	closed int
}

func (c *closeCounter) Interrupt() <-chan struct{} { return c.c }
func (c *closeCounter) Close() error               { c.closed++; return nil }

// TestSpidevClose: Interrupt is the source's channel; Close closes the
// device and the source once; later transfers fail with EBADF.
func TestSpidevClose(t *testing.T) {
	f := &fakeSpidev{}
	irq := &closeCounter{c: make(chan struct{}, 1)}
	s, err := newSpidev(Config{Path: "/dev/spidev0.0", Interrupt: irq}, f)
	if err != nil {
		t.Fatal(err)
	}
	if s.Interrupt() != (<-chan struct{})(irq.c) {
		t.Error("Interrupt() is not the source's channel")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if f.closed != 1 || irq.closed != 1 {
		t.Errorf("device closed %d times, source %d times; want 1, 1", f.closed, irq.closed)
	}
	if err := s.Transfer(context.Background(), make([]byte, 8), make([]byte, 8)); !errors.Is(err, syscall.EBADF) {
		t.Errorf("transfer after close: %v, want EBADF", err)
	}
	noIRQ := openFake(t, Config{}, &fakeSpidev{})
	if noIRQ.Interrupt() != nil {
		t.Error("Interrupt() without a source is not nil")
	}
}

// TestSpidevDrivesChip: register reads and writes issued through the
// spidev transport reach a chip model through the addresses in the
// transfer struct, exactly as the kernel would move the bytes.
func TestSpidevDrivesChip(t *testing.T) {
	c := chip.New(chip.Config{})
	f := &fakeSpidev{transact: c.Transact}
	s := openFake(t, Config{}, f)
	ctx := context.Background()
	read := func(off uint16) uint32 {
		rx := make([]byte, proto.RegReadLen)
		if err := s.Transfer(ctx, proto.RegRead(off), rx); err != nil {
			t.Fatal(err)
		}
		return proto.RegReadValue(rx)
	}
	if got, want := uint64(read(regs.TSNSystemInfo))<<32|uint64(read(regs.TSNSystemInfo+4)), c.Register(regs.TSNSystemInfo); got != want {
		t.Errorf("TSN_SYSTEM_INFO %#x, want %#x", got, want)
	}
	if err := s.Transfer(ctx, proto.RegWrite(regs.TSNMACAddr+4, 0x0000_0042), make([]byte, proto.RegWriteLen)); err != nil {
		t.Fatal(err)
	}
	if got := read(regs.TSNMACAddr + 4); got != 0x42 || c.Register(regs.TSNMACAddr)&0xFFFFFFFF != 0x42 {
		t.Errorf("TSN_MAC_ADDR_L reads %#x after writing 0x42", got)
	}
}

// TestSpidevHints: permission problems point at the spi group.
func TestSpidevHints(t *testing.T) {
	for errno, want := range map[syscall.Errno]string{
		syscall.EACCES: "spi group", syscall.EPERM: "spi group", syscall.ENOENT: "dtparam=spi=on",
		syscall.ENOTTY: "not an spidev device", syscall.EBUSY: "lan1qtsn",
	} {
		if h := spidevHint(errno); !strings.Contains(h, want) {
			t.Errorf("%v: hint %q lacks %q", errno, h, want)
		}
	}
}

// BenchmarkSpidevTransfer is the transport's own cost per register read
// (struct, validation, accounting) with a device that does nothing:
//
//	go test -run '^$' -bench SpidevTransfer -benchmem ./spibridge/spidev
func BenchmarkSpidevTransfer(b *testing.B) {
	s, err := newSpidev(Config{Path: "/dev/spidev0.0"}, nopIoctler{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	tx, rx := proto.RegRead(regs.TSNSystemInfo), make([]byte, proto.RegReadLen)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if err := s.Transfer(ctx, tx, rx); err != nil {
			b.Fatal(err)
		}
	}
}

type nopIoctler struct{}

func (nopIoctler) Ioctl(uintptr, unsafe.Pointer) error { return nil }
func (nopIoctler) Close() error                        { return nil }
