package daemon

import (
	"context"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/handoffd/handoff/tokenstore"
)

// counter counts hits on a key in fixed windows aligned to multiples of
// their period, as Appwrite's abuse TimeLimit does.
type counter interface {
	// hit counts one hit and returns the count in the current window and
	// when that window ends.
	hit(ctx context.Context, key string, period time.Duration, now time.Time) (int, time.Time, error)
	// reset forgets key's window (Appwrite's abuse reset on success).
	reset(ctx context.Context, key string) error
}

// newCounter picks where the limits are counted: in the store when it is
// one several daemons share (PostgreSQL), so a
// client gets the same limit whichever replica answers; in memory for the
// embedded store, which one daemon owns.
func newCounter(core *tokenstore.Core) counter {
	if core.Store().Shared() {
		return storeCounter{core}
	}
	return newMemCounter()
}

// limit counts one hit on key when limits are on and answers errRateLimit
// past limit, with Appwrite's X-RateLimit-* headers either way.
func (d *Daemon) limit(w http.ResponseWriter, r *http.Request, key string, limit int, period time.Duration) error {
	if !d.cfg.Limits.Enabled {
		return nil
	}
	count, end, err := d.limits.hit(r.Context(), key, period, time.Now())
	if err != nil {
		return err
	}
	return d.limitCounted(w, r, limit, count, end)
}

// limitCounted sets Appwrite's X-RateLimit-* headers for a request that
// made count hits on a limit whose window ends at end, and answers
// errRateLimit past limit.
func (d *Daemon) limitCounted(w http.ResponseWriter, r *http.Request, limit, count int, end time.Time) error {
	// The names are spelled as net/http sends them, which Set would
	// otherwise rewrite (a copy each) on every request.
	h := w.Header()
	h.Set("X-Ratelimit-Limit", strconv.Itoa(limit))
	h.Set("X-Ratelimit-Remaining", strconv.Itoa(max(0, limit-count)))
	h.Set("X-Ratelimit-Reset", strconv.FormatInt(end.Unix(), 10))
	if count > limit {
		d.metrics.limited.WithLabelValues(r.Pattern).Inc()
		return errRateLimit
	}
	return nil
}

// limitsInStore reports whether the limits are counted in the store,
// where a step can count its own (tokenstore.Core.ExchangeLimited).
func (d *Daemon) limitsInStore() bool {
	_, ok := d.limits.(storeCounter)
	return ok
}

// storeCounter counts in the token core's store.
type storeCounter struct{ core *tokenstore.Core }

func (s storeCounter) hit(ctx context.Context, key string, period time.Duration, now time.Time) (int, time.Time, error) {
	return s.core.Hit(ctx, key, period, now)
}

func (s storeCounter) reset(ctx context.Context, key string) error { return s.core.ResetHits(ctx, key) }

// memCounter counts in this daemon's memory.
type memCounter struct {
	mu      sync.Mutex
	windows map[string]*window
	sweep   time.Time
}

type window struct {
	start time.Time
	count int
}

func newMemCounter() *memCounter { return &memCounter{windows: map[string]*window{}} }

func (l *memCounter) hit(_ context.Context, key string, period time.Duration, now time.Time) (int, time.Time, error) {
	start := now.Truncate(period)
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.sweep) > time.Minute {
		for k, win := range l.windows {
			if now.Sub(win.start) > 2*time.Hour {
				delete(l.windows, k)
			}
		}
		l.sweep = now
	}
	win, ok := l.windows[key]
	if !ok || !win.start.Equal(start) {
		win = &window{start: start}
		l.windows[key] = win
	}
	win.count++
	return win.count, start.Add(period), nil
}

func (l *memCounter) reset(_ context.Context, key string) error {
	l.mu.Lock()
	delete(l.windows, key)
	l.mu.Unlock()
	return nil
}

// Interface guards.
var (
	_ counter = storeCounter{}
	_ counter = (*memCounter)(nil)
)
