package postgres

import (
	"context"
	"sync"
	"testing"
	"time"
)

// TestSweepReplicas sweeps from several replicas at once: every expired row
// goes, each counted once, and the live ones stay.
func TestSweepReplicas(t *testing.T) {
	schema := freshSchema(t)
	st := openSchema(t, schema, Options{})
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Microsecond)
	const expired = 3000
	if _, err := st.pool.Exec(ctx, "INSERT INTO handoff_plugin_kv (namespace, key, value, expire) "+
		"SELECT 'ns', 'k' || i, '', $1::timestamptz - i * interval '1 ms' FROM generate_series(1, $2) AS i", now, expired); err != nil {
		t.Fatal(err)
	}
	if _, err := st.pool.Exec(ctx, "INSERT INTO handoff_limits (key, window_start, count, expire) "+
		"VALUES ('live', $1, 1, $2), ('gone', $1, 1, $1)", now.Add(-time.Hour), now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	replicas := []*Store{st, openSchema(t, schema, Options{}), openSchema(t, schema, Options{})}
	var (
		mu    sync.Mutex
		total int
		wg    sync.WaitGroup
	)
	for _, r := range replicas {
		wg.Go(func() {
			for {
				n, err := r.Sweep(ctx, now.Add(time.Microsecond), 500)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				total += n
				mu.Unlock()
				if n == 0 {
					return
				}
			}
		})
	}
	wg.Wait()
	var left, live int
	if err := st.pool.QueryRow(ctx, "SELECT (SELECT count(*) FROM handoff_plugin_kv), (SELECT count(*) FROM handoff_limits WHERE key = 'live')").Scan(&left, &live); err != nil {
		t.Fatal(err)
	}
	if total != expired+1 || left != 0 || live != 1 {
		t.Fatalf("swept %d (want %d), %d values left, live counter %d", total, expired+1, left, live)
	}
}
