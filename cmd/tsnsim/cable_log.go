package main

import (
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"tsnsim/cable"
)

// withInfo returns log with info messages enabled even at the default
// verbosity (warnings only). chip serve gives it to its cable end, whose
// info lines are the peer's comings and goings (listening, connected,
// disconnected and why, refused): without them a user whose peer never
// connected sees nothing but an ARP timeout on the driver's side.
func withInfo(log *zap.Logger) *zap.Logger {
	return log.WithOptions(zap.WrapCore(func(c zapcore.Core) zapcore.Core { return infoCore{c} }))
}

// infoCore lets info entries through a core set to a higher level.
type infoCore struct{ zapcore.Core }

func (c infoCore) Enabled(l zapcore.Level) bool {
	return l >= zapcore.InfoLevel || c.Core.Enabled(l)
}

func (c infoCore) With(fields []zapcore.Field) zapcore.Core {
	return infoCore{c.Core.With(fields)}
}

func (c infoCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

// boundAddr is " (ADDR)" for a cable end bound to a local address
// (listen, dgram), "" for one that dials.
func boundAddr(end *cable.SocketPort) string {
	if a := end.Addr(); a != nil {
		return " (" + a.String() + ")"
	}
	return ""
}
