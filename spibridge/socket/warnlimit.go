package socket

import (
	"sync"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// warnInterval is the window of the rate limit on the server's warnings
// about refused and broken connections: at most warnBurst lines of each
// kind per window, then one line saying how many were suppressed.
const (
	warnInterval = time.Second
	warnBurst    = 5
)

// warnLimiter rate-limits one kind of warning. A flood of refused or
// broken connections must not turn into a flood of log lines: within each
// warnInterval the first warnBurst warnings are logged, the rest are
// counted, and the next warning logged carries that count as
// "suppressed" (so nothing disappears without a trace).
type warnLimiter struct {
	mu         sync.Mutex
	start      time.Time // start of the current window
	logged     int       // lines logged in the current window
	suppressed uint64    // warnings not logged since the last line
}

// warn logs msg with fields at warn level unless the limit is reached.
func (l *warnLimiter) warn(log *zap.Logger, msg string, fields ...zap.Field) {
	l.logAt(log, zap.WarnLevel, msg, fields...)
}

// logAt logs msg with fields at level unless the limit is reached.
func (l *warnLimiter) logAt(log *zap.Logger, level zapcore.Level, msg string, fields ...zap.Field) {
	l.mu.Lock()
	now := time.Now()
	if now.Sub(l.start) >= warnInterval {
		l.start, l.logged = now, 0
	}
	if l.logged >= warnBurst {
		l.suppressed++
		l.mu.Unlock()
		return
	}
	l.logged++
	n := l.suppressed
	l.suppressed = 0
	l.mu.Unlock()
	if n > 0 {
		fields = append(fields, zap.Uint64("suppressed", n))
	}
	log.Log(level, msg, fields...)
}

// flush logs the count of warnings suppressed since the last line, if
// any (at shutdown, so the last burst of a flood is accounted for too).
func (l *warnLimiter) flush(log *zap.Logger, msg string) {
	l.mu.Lock()
	n := l.suppressed
	l.suppressed = 0
	l.mu.Unlock()
	if n > 0 {
		log.Warn(msg, zap.Uint64("suppressed", n))
	}
}
