package spidev

import (
	"errors"
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Open opens and configures a spidev node (O_RDWR|O_CLOEXEC; mode
// 0, 8 bits per word, cfg.SpeedHz). A missing node or a permission
// problem gives an error wrapping ENOENT or EACCES that says how to
// enable spidev (docs/bring-up.md).
func Open(cfg Config) (*Dev, error) {
	if cfg.Path == "" {
		return nil, errors.New("spidev: no device path (want a node such as /dev/spidev0.0)")
	}
	fd, err := unix.Open(cfg.Path, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("spidev: open %s: %w%s", cfg.Path, err, spidevHint(err))
	}
	return newSpidev(cfg, spidevFD(fd))
}

// spidevFD is an open spidev file descriptor.
type spidevFD int

// Ioctl implements ioctler.
func (fd spidevFD) Ioctl(req uintptr, arg unsafe.Pointer) error {
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, uintptr(arg))
	runtime.KeepAlive(arg)
	if errno != 0 {
		return errno
	}
	return nil
}

// Close implements ioctler.
func (fd spidevFD) Close() error { return unix.Close(int(fd)) }

var _ ioctler = spidevFD(0)
