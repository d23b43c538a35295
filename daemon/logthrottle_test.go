package daemon

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestLogThrottleAllow: one line per key per interval; the next line that
// goes out carries the count held back; keys do not share a budget.
func TestLogThrottleAllow(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	type step struct {
		key            string
		at             time.Duration
		wantOK         bool
		wantSuppressed int
	}
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"first line goes out", []step{{"a", 0, true, 0}}},
		{"repeat within the interval is held back", []step{{"a", 0, true, 0}, {"a", time.Second, false, 0}, {"a", 9 * time.Second, false, 0}}},
		{"after the interval, with the count", []step{{"a", 0, true, 0}, {"a", 1, false, 0}, {"a", 2, false, 0}, {"a", 10 * time.Second, true, 2}, {"a", 11 * time.Second, false, 0}, {"a", 20 * time.Second, true, 1}}},
		{"keys are independent", []step{{"a", 0, true, 0}, {"b", 1, true, 0}, {"a", 2, false, 0}, {"b", 3, false, 0}, {"b", 11 * time.Second, true, 1}}},
		{"quiet interval resets the count", []step{{"a", 0, true, 0}, {"a", 30 * time.Second, true, 0}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			th := newLogThrottle(10 * time.Second)
			for i, s := range tc.steps {
				n, ok := th.allow(s.key, t0.Add(s.at))
				if ok != s.wantOK || n != s.wantSuppressed {
					t.Fatalf("step %d (%s at %v): allow = %d, %v; want %d, %v", i, s.key, s.at, n, ok, s.wantSuppressed, s.wantOK)
				}
			}
		})
	}
}

// TestLogLimited is the log flood: a thousand concurrent failures under
// one message write one line; the next line after the interval says how
// many were held back.
func TestLogLimited(t *testing.T) {
	var buf lockedBuffer
	d := &Daemon{log: slog.New(slog.NewTextHandler(&buf, nil)), logs: newLogThrottle(100 * time.Millisecond)}
	var wg sync.WaitGroup
	for range 1000 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d.logLimited(context.Background(), slog.LevelWarn, "store unavailable", "err", "disk full")
		}()
	}
	wg.Wait()
	if n := strings.Count(buf.String(), "\n"); n != 1 {
		t.Fatalf("1000 failures wrote %d lines:\n%s", n, buf.String())
	}
	time.Sleep(150 * time.Millisecond)
	d.logLimited(context.Background(), slog.LevelWarn, "store unavailable", "err", "disk full")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 || !strings.Contains(lines[1], "suppressed=999") || strings.Contains(lines[0], "suppressed") {
		t.Fatalf("want a second line with suppressed=999:\n%s", buf.String())
	}
}
