package tokenstore

import (
	"context"
	"encoding/binary"
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
	k := []byte(key)
	if ctr, ok := c.backend.(Counter); ok {
		var n int
		err := c.bound(ctx, func(ctx context.Context) (err error) {
			n, err = ctr.Count(ctx, bucketLimits, k, start, end)
			return err
		})
		return n, end, err
	}
	var count uint64
	err := c.store.Update(ctx, func(tx Tx) error {
		count = 1
		raw, err := tx.Get(bucketLimits, k)
		switch {
		case err == nil && len(raw) == 16 && int64(binary.BigEndian.Uint64(raw)) == start.UnixNano():
			count = binary.BigEndian.Uint64(raw[8:]) + 1
		case err != nil && err != ErrNotFound:
			return err
		}
		v := binary.BigEndian.AppendUint64(make([]byte, 0, 16), uint64(start.UnixNano()))
		return tx.Put(bucketLimits, k, binary.BigEndian.AppendUint64(v, count), end)
	})
	if err != nil {
		return 0, time.Time{}, err
	}
	return int(min(count, uint64(1<<31-1))), end, nil
}

// ResetHits forgets key's window (Appwrite's abuse reset after a success).
func (c *Core) ResetHits(ctx context.Context, key string) error {
	if ctr, ok := c.backend.(Counter); ok {
		return c.bound(ctx, func(ctx context.Context) error { return ctr.Forget(ctx, bucketLimits, []byte(key)) })
	}
	return c.store.Update(ctx, func(tx Tx) error { return tx.Delete(bucketLimits, []byte(key)) })
}
