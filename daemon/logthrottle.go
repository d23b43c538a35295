package daemon

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// logInterval is how often a rate-limited log line may repeat. A failure
// that hits every request (a full disk, a store restarting) then costs one
// line per 10 s, not one per request on what may be the same full disk.
const logInterval = 10 * time.Second

// logThrottle lets one line per key through each interval and counts the
// lines it held back. Keys are log messages, which are constants, so its
// map stays as small as the set of messages.
type logThrottle struct {
	interval time.Duration

	mu   sync.Mutex
	keys map[string]*throttled
}

// throttled is one key's state.
type throttled struct {
	next       time.Time // when the next line may go out
	suppressed int       // lines held back since the last one went out
}

func newLogThrottle(interval time.Duration) *logThrottle {
	return &logThrottle{interval: interval, keys: make(map[string]*throttled)}
}

// allow reports whether a line under key may go out at now and, if so,
// how many lines under key it held back since the last one went out.
func (t *logThrottle) allow(key string, now time.Time) (suppressed int, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	k := t.keys[key]
	if k == nil {
		k = &throttled{}
		t.keys[key] = k
	}
	if now.Before(k.next) {
		k.suppressed++
		return 0, false
	}
	suppressed, k.suppressed = k.suppressed, 0
	k.next = now.Add(t.interval)
	return suppressed, true
}

// logLimited logs msg at level unless a line with the same msg went out
// less than logInterval ago. A line that goes out after others were held
// back says how many in "suppressed". Use it for every log line a failure
// can repeat per request or per retry.
func (d *Daemon) logLimited(ctx context.Context, level slog.Level, msg string, args ...any) {
	n, ok := d.logs.allow(msg, time.Now())
	if !ok {
		return
	}
	if n > 0 {
		args = append(args, "suppressed", n)
	}
	d.log.Log(ctx, level, msg, args...)
}
