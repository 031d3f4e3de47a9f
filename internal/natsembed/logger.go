package natsembed

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/nats-io/nats-server/v2/server"
)

// Logger adapts a *slog.Logger to the NATS server's logger, so a node's
// route errors (a peer with another cluster name, a refused user) reach
// the operator in the process's own log format.
type Logger struct{ Log *slog.Logger }

var _ server.Logger = Logger{}

func (l Logger) logf(level slog.Level, format string, v []any) {
	l.Log.Log(context.Background(), level, fmt.Sprintf(format, v...))
}

// Noticef logs at Info.
func (l Logger) Noticef(format string, v ...any) { l.logf(slog.LevelInfo, format, v) }

// Warnf logs at Warn.
func (l Logger) Warnf(format string, v ...any) { l.logf(slog.LevelWarn, format, v) }

// Fatalf logs at Error: the server stops by itself after a fatal error,
// and the process's Run returns.
func (l Logger) Fatalf(format string, v ...any) { l.logf(slog.LevelError, format, v) }

// Errorf logs at Error.
func (l Logger) Errorf(format string, v ...any) { l.logf(slog.LevelError, format, v) }

// Debugf logs at Debug.
func (l Logger) Debugf(format string, v ...any) { l.logf(slog.LevelDebug, format, v) }

// Tracef logs at Debug (traces are enabled only by the config's trace).
func (l Logger) Tracef(format string, v ...any) { l.logf(slog.LevelDebug, format, v) }
