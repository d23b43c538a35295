package daemon

import (
	"net/http"
	"strconv"
	"sync"
	"time"
)

// limiter counts hits in fixed windows aligned to multiples of their
// period, as Appwrite's abuse TimeLimit does. It lives in memory: one
// daemon's view. (Replicas on PostgreSQL each count their own.)
type limiter struct {
	mu      sync.Mutex
	windows map[string]*window
	sweep   time.Time
}

type window struct {
	start time.Time
	count int
}

func newLimiter() *limiter { return &limiter{windows: map[string]*window{}} }

// hit counts one hit on key and reports whether it is within limit, and the
// headers to send.
func (l *limiter) hit(w http.ResponseWriter, key string, limit int, period time.Duration, now time.Time) bool {
	start := now.Truncate(period)
	l.mu.Lock()
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
	count := win.count
	l.mu.Unlock()
	h := w.Header()
	h.Set("X-RateLimit-Limit", strconv.Itoa(limit))
	h.Set("X-RateLimit-Remaining", strconv.Itoa(max(0, limit-count)))
	h.Set("X-RateLimit-Reset", strconv.FormatInt(start.Add(period).Unix(), 10))
	return count <= limit
}

// reset forgets key's window (Appwrite's abuse-reset on success).
func (l *limiter) reset(key string) {
	l.mu.Lock()
	delete(l.windows, key)
	l.mu.Unlock()
}
