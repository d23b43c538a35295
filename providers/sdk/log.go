package sdk

import (
	"context"
	"io"
	"log/slog"
	"os"

	"github.com/handoffd/handoff/providers/internal/wire"
)

// stderr is the process's real standard error, taken before Serve swaps
// os.Stderr for a pipe: go-plugin reads the plugin's logs from this file
// descriptor and re-logs them in the host under the provider's name.
var stderr io.Writer = os.Stderr

// hclogTime is the timestamp layout go-plugin's host parses.
const hclogTime = "2006-01-02T15:04:05.000000Z07:00"

var baseLogger = slog.New(newHCLogHandler(stderr, levelFromEnv()))

type requestIDKey struct{}

func withRequestID(ctx context.Context, id string) context.Context {
	if id == "" {
		return ctx
	}
	return context.WithValue(ctx, requestIDKey{}, id)
}

// Logger returns the plugin's logger, with the request id when ctx is a
// call's context. It writes JSON lines in hclog's format to standard error,
// which go-plugin forwards to the host's log with level and attributes.
//
// Never log, print or write to standard output: before Serve it corrupts the
// go-plugin handshake (the host reads the first stdout line as the plugin's
// address and refuses the plugin); after it, stdout goes nowhere useful.
func Logger(ctx context.Context) *slog.Logger {
	if id, ok := ctx.Value(requestIDKey{}).(string); ok {
		return baseLogger.With("request_id", id)
	}
	return baseLogger
}

func levelFromEnv() slog.Level {
	var l slog.Level
	if err := l.UnmarshalText([]byte(os.Getenv(wire.EnvLogLevel))); err != nil {
		return slog.LevelInfo
	}
	return l
}

// newHCLogHandler writes slog records as hclog JSON lines:
// {"@level":"info","@message":"...","@timestamp":"...", attrs...}.
func newHCLogHandler(w io.Writer, level slog.Level) slog.Handler {
	return slog.NewJSONHandler(w, &slog.HandlerOptions{
		Level: level,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) > 0 {
				return a
			}
			switch a.Key {
			case slog.TimeKey:
				return slog.String("@timestamp", a.Value.Time().Format(hclogTime))
			case slog.LevelKey:
				return slog.String("@level", hclogLevel(a.Value.Any().(slog.Level)))
			case slog.MessageKey:
				return slog.String("@message", a.Value.String())
			}
			return a
		},
	})
}

func hclogLevel(l slog.Level) string {
	switch {
	case l < slog.LevelDebug:
		return "trace"
	case l < slog.LevelInfo:
		return "debug"
	case l < slog.LevelWarn:
		return "info"
	case l < slog.LevelError:
		return "warn"
	}
	return "error"
}
