package rtimer

import (
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// timerfd is a non-blocking CLOCK_MONOTONIC timerfd registered with the
// Go netpoller: wait parks the goroutine like a socket read does.
type timerfd struct {
	f  *os.File
	fd int
}

func openTimerfd() (timerfd, error) {
	fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		return timerfd{}, fmt.Errorf("rtimer: timerfd_create: %w", err)
	}
	// A non-blocking descriptor goes to the netpoller (os.NewFile
	// checks), so reads park the goroutine instead of a thread.
	return timerfd{f: os.NewFile(uintptr(fd), "timerfd"), fd: fd}, nil
}

// set arms the timerfd to expire once, d from now (d > 0).
func (t timerfd) set(d time.Duration) error {
	spec := unix.ItimerSpec{Value: unix.NsecToTimespec(int64(d))}
	if err := unix.TimerfdSettime(t.fd, 0, &spec, nil); err != nil {
		return fmt.Errorf("rtimer: timerfd_settime: %w", err)
	}
	return nil
}

// wait blocks until the timerfd has expired (it reads the expiration
// count); it fails once the timerfd is closed.
func (t timerfd) wait() error {
	var buf [8]byte
	_, err := t.f.Read(buf[:])
	return err
}

func (t timerfd) close() error { return t.f.Close() }
