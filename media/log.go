package media

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/pion/logging"
)

// levelTrace is below slog's debug level: pion's trace output is a firehose.
const levelTrace = slog.LevelDebug - 4

// pionLoggers adapts pion's logging to the Engine's slog.Logger. pion's info
// messages (state changes) become debug: the gateway logs calls, not ICE.
type pionLoggers struct {
	ctx context.Context // pion's loggers have none: the engine's
	log *slog.Logger
}

func (f pionLoggers) NewLogger(scope string) logging.LeveledLogger {
	return pionLogger{f.ctx, f.log.With("pion", scope)}
}

type pionLogger struct {
	ctx context.Context
	log *slog.Logger
}

func (l pionLogger) logf(level slog.Level, format string, args ...any) {
	if l.log.Enabled(l.ctx, level) {
		l.log.Log(l.ctx, level, fmt.Sprintf(format, args...))
	}
}

func (l pionLogger) Trace(msg string)                  { l.logf(levelTrace, "%s", msg) }
func (l pionLogger) Tracef(format string, args ...any) { l.logf(levelTrace, format, args...) }
func (l pionLogger) Debug(msg string)                  { l.logf(slog.LevelDebug, "%s", msg) }
func (l pionLogger) Debugf(format string, args ...any) { l.logf(slog.LevelDebug, format, args...) }
func (l pionLogger) Info(msg string)                   { l.logf(slog.LevelDebug, "%s", msg) }
func (l pionLogger) Infof(format string, args ...any)  { l.logf(slog.LevelDebug, format, args...) }
func (l pionLogger) Warn(msg string)                   { l.logf(slog.LevelWarn, "%s", msg) }
func (l pionLogger) Warnf(format string, args ...any)  { l.logf(slog.LevelWarn, format, args...) }
func (l pionLogger) Error(msg string)                  { l.logf(slog.LevelError, "%s", msg) }
func (l pionLogger) Errorf(format string, args ...any) { l.logf(slog.LevelError, format, args...) }
