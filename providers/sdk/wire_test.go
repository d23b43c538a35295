package sdk

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/handoffd/handoff/providers/internal/wire"
)

// The magic cookie must never change: plugins built against an older SDK
// would stop starting.
func TestHandshakeIsStable(t *testing.T) {
	if wire.Handshake.MagicCookieKey != "HANDOFF_PLUGIN_MAGIC_COOKIE" ||
		wire.Handshake.MagicCookieValue != "7d1c0c6f3b5e4a9b8f0e2d4c6a8b1e3f5d7c9a0b2e4f6a8c" ||
		wire.Handshake.ProtocolVersion != 1 {
		t.Fatalf("handshake changed: %+v", wire.Handshake)
	}
}

// encode (plugin side) then decode (what a KV client does with a host
// status) keeps code and message.
func TestCodecRoundTrip(t *testing.T) {
	for _, s := range sentinels {
		code := s.(*Error).Code
		for _, err := range []error{s, fmt.Errorf("because: %w", s), &Error{Code: code, Message: "m"}} {
			got := decode(encode(err))
			var e *Error
			if !errors.As(got, &e) || e.Code != code || !errors.Is(got, s) {
				t.Fatalf("%v came back as %#v", err, got)
			}
			want := err.Error()
			if err == s {
				want = s.Error() // bare: no message on the wire, the code's text back
			}
			if got.Error() != want {
				t.Fatalf("message %q came back as %q", want, got.Error())
			}
		}
	}
	if got := decode(encode(errors.New("boom"))); !errors.Is(got, ErrInternal) || got.Error() != "boom" {
		t.Fatalf("plain error: %v", got)
	}
}

// Logger writes hclog JSON lines that go-plugin's host parses: @level,
// @message, and @timestamp in its exact layout.
func TestLoggerWritesHCLogJSON(t *testing.T) {
	var buf bytes.Buffer
	l := slog.New(newHCLogHandler(&buf, slog.LevelDebug)).With("request_id", "r1")
	l.Warn("careful", "n", 3)
	l.Debug("details")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("lines: %q", lines)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &m); err != nil {
		t.Fatal(err)
	}
	if m["@level"] != "warn" || m["@message"] != "careful" || m["request_id"] != "r1" || m["n"] != float64(3) {
		t.Fatalf("line = %v", m)
	}
	if _, err := time.Parse("2006-01-02T15:04:05.000000Z07:00", m["@timestamp"].(string)); err != nil {
		t.Fatalf("timestamp: %v", err)
	}
	if !strings.Contains(lines[1], `"@level":"debug"`) {
		t.Fatalf("debug line: %s", lines[1])
	}
	ctx := withRequestID(context.Background(), "abc")
	if Logger(ctx) == Logger(context.Background()) {
		t.Fatal("Logger(ctx) ignores the request id")
	}
}
