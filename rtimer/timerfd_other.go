//go:build !linux

package rtimer

import (
	"errors"
	"time"
)

// timerfd does not exist here: Start fails with ErrUnsupported.
type timerfd struct{}

func openTimerfd() (timerfd, error) { return timerfd{}, ErrUnsupported }

func (timerfd) set(time.Duration) error { return errors.ErrUnsupported }
func (timerfd) wait() error             { return errors.ErrUnsupported }
func (timerfd) close() error            { return nil }
