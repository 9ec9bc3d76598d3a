package worker

import (
	"context"
	"log/slog"
	"strings"
)

// riverRepeats end River's messages about a failed or panicked attempt. The
// job (jobs.IsLogged) or errorHandler already logs that attempt on one line
// with more context, so River's own lines are lowered to Debug.
var riverRepeats = []string{
	": Job errored",
	": Job errored; retrying",
	": Job panicked",
	": panic recovery; possible bug with Worker",
}

// riverLogger is the logger given to River: logger with component=river,
// whose records about a failed attempt are lowered to Debug.
func riverLogger(logger *slog.Logger) *slog.Logger {
	return slog.New(riverLogHandler{logger.Handler()}).With(slog.String("component", "river"))
}

// riverLogHandler lowers River's repeats to Debug and passes everything else
// on unchanged.
type riverLogHandler struct{ slog.Handler }

func (h riverLogHandler) Handle(ctx context.Context, r slog.Record) error {
	if isRiverRepeat(r.Message) {
		if !h.Handler.Enabled(ctx, slog.LevelDebug) {
			return nil
		}
		r.Level = slog.LevelDebug
	}
	return h.Handler.Handle(ctx, r)
}

func (h riverLogHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return riverLogHandler{h.Handler.WithAttrs(attrs)}
}

func (h riverLogHandler) WithGroup(name string) slog.Handler {
	return riverLogHandler{h.Handler.WithGroup(name)}
}

func isRiverRepeat(msg string) bool {
	for _, suffix := range riverRepeats {
		if strings.HasSuffix(msg, suffix) {
			return true
		}
	}
	return false
}
