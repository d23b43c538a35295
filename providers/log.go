package providers

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log"
	"log/slog"
	"sync"

	"github.com/hashicorp/go-hclog"
)

// Interface guards.
var _ hclog.Logger = (*hcLogger)(nil)

// hcLogger gives go-plugin an hclog.Logger that writes to the host's slog
// logger. The plugin's own log lines (go-plugin re-logs its stderr under
// Named(<runner name>), the provider name) keep their level; go-plugin's
// internal chatter is demoted one step, so a plugin we kill on purpose is
// not an ERROR line.
type hcLogger struct {
	l      *slog.Logger
	plugin string // runner name, whose sub-logger carries plugin lines
	name   string
	own    bool // lines from the plugin itself
	args   []any
}

func newHCLogger(l *slog.Logger, plugin string) *hcLogger {
	return &hcLogger{l: l, plugin: plugin}
}

func (h *hcLogger) level(l hclog.Level) slog.Level {
	var s slog.Level
	switch l {
	case hclog.Trace:
		s = slog.LevelDebug - 4
	case hclog.Debug:
		s = slog.LevelDebug
	case hclog.Warn:
		s = slog.LevelWarn
	case hclog.Error:
		s = slog.LevelError
	default:
		s = slog.LevelInfo
	}
	if !h.own {
		switch {
		case s <= slog.LevelInfo:
			s = slog.LevelDebug
		default:
			s -= 4
		}
	}
	return s
}

func (h *hcLogger) Log(l hclog.Level, msg string, args ...any) {
	lvl := h.level(l)
	ctx := context.Background()
	if !h.l.Enabled(ctx, lvl) {
		return
	}
	out := make([]any, 0, len(h.args)+len(args))
	out = append(out, h.args...)
	for i := 0; i+1 < len(args); i += 2 {
		if k, ok := args[i].(string); ok && k == "timestamp" {
			continue // the host's record has its own time
		}
		out = append(out, args[i], args[i+1])
	}
	if !h.own {
		out = append(out, "source", "go-plugin")
	}
	h.l.Log(ctx, lvl, msg, out...)
}

func (h *hcLogger) Trace(msg string, args ...any) { h.Log(hclog.Trace, msg, args...) }
func (h *hcLogger) Debug(msg string, args ...any) { h.Log(hclog.Debug, msg, args...) }
func (h *hcLogger) Info(msg string, args ...any)  { h.Log(hclog.Info, msg, args...) }
func (h *hcLogger) Warn(msg string, args ...any)  { h.Log(hclog.Warn, msg, args...) }
func (h *hcLogger) Error(msg string, args ...any) { h.Log(hclog.Error, msg, args...) }

func (h *hcLogger) IsTrace() bool { return h.GetLevel() <= hclog.Trace }
func (h *hcLogger) IsDebug() bool { return h.GetLevel() <= hclog.Debug }
func (h *hcLogger) IsInfo() bool  { return h.GetLevel() <= hclog.Info }
func (h *hcLogger) IsWarn() bool  { return h.GetLevel() <= hclog.Warn }
func (h *hcLogger) IsError() bool { return h.GetLevel() <= hclog.Error }

func (h *hcLogger) ImpliedArgs() []any { return h.args }

func (h *hcLogger) With(args ...any) hclog.Logger {
	c := *h
	c.args = append(append([]any{}, h.args...), args...)
	return &c
}

func (h *hcLogger) Name() string { return h.name }

func (h *hcLogger) Named(name string) hclog.Logger {
	c := *h
	if c.name != "" {
		name = c.name + "." + name
	}
	c.name = name
	c.own = name == h.plugin
	return &c
}

func (h *hcLogger) ResetNamed(name string) hclog.Logger {
	c := *h
	c.name = ""
	return c.Named(name)
}

func (h *hcLogger) SetLevel(hclog.Level) {}

// GetLevel reports the lowest level the host logger keeps, so go-plugin
// skips parsing plugin lines nobody will see.
func (h *hcLogger) GetLevel() hclog.Level {
	ctx := context.Background()
	for _, l := range []hclog.Level{hclog.Trace, hclog.Debug, hclog.Info, hclog.Warn, hclog.Error} {
		probe := *h
		probe.own = true
		if h.l.Enabled(ctx, probe.level(l)) {
			return l
		}
	}
	return hclog.Off
}

func (h *hcLogger) StandardLogger(*hclog.StandardLoggerOptions) *log.Logger {
	return slog.NewLogLogger(h.l.Handler(), slog.LevelInfo)
}

func (h *hcLogger) StandardWriter(*hclog.StandardLoggerOptions) io.Writer {
	return newLineLogger(h.l, slog.LevelInfo, "plugin")
}

// lineLogger logs each line written to it.
type lineLogger struct {
	l     *slog.Logger
	level slog.Level
	msg   string
	mu    sync.Mutex
	buf   []byte
}

func newLineLogger(l *slog.Logger, level slog.Level, msg string) *lineLogger {
	return &lineLogger{l: l, level: level, msg: msg}
}

func (w *lineLogger) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			if len(w.buf) > 64<<10 {
				w.l.Log(context.Background(), w.level, w.msg, "line", string(w.buf))
				w.buf = w.buf[:0]
			}
			return len(p), nil
		}
		if line := bytes.TrimRight(w.buf[:i], "\r"); len(line) > 0 {
			w.l.Log(context.Background(), w.level, w.msg, "line", string(line))
		}
		w.buf = w.buf[i+1:]
	}
}

// logLineMax is the longest stderr line go-plugin parses as a log entry
// (its default PluginLogBufferSize); a longer one it logs as raw text.
const logLineMax = 64 << 10

// hclogStrings are the keys of an hclog JSON line that go-plugin v1.8.0
// reads with an unchecked type assertion to string (log_entry.go
// parseJSON): a plugin writing {"@message": 1} to stderr would panic the
// host's log goroutine, and with it the daemon.
var hclogStrings = []string{"@message", "@level", "@timestamp"}

// guardLogLines returns the plugin's stderr as go-plugin should read it:
// the same lines, with every hclog key go-plugin expects to be a string
// made one (its JSON text), so no plugin, in any language, can crash the
// host by what it logs.
func guardLogLines(src io.ReadCloser) io.ReadCloser {
	pr, pw := io.Pipe()
	go func() {
		r := bufio.NewReaderSize(src, logLineMax)
		cont := false // the line under way is longer than logLineMax
		for {
			line, more, err := r.ReadLine()
			if err != nil {
				_ = pw.Close() // EOF, or the pipe closed after the process was reaped
				return
			}
			if !more && !cont {
				line = stringLogKeys(line)
			}
			if !more {
				line = append(line[:len(line):len(line)], '\n') // a copy: line is r's buffer
			}
			cont = more
			if _, err := pw.Write(line); err != nil {
				_, _ = io.Copy(io.Discard, src) // the reader is gone; drain the plugin's writes
				return
			}
		}
	}()
	return logPipe{PipeReader: pr, src: src}
}

type logPipe struct {
	*io.PipeReader
	src io.Closer
}

func (p logPipe) Close() error {
	_ = p.PipeReader.Close()
	return p.src.Close()
}

// stringLogKeys makes the hclogStrings keys of a JSON object line strings;
// any other line is returned as it is.
func stringLogKeys(line []byte) []byte {
	if t := bytes.TrimSpace(line); len(t) == 0 || t[0] != '{' {
		return line
	}
	var obj map[string]json.RawMessage
	if json.Unmarshal(line, &obj) != nil {
		return line
	}
	changed := false
	for _, k := range hclogStrings {
		v, ok := obj[k]
		if !ok || (len(v) > 0 && v[0] == '"') {
			continue
		}
		obj[k], _ = json.Marshal(string(v))
		changed = true
	}
	if !changed {
		return line
	}
	out, err := json.Marshal(obj)
	if err != nil {
		return line
	}
	return out
}
