package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// sweepBatch bounds the rows one sweep statement deletes, so a sweep never
// holds many row locks for long.
const sweepBatch = 1000

// sweepTables are the tables whose rows expire, each swept through its
// expiry index.
var sweepTables = []string{"handoff_tokens", "handoff_sessions", "handoff_plugin_kv", "handoff_limits"}

// qSweep deletes, from each table, a batch of rows that expired before $1,
// found in expiry order through the table's expiry index; rows another
// sweeper or a step holds are skipped (SKIP LOCKED), so replicas sweep at
// once without waiting on each other or deleting a row twice. The rows are
// deleted by their physical address (a TID scan), so the DELETE reads no
// other part of the table.
var qSweep = func() map[string]string {
	m := make(map[string]string, len(sweepTables))
	for _, table := range sweepTables {
		m[table] = fmt.Sprintf("DELETE FROM %[1]s WHERE ctid = ANY(ARRAY("+
			"SELECT ctid FROM %[1]s WHERE expire < $1 ORDER BY expire LIMIT $2 FOR UPDATE SKIP LOCKED))", table)
	}
	return m
}()

// Sweep implements tokenstore.Store: up to limit expired rows (all of them
// when limit <= 0), table after table, a batch of at most sweepBatch rows
// a statement, each statement its own transaction.
//
// Expiry instants are stored to the microsecond; a row goes only once now
// has passed its stored instant, so never early.
func (s *Store) Sweep(ctx context.Context, now time.Time, limit int) (int, error) {
	total := 0
	for _, table := range sweepTables {
		for limit <= 0 || total < limit {
			n := sweepBatch
			if limit > 0 {
				n = min(n, limit-total)
			}
			var deleted int64
			err := s.write(ctx, "sweep "+table, func(t *txn) error {
				t.queue(qSweep[table], sqlNow(now), n).Exec(func(tag pgconn.CommandTag) error {
					deleted = tag.RowsAffected()
					return nil
				})
				return nil
			})
			if err != nil {
				return total, err
			}
			total += int(deleted)
			if deleted < int64(n) {
				break
			}
		}
	}
	return total, nil
}
