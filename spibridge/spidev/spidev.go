// Package spidev is the Linux hardware transport of spibridge: a Dev
// that drives a real chip through /dev/spidev (one SPI_IOC_MESSAGE per
// transfer), with the chip's interrupt line on a GPIO input
// (GPIOInterrupt, through the GPIO character device) or, where the line
// is not wired, a timer that polls (PollInterrupt).
package spidev

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"go.uber.org/zap"

	"tsnsim/spibridge"
)

// MaxTransfer is the largest transfer spidev accepts with its
// default bufsiz module parameter (4096 bytes). The driver's largest
// transfer, a TX write of a 1560-byte frame, is 1599 bytes.
const MaxTransfer = 4096

// Config sets up a Linux spidev transport.
type Config struct {
	// Path is the spidev node, such as /dev/spidev0.0 (bus 0, CE0).
	Path string
	// SpeedHz is the SPI clock; 0 means DefaultClockHz (15 MHz, as the
	// vendor's driver and tools use).
	SpeedHz uint32
	// Interrupt is the chip's interrupt line (a GPIOInterrupt, or a
	// PollInterrupt when the line is not wired). Once Open
	// succeeds the Dev owns it and closes it in Close; if Open
	// fails the caller still owns it. Nil means no interrupt line: the
	// transport is then only good for register access (Interrupt never
	// fires).
	Interrupt InterruptSource
	// Logger may be nil.
	Logger *zap.Logger
}

// Dev is an SPI transport over the Linux spidev character device: one
// SPI_IOC_MESSAGE(1) ioctl per Transfer, mode 0, 8 bits per word. The
// kernel serialises transfers from concurrent callers and times them out
// itself (ETIMEDOUT, after max(len*16/kHz, 500) ms on Linux 6.x), so a
// Transfer cannot be cancelled once it is in the kernel; ctx is checked
// before it starts.
type Dev struct {
	path  string
	speed uint32
	dev   ioctler
	irq   InterruptSource
	log   *zap.Logger

	mu     sync.RWMutex // held shared by transfers, exclusively by Close
	closed bool

	statsMu sync.Mutex
	stats   spibridge.BusStats
}

// ioctler is the device behind a Dev: an open spidev file descriptor
// on Linux, a recording fake in tests.
type ioctler interface {
	// Ioctl performs ioctl(fd, req, arg) and returns the errno it failed
	// with (a syscall.Errno), or nil.
	Ioctl(req uintptr, arg unsafe.Pointer) error
	// Close closes the device.
	Close() error
}

// Encoding of ioctl request numbers (asm-generic/ioctl.h, used by arm,
// arm64, x86 and riscv): nr in bits 0-7, type in 8-15, argument size in
// 16-29, direction in 30-31.
const (
	iocTypeShift = 8
	iocSizeShift = 16
	iocDirShift  = 30
	iocSizeMask  = 1<<14 - 1
	iocWrite     = 1
)

// iow is the kernel's _IOW(type, nr, size): an ioctl that passes size
// bytes from user space to the driver.
func iow(typ, nr byte, size uintptr) uintptr {
	return iocWrite<<iocDirShift | (size&iocSizeMask)<<iocSizeShift | uintptr(typ)<<iocTypeShift | uintptr(nr)
}

// spidev ioctls (linux/spi/spidev.h, magic 'k').
const spiIOCMagic = 'k'

var (
	spiIOCWrMode        = iow(spiIOCMagic, 1, 1) // SPI_IOC_WR_MODE, u8
	spiIOCWrBitsPerWord = iow(spiIOCMagic, 3, 1) // SPI_IOC_WR_BITS_PER_WORD, u8
	spiIOCWrMaxSpeedHz  = iow(spiIOCMagic, 4, 4) // SPI_IOC_WR_MAX_SPEED_HZ, u32
	// SPI_IOC_WR_MODE32, u32: unused, since mode 0 fits SPI_IOC_WR_MODE;
	// kept with the others so the encoding is checked against the header.
	spiIOCWrMode32 = iow(spiIOCMagic, 5, 4)
)

// spiIOCMessage is SPI_IOC_MESSAGE(n): n spi_ioc_transfer structs.
func spiIOCMessage(n int) uintptr {
	size := uintptr(n) * unsafe.Sizeof(spiIOCTransfer{})
	if size > iocSizeMask {
		size = 0 // SPI_MSGSIZE: too many transfers encode as size 0
	}
	return iow(spiIOCMagic, 0, size)
}

// spiIOCTransfer is struct spi_ioc_transfer (32 bytes, no implicit
// padding): buffer addresses are u64 whatever the word size.
type spiIOCTransfer struct {
	txBuf          uint64
	rxBuf          uint64
	length         uint32
	speedHz        uint32
	delayUsecs     uint16
	bitsPerWord    uint8
	csChange       uint8
	txNbits        uint8
	rxNbits        uint8
	wordDelayUsecs uint8
	pad            uint8
}

// SPI mode and word size the chip uses.
const (
	spiMode0       = 0
	spiBitsPerWord = 8
)

// newSpidev configures dev (mode 0, 8 bits per word, cfg's speed) and
// wraps it. On failure dev is closed.
func newSpidev(cfg Config, dev ioctler) (*Dev, error) {
	if cfg.SpeedHz == 0 {
		cfg.SpeedHz = spibridge.DefaultClockHz
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	s := &Dev{path: cfg.Path, speed: cfg.SpeedHz, dev: dev, irq: cfg.Interrupt,
		log: cfg.Logger.Named("spidev").With(zap.String("dev", cfg.Path))}
	mode, bits, speed := uint8(spiMode0), uint8(spiBitsPerWord), cfg.SpeedHz
	for _, c := range []struct {
		name string
		req  uintptr
		arg  unsafe.Pointer
	}{
		{"SPI_IOC_WR_MODE", spiIOCWrMode, unsafe.Pointer(&mode)},
		{"SPI_IOC_WR_BITS_PER_WORD", spiIOCWrBitsPerWord, unsafe.Pointer(&bits)},
		{"SPI_IOC_WR_MAX_SPEED_HZ", spiIOCWrMaxSpeedHz, unsafe.Pointer(&speed)},
	} {
		if err := dev.Ioctl(c.req, c.arg); err != nil {
			err = fmt.Errorf("spidev: %s on %s: %w%s", c.name, cfg.Path, err, spidevHint(err))
			if cerr := dev.Close(); cerr != nil {
				err = errors.Join(err, fmt.Errorf("spidev: close %s: %w", cfg.Path, cerr))
			}
			return nil, err
		}
	}
	s.log.Info("spidev opened", zap.Uint32("speed_hz", speed), zap.Int("mode", spiMode0),
		zap.Bool("interrupt", cfg.Interrupt != nil))
	return s, nil
}

// spidevHint suggests a fix for a failed open or configuration.
func spidevHint(err error) string {
	switch {
	case errors.Is(err, syscall.ENOENT), errors.Is(err, syscall.ENXIO), errors.Is(err, syscall.ENODEV):
		return " (no such spidev device: enable SPI with dtparam=spi=on in config.txt and reboot; see docs/bring-up.md)"
	case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
		return " (no permission: add the user to the spi group or run as root; see docs/bring-up.md)"
	case errors.Is(err, syscall.ENOTTY):
		return " (not an spidev device; see docs/bring-up.md)"
	case errors.Is(err, syscall.EBUSY):
		return " (device busy: is the vendor lan1qtsn driver bound to this chip select? see docs/bring-up.md)"
	}
	return ""
}

// Path returns the spidev node.
func (s *Dev) Path() string { return s.path }

// SpeedHz returns the configured SPI clock.
func (s *Dev) SpeedHz() uint32 { return s.speed }

// Transfer implements Transport: one full-duplex SPI_IOC_MESSAGE(1) with
// chip select held. Buffers must have the same, non-zero length (EINVAL)
// of at most MaxTransfer bytes (EMSGSIZE). Kernel errors wrap their
// errno (ETIMEDOUT for a transfer the controller timed out).
func (s *Dev) Transfer(ctx context.Context, tx, rx []byte) error {
	switch {
	case len(tx) == 0 || len(rx) != len(tx):
		return fmt.Errorf("spidev: transfer of %d bytes into a %d-byte buffer on %s: %w", len(tx), len(rx), s.path, syscall.EINVAL)
	case len(tx) > MaxTransfer:
		return fmt.Errorf("spidev: transfer of %d bytes on %s exceeds spidev's %d-byte buffer: %w", len(tx), s.path, MaxTransfer, syscall.EMSGSIZE)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("spidev: transfer on %s: %w", s.path, err)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return fmt.Errorf("spidev: %s is closed: %w", s.path, syscall.EBADF)
	}
	x := spiIOCTransfer{
		txBuf:       uint64(uintptr(unsafe.Pointer(&tx[0]))),
		rxBuf:       uint64(uintptr(unsafe.Pointer(&rx[0]))),
		length:      uint32(len(tx)),
		speedHz:     s.speed,
		bitsPerWord: spiBitsPerWord,
	}
	start := time.Now()
	err := s.dev.Ioctl(spiIOCMessage(1), unsafe.Pointer(&x))
	// The kernel reads and writes the buffers through the addresses in x,
	// which the garbage collector does not see: keep them alive until the
	// ioctl has returned.
	runtime.KeepAlive(tx)
	runtime.KeepAlive(rx)
	s.account(len(tx), time.Since(start), err)
	if err != nil {
		return fmt.Errorf("spidev: SPI_IOC_MESSAGE(1) on %s: %w", s.path, err)
	}
	return nil
}

func (s *Dev) account(n int, took time.Duration, err error) {
	s.statsMu.Lock()
	defer s.statsMu.Unlock()
	switch {
	case err == nil:
		s.stats.Transfers++
		s.stats.Bytes += uint64(n)
		s.stats.Busy += took
	case errors.Is(err, syscall.ETIMEDOUT):
		s.stats.Timeouts++
	}
}

// Stats returns the transport's accounting in the shape of the emulated
// bus's: completed transfers, their bytes, the wall time they spent in
// the kernel (Busy) and ETIMEDOUT failures. Wait and Rejected stay zero:
// the kernel does not report queueing, and real silicon does not say
// when it rejects a transaction.
func (s *Dev) Stats() spibridge.BusStats {
	s.statsMu.Lock()
	defer s.statsMu.Unlock()
	return s.stats
}

// Interrupt implements Transport: the channel of the configured
// InterruptSource, or nil (never ready) when there is none.
func (s *Dev) Interrupt() <-chan struct{} {
	if s.irq == nil {
		return nil
	}
	return s.irq.Interrupt()
}

// Close implements Transport: it waits for transfers in the kernel,
// closes the device and the interrupt source. Later transfers fail with
// EBADF. Closing twice is a no-op.
func (s *Dev) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	var errs []error
	if s.irq != nil {
		if err := s.irq.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := s.dev.Close(); err != nil {
		errs = append(errs, fmt.Errorf("spidev: close %s: %w", s.path, err))
	}
	s.log.Info("spidev closed")
	return errors.Join(errs...)
}

var _ spibridge.Transport = (*Dev)(nil)
