package tokenstore

import (
	"context"
	"time"
)

// Hit counts one hit on key in the fixed window of length period that now
// falls in (windows are aligned to multiples of period, as Appwrite's abuse
// TimeLimit aligns them), and returns the count so far in that window and
// when the window ends. The counter lives in the store, so every daemon on
// one database counts the same hits; it expires with its window.
func (c *Core) Hit(ctx context.Context, key string, period time.Duration, now time.Time) (int, time.Time, error) {
	start := now.Truncate(period)
	end := start.Add(period)
	var n int
	err := c.call(ctx, "hit", func(ctx context.Context) (err error) {
		n, err = c.store.Hit(ctx, key, start, end)
		return err
	})
	if err != nil {
		return 0, time.Time{}, err
	}
	return n, end, nil
}

// ResetHits forgets key's window (Appwrite's abuse reset after a success).
func (c *Core) ResetHits(ctx context.Context, key string) error {
	return c.call(ctx, "forget_hits", func(ctx context.Context) error { return c.store.ForgetHits(ctx, key) })
}
