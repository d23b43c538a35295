package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
)

// The route limits' window counters (handoff_limits), each step one
// statement under the row's lock instead of a read and a write: many
// requests bumping the few live counters at once queue on the row and
// never conflict. A counter of another window starts again at one; the
// count stops at the int32 maximum rather than overflow.
const (
	qHit = qHitOf + "VALUES ($1, $2, 1, $3) " + qHitConflict
	// qHitOf and qHitConflict are qHit around its row, which qExchange
	// gives by a SELECT.
	qHitOf       = "INSERT INTO handoff_limits AS l (key, window_start, count, expire) "
	qHitConflict = "ON CONFLICT (key) DO UPDATE SET count = CASE WHEN l.window_start <> EXCLUDED.window_start THEN 1 " +
		"WHEN l.count < 2147483647 THEN l.count + 1 ELSE l.count END, " +
		"window_start = EXCLUDED.window_start, expire = EXCLUDED.expire " +
		"RETURNING count"
	qForgetHits = "DELETE FROM handoff_limits WHERE key = $1"
)

// Hit implements tokenstore.Store in one statement (qHit).
func (s *Store) Hit(ctx context.Context, key string, start, expire time.Time) (int, error) {
	var n int
	err := s.write(ctx, "hit", func(t *txn) error {
		t.queue(qHit, key, start, expire).QueryRow(func(row pgx.Row) error { return row.Scan(&n) })
		return nil
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// ForgetHits implements tokenstore.Store in one statement.
func (s *Store) ForgetHits(ctx context.Context, key string) error {
	return s.write(ctx, "forget hits", func(t *txn) error {
		t.queue(qForgetHits, key)
		return nil
	})
}
