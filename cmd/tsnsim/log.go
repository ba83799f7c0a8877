package main

import (
	"io"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// newLogger returns a console logger on w: warnings and errors by
// default, info with -v, debug (per-event detail, never per frame unless
// something goes wrong) with -vv.
func newLogger(w io.Writer, verbosity int) *zap.Logger {
	level := zapcore.WarnLevel
	switch {
	case verbosity >= 2:
		level = zapcore.DebugLevel
	case verbosity == 1:
		level = zapcore.InfoLevel
	}
	enc := zap.NewDevelopmentEncoderConfig()
	core := zapcore.NewCore(zapcore.NewConsoleEncoder(enc), zapcore.Lock(zapcore.AddSync(w)), level) // loggers of several goroutines share w
	return zap.New(core)
}
