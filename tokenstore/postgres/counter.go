package postgres

import (
	"context"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/handoffd/handoff/tokenstore"
)

// qCount bumps a window counter in one statement, under the row lock of
// the upsert instead of a serializable transaction: many requests bumping
// the few live limit rows at once neither conflict nor retry. The value is
// the window's start (8 bytes) and the count (8 bytes, big-endian: what
// int8send writes); a row of another window starts again at one.
const qCount = "INSERT INTO handoff_kv (bucket, key, value, expire) VALUES ($1, $2, $3, $4) " +
	"ON CONFLICT (bucket, key) DO UPDATE SET " +
	"value = CASE WHEN length(handoff_kv.value) = 16 AND substring(handoff_kv.value FROM 1 FOR 8) = substring(EXCLUDED.value FROM 1 FOR 8) " +
	"THEN substring(handoff_kv.value FROM 1 FOR 8) || int8send(('x' || encode(substring(handoff_kv.value FROM 9 FOR 8), 'hex'))::bit(64)::bigint + 1) " +
	"ELSE EXCLUDED.value END, expire = EXCLUDED.expire " +
	"RETURNING value"

// Count implements tokenstore.Counter.
func (s *Store) Count(ctx context.Context, bucket string, key []byte, start, expire time.Time) (int, error) {
	if s.closed.Load() {
		return 0, tokenstore.ErrClosed
	}
	first := binary.BigEndian.AppendUint64(make([]byte, 0, 16), uint64(start.UnixNano()))
	first = binary.BigEndian.AppendUint64(first, 1)
	var value []byte
	s.roundTrips.Add(1)
	if err := s.pool.QueryRow(ctx, qCount, bucket, key, first, expire).Scan(&value); err != nil {
		if serverDown(err) && ctx.Err() == nil {
			return 0, unavailable(err)
		}
		return 0, fmt.Errorf("postgres: count: %w", err)
	}
	if len(value) != 16 {
		return 0, fmt.Errorf("postgres: count: a value of %d bytes under %s", len(value), bucket)
	}
	return int(min(binary.BigEndian.Uint64(value[8:]), 1<<31-1)), nil
}

// Forget implements tokenstore.Counter.
func (s *Store) Forget(ctx context.Context, bucket string, key []byte) error {
	if s.closed.Load() {
		return tokenstore.ErrClosed
	}
	s.roundTrips.Add(1)
	if _, err := s.pool.Exec(ctx, qDelete, bucket, key); err != nil {
		if serverDown(err) && ctx.Err() == nil {
			return unavailable(err)
		}
		return fmt.Errorf("postgres: forget: %w", err)
	}
	return nil
}
