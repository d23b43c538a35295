package postgres

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/handoffd/handoff/tokenstore"
	"github.com/handoffd/handoff/tokenstore/storetest"
)

// dsnEnv names the variable that points the tests at a PostgreSQL server.
const dsnEnv = "HANDOFF_TEST_POSTGRES_DSN"

// testDSN returns the test server's DSN. Without one the tests skip, except
// under CI=true, where a missing database is a failure, not a pass.
func testDSN(tb testing.TB) string {
	tb.Helper()
	dsn := os.Getenv(dsnEnv)
	if dsn == "" {
		if os.Getenv("CI") == "true" {
			tb.Fatalf("%s is not set; CI must run the PostgreSQL store tests", dsnEnv)
		}
		tb.Skipf("set %s (e.g. postgres://postgres@127.0.0.1:5432/test?sslmode=disable) to run the PostgreSQL store tests", dsnEnv)
	}
	return dsn
}

// freshSchema returns the name of a schema no other test uses, dropped
// with everything in it when the test ends.
func freshSchema(tb testing.TB) string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	name, _, drop, err := TempSchema(ctx, testDSN(tb), "handoff_test_")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := drop(); err != nil {
			tb.Error(err)
		}
	})
	return name
}

// openSchema opens a store on schema, closed when the test ends.
func openSchema(tb testing.TB, schema string, opts Options) *Store {
	tb.Helper()
	opts.DSN = testDSN(tb)
	opts.Schema = schema
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := Open(ctx, opts)
	if err != nil {
		tb.Fatalf("Open: %v", err)
	}
	tb.Cleanup(func() { _ = s.Close() })
	return s
}

// openTest opens a store on a fresh schema of its own.
func openTest(tb testing.TB) *Store {
	tb.Helper()
	return openSchema(tb, freshSchema(tb), Options{})
}

// admin returns a plain connection to the test database.
func admin(tb testing.TB) *pgx.Conn {
	tb.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, testDSN(tb))
	if err != nil {
		tb.Fatalf("connect: %v", err)
	}
	tb.Cleanup(func() { _ = conn.Close(ctx) })
	return conn
}

// openStore is the suites' opener: a fresh store on a schema of its own.
func openStore(t *testing.T) tokenstore.Store { return openTest(t) }

// reopener gives the suite a schema that outlives the stores it opens.
func reopener(t *testing.T) func() tokenstore.Store {
	schema := freshSchema(t)
	return func() tokenstore.Store {
		s, err := Open(context.Background(), Options{DSN: testDSN(t), Schema: schema})
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		return s
	}
}

func TestConformance(t *testing.T) {
	storetest.Run(t, openStore, storetest.WithReopen(reopener))
}

func TestConcurrency(t *testing.T) { storetest.RunConcurrency(t, openStore) }

func BenchmarkStore(b *testing.B) {
	storetest.Bench(b, func(b *testing.B) tokenstore.Store { return openTest(b) })
}

func put(t *testing.T, s *Store, bucket string, kvs map[string]string) {
	t.Helper()
	err := s.Update(context.Background(), func(tx tokenstore.Tx) error {
		for k, v := range kvs {
			if err := tx.Put(bucket, []byte(k), []byte(v), time.Time{}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("put: %v", err)
	}
}

func scanKeys(t *testing.T, s *Store, bucket string, prefix, after []byte) [][]byte {
	t.Helper()
	var keys [][]byte
	err := s.View(context.Background(), func(tx tokenstore.Tx) error {
		keys = keys[:0]
		return tx.Scan(bucket, prefix, after, func(k, _ []byte) bool {
			keys = append(keys, bytes.Clone(k))
			return true
		})
	})
	if err != nil {
		t.Fatalf("scan: %v", err)
	}
	return keys
}

func TestBasics(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()

	// A nil value and an empty key are stored, not turned into NULL.
	err := s.Update(ctx, func(tx tokenstore.Tx) error {
		if err := tx.Put("b", []byte("k"), []byte("v1"), time.Time{}); err != nil {
			return err
		}
		if err := tx.Put("b", []byte{}, nil, time.Time{}); err != nil {
			return err
		}
		// Reads see the writes queued before them.
		v, err := tx.Get("b", []byte("k"))
		if err != nil || string(v) != "v1" {
			return fmt.Errorf("get after put = %q, %v", v, err)
		}
		if err := tx.Insert("b", []byte("k"), []byte("v2"), time.Time{}); !errors.Is(err, tokenstore.ErrExists) {
			return fmt.Errorf("insert over a key = %v, want ErrExists", err)
		}
		if err := tx.Insert("b", []byte("n"), []byte("v3"), time.Time{}); err != nil {
			return fmt.Errorf("insert: %v", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	err = s.View(ctx, func(tx tokenstore.Tx) error {
		v, err := tx.Get("b", nil)
		if err != nil || v == nil || len(v) != 0 {
			return fmt.Errorf("get empty key = %#v, %v", v, err)
		}
		if v, err := tx.Get("b", []byte("k")); err != nil || string(v) != "v1" {
			return fmt.Errorf("get k = %q, %v; the failed insert must change nothing", v, err)
		}
		if _, err := tx.Get("other", []byte("k")); !errors.Is(err, tokenstore.ErrNotFound) {
			return fmt.Errorf("get in another bucket = %v, want ErrNotFound", err)
		}
		if err := tx.Put("b", []byte("x"), nil, time.Time{}); err == nil {
			return errors.New("put in a view succeeded")
		}
		if _, err := tx.Take("b", []byte("k")); err == nil {
			return errors.New("take in a view succeeded")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	// A bucket name the database cannot hold is refused up front and
	// leaves the transaction usable; a large value goes through whole.
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	err = s.Update(ctx, func(tx tokenstore.Tx) error {
		if err := tx.Put("bad\x00name", []byte("k"), nil, time.Time{}); err == nil {
			return errors.New("put into a bucket named with NUL succeeded")
		}
		if _, err := tx.Get("\xff", []byte("k")); err == nil || errors.Is(err, tokenstore.ErrNotFound) {
			return fmt.Errorf("get from a bucket named with bad UTF-8 = %v", err)
		}
		return tx.Put("big", []byte("k"), big, time.Time{})
	})
	if err != nil {
		t.Fatal(err)
	}
	err = s.View(ctx, func(tx tokenstore.Tx) error {
		v, err := tx.Get("big", []byte("k"))
		if err == nil && !bytes.Equal(v, big) {
			err = fmt.Errorf("large value came back as %d bytes", len(v))
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}

	// Take returns and deletes; a second Take misses.
	err = s.Update(ctx, func(tx tokenstore.Tx) error {
		v, err := tx.Take("b", []byte("k"))
		if err != nil || string(v) != "v1" {
			return fmt.Errorf("take = %q, %v", v, err)
		}
		if _, err := tx.Take("b", []byte("k")); !errors.Is(err, tokenstore.ErrNotFound) {
			return fmt.Errorf("second take = %v, want ErrNotFound", err)
		}
		if err := tx.Delete("b", []byte("absent")); err != nil {
			return fmt.Errorf("delete of an absent key: %v", err)
		}
		return tx.Delete("b", []byte("n"))
	})
	if err != nil {
		t.Fatal(err)
	}
	if keys := scanKeys(t, s, "b", nil, nil); len(keys) != 1 || len(keys[0]) != 0 {
		t.Fatalf("keys left = %q, want only the empty key", keys)
	}

	// An error from fn rolls everything back, and comes back as it was.
	sentinel := errors.New("stop")
	err = s.Update(ctx, func(tx tokenstore.Tx) error {
		if err := tx.Put("b", []byte("gone"), []byte("1"), time.Time{}); err != nil {
			return err
		}
		if _, err := tx.Get("b", []byte("gone")); err != nil {
			return err
		}
		return sentinel
	})
	if err != sentinel {
		t.Fatalf("Update = %v, want fn's own error", err)
	}
	err = s.View(ctx, func(tx tokenstore.Tx) error {
		_, err := tx.Get("b", []byte("gone"))
		return err
	})
	if !errors.Is(err, tokenstore.ErrNotFound) {
		t.Fatalf("get after rollback = %v, want ErrNotFound", err)
	}
	// A rolled back transaction leaves its connection usable: the pool
	// still has every connection it made.
	// (Rollbacks run in the background: give them a moment.)
	deadline := time.Now().Add(5 * time.Second)
	for st := s.Stats(); st.TotalConns == 0 || st.AcquiredConns != 0; st = s.Stats() {
		if time.Now().After(deadline) {
			t.Fatalf("pool after rollbacks: %+v", st)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := s.pool.Stat().NewConnsCount(); int32(n) != s.Stats().TotalConns {
		t.Fatalf("the pool made %d connections and holds %d: rollbacks lost some", n, s.Stats().TotalConns)
	}
}

func TestScanOrder(t *testing.T) {
	s := openTest(t)
	// Keys with high bytes and 0 bytes: bytea must order them as
	// bytes.Compare does (memcmp, shorter first on a tie).
	raw := [][]byte{
		{}, {0}, {0, 0}, {0, 1}, {1}, {0x7f}, {0x80}, {0x80, 0}, {0xfe, 0xff}, {0xff}, {0xff, 0}, {0xff, 0xff}, {0xff, 0xff, 0xff},
		[]byte("a"), []byte("a\x00"), []byte("a\x00b"), []byte("a\xff"), []byte("ab"), []byte("b"),
	}
	kvs := map[string]string{}
	for _, k := range raw {
		kvs[string(k)] = "v"
	}
	put(t, s, "o", kvs)
	put(t, s, "o2", map[string]string{"a": "other bucket"})
	put(t, s, "n", map[string]string{"a": "the bucket before"})

	check := func(name string, prefix, after []byte) {
		t.Helper()
		var want [][]byte
		for _, k := range raw {
			if bytes.HasPrefix(k, prefix) && (after == nil || bytes.Compare(k, after) > 0) {
				want = append(want, k)
			}
		}
		sortBytes(want)
		got := scanKeys(t, s, "o", prefix, after)
		if len(got) != len(want) {
			t.Fatalf("%s: scan = %q, want %q", name, got, want)
		}
		for i := range got {
			if !bytes.Equal(got[i], want[i]) {
				t.Fatalf("%s: scan = %q, want %q", name, got, want)
			}
		}
	}
	check("all", nil, nil)
	check("empty after", nil, []byte{})
	check("prefix 0", []byte{0}, nil)
	check("prefix ff", []byte{0xff}, nil)
	check("prefix ffff", []byte{0xff, 0xff}, nil)
	check("prefix a", []byte("a"), nil)
	check("prefix a0", []byte("a\x00"), nil)
	check("prefix a after a0", []byte("a"), []byte("a\x00"))
	check("after below prefix", []byte("a"), []byte{0})
	check("after above prefix", []byte("a"), []byte("b"))
	check("after 80", nil, []byte{0x80})
	check("none", []byte("zz"), nil)
}

func sortBytes(keys [][]byte) {
	for i := 1; i < len(keys); i++ {
		for j := i; j > 0 && bytes.Compare(keys[j-1], keys[j]) > 0; j-- {
			keys[j-1], keys[j] = keys[j], keys[j-1]
		}
	}
}

func TestScanPages(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	const n = 3*scanPage + 7
	err := s.Update(ctx, func(tx tokenstore.Tx) error {
		for i := range n {
			if err := tx.Put("p", []byte(fmt.Sprintf("k%05d", i)), []byte(strconv.Itoa(i)), time.Time{}); err != nil {
				return err
			}
		}
		// Scan inside the writing transaction sees the queued writes.
		seen := 0
		if err := tx.Scan("p", []byte("k"), nil, func(_, _ []byte) bool { seen++; return true }); err != nil {
			return err
		}
		if seen != n {
			return fmt.Errorf("scan in update saw %d keys, want %d", seen, n)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	keys := scanKeys(t, s, "p", []byte("k"), nil)
	if len(keys) != n {
		t.Fatalf("scan saw %d keys, want %d", len(keys), n)
	}
	for i, k := range keys {
		if string(k) != fmt.Sprintf("k%05d", i) {
			t.Fatalf("key %d = %q", i, k)
		}
	}
	// Stopping early reads one page, not the rest.
	before := s.Stats().RoundTrips
	err = s.View(ctx, func(tx tokenstore.Tx) error {
		seen := 0
		return tx.Scan("p", nil, nil, func(_, _ []byte) bool { seen++; return seen < 10 })
	})
	if err != nil {
		t.Fatal(err)
	}
	if rt := s.Stats().RoundTrips - before; rt != 2 { // BEGIN+page, COMMIT
		t.Fatalf("early stop took %d round trips, want 2", rt)
	}
	// fn may use the transaction while a scan runs.
	err = s.Update(ctx, func(tx tokenstore.Tx) error {
		return tx.Scan("p", []byte("k"), nil, func(k, _ []byte) bool {
			return tx.Delete("p", k) == nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	if keys := scanKeys(t, s, "p", nil, nil); len(keys) != 0 {
		t.Fatalf("%d keys left after deleting inside a scan", len(keys))
	}
}

// TestRoundTrips pins the pipelining: what each shape of transaction costs.
func TestRoundTrips(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	cost := func(name string, want uint64, write bool, fn func(tokenstore.Tx) error) {
		t.Helper()
		before := s.Stats().RoundTrips
		run := s.View
		if write {
			run = s.Update
		}
		if err := run(ctx, fn); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got := s.Stats().RoundTrips - before; got != want {
			t.Errorf("%s: %d round trips, want %d", name, got, want)
		}
	}
	cost("nothing", 0, true, func(tokenstore.Tx) error { return nil })
	cost("one put", 1, true, func(tx tokenstore.Tx) error {
		return tx.Put("r", []byte("a"), []byte("1"), time.Time{})
	})
	cost("puts and deletes", 1, true, func(tx tokenstore.Tx) error {
		for i := range 10 {
			if err := tx.Put("r", []byte{byte(i)}, nil, time.Now().Add(time.Hour)); err != nil {
				return err
			}
		}
		return tx.Delete("r", []byte{3})
	})
	cost("get then put", 2, true, func(tx tokenstore.Tx) error {
		if _, err := tx.Get("r", []byte("a")); err != nil {
			return err
		}
		return tx.Put("r", []byte("a"), []byte("2"), time.Time{})
	})
	cost("view of one get", 2, false, func(tx tokenstore.Tx) error {
		_, err := tx.Get("r", []byte("a"))
		return err
	})
}

// TestSerializable checks that read-modify-write transactions behave as if
// run one at a time: a counter loses no increment, and a capped set never
// grows past its cap (the write skew REPEATABLE READ would allow).
func TestSerializable(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	const workers = 32
	var wg sync.WaitGroup
	errs := make(chan error, 2*workers)
	for w := range workers {
		wg.Add(2)
		go func() {
			defer wg.Done()
			errs <- s.Update(ctx, func(tx tokenstore.Tx) error {
				n := 0
				v, err := tx.Get("c", []byte("counter"))
				switch {
				case err == nil:
					n, _ = strconv.Atoi(string(v))
				case !errors.Is(err, tokenstore.ErrNotFound):
					return err
				}
				return tx.Put("c", []byte("counter"), []byte(strconv.Itoa(n+1)), time.Time{})
			})
		}()
		go func() {
			defer wg.Done()
			errs <- s.Update(ctx, func(tx tokenstore.Tx) error {
				n := 0
				if err := tx.Scan("cap", []byte("u\x00"), nil, func(_, _ []byte) bool { n++; return true }); err != nil {
					return err
				}
				if n >= 5 {
					return nil
				}
				return tx.Put("cap", []byte(fmt.Sprintf("u\x00%03d", w)), nil, time.Time{})
			})
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	err := s.View(ctx, func(tx tokenstore.Tx) error {
		v, err := tx.Get("c", []byte("counter"))
		if err != nil {
			return err
		}
		if string(v) != strconv.Itoa(workers) {
			return fmt.Errorf("counter = %s, want %d", v, workers)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if keys := scanKeys(t, s, "cap", []byte("u\x00"), nil); len(keys) != 5 {
		t.Fatalf("capped set has %d members, want 5", len(keys))
	}
	t.Logf("stats: %+v", s.Stats())
}

// TestTakeOnce races 64 Takes of one key, many rounds: exactly one wins.
func TestTakeOnce(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	const racers, rounds = 64, 20
	for r := range rounds {
		k := []byte("t" + strconv.Itoa(r))
		put(t, s, "t", map[string]string{string(k): "v"})
		var wins atomic.Int32
		var wg sync.WaitGroup
		for range racers {
			wg.Go(func() {
				var won bool
				err := s.Update(ctx, func(tx tokenstore.Tx) error {
					_, err := tx.Take("t", k)
					won = err == nil
					if errors.Is(err, tokenstore.ErrNotFound) {
						return nil
					}
					return err
				})
				if err != nil {
					t.Error(err)
				}
				if won {
					wins.Add(1)
				}
			})
		}
		wg.Wait()
		if w := wins.Load(); w != 1 {
			t.Fatalf("round %d: %d winners", r, w)
		}
	}
}

func TestSweep(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	now := time.Now()
	err := s.Update(ctx, func(tx tokenstore.Tx) error {
		for i := range 25 {
			if err := tx.Put("s", []byte(fmt.Sprintf("old%02d", i)), nil, now.Add(-time.Minute)); err != nil {
				return err
			}
		}
		if err := tx.Put("s", []byte("at-now"), nil, now); err != nil {
			return err
		}
		if err := tx.Put("s", []byte("later"), nil, now.Add(time.Minute)); err != nil {
			return err
		}
		return tx.Put("s", []byte("forever"), nil, time.Time{})
	})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := s.Sweep(ctx, now, 10); err != nil || n != 10 {
		t.Fatalf("Sweep(limit 10) = %d, %v", n, err)
	}
	if n, err := s.Sweep(ctx, now, 0); err != nil || n != 15 {
		t.Fatalf("Sweep(no limit) = %d, %v; want the other 15, not the key expiring at now", n, err)
	}
	if n, err := s.Sweep(ctx, now.Add(time.Second), 100); err != nil || n != 1 {
		t.Fatalf("Sweep(now+1s) = %d, %v; want the key that expired at now", n, err)
	}
	// A Put without expiry takes the key out of the expiry index.
	put(t, s, "s", map[string]string{"later": "kept"})
	if n, err := s.Sweep(ctx, now.Add(time.Hour), 100); err != nil || n != 0 {
		t.Fatalf("Sweep(now+1h) = %d, %v; want nothing", n, err)
	}
	if keys := scanKeys(t, s, "s", nil, nil); len(keys) != 2 {
		t.Fatalf("left after sweeps: %q", keys)
	}

	// The sweep walks the expiry index and deletes by TID: it never reads
	// the table (seq scans are priced out so the tiny test table cannot
	// hide an unusable index).
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, "SET LOCAL enable_seqscan = off"); err != nil {
		t.Fatal(err)
	}
	var plan string
	rows, err := tx.Query(ctx, "EXPLAIN "+qSweep, now, 1000)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			t.Fatal(err)
		}
		plan += line + "\n"
	}
	if rows.Err() != nil {
		t.Fatal(rows.Err())
	}
	if !strings.Contains(plan, "handoff_kv_expire") || !strings.Contains(plan, "Tid Scan") || strings.Contains(plan, "Seq Scan") {
		t.Fatalf("sweep plan does not walk the expiry index:\n%s", plan)
	}
}

// TestSweepConcurrent runs sweeps of two stores (two replicas) at once:
// every expired row is deleted once, so the counts add up exactly.
func TestSweepConcurrent(t *testing.T) {
	schema := freshSchema(t)
	a := openSchema(t, schema, Options{})
	b := openSchema(t, schema, Options{})
	ctx := context.Background()
	const expired, live = 5000, 500
	now := time.Now()
	err := a.Update(ctx, func(tx tokenstore.Tx) error {
		for i := range expired + live {
			exp := now.Add(-time.Duration(i+1) * time.Millisecond)
			if i >= expired {
				exp = now.Add(time.Hour)
			}
			if err := tx.Put("s", []byte(fmt.Sprintf("k%06d", i)), nil, exp); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var total atomic.Int64
	var wg sync.WaitGroup
	for _, s := range []*Store{a, b, a, b} {
		wg.Go(func() {
			for {
				n, err := s.Sweep(ctx, now, 100)
				if err != nil {
					t.Error(err)
					return
				}
				total.Add(int64(n))
				if n == 0 {
					return
				}
			}
		})
	}
	wg.Wait()
	if n, err := a.Sweep(ctx, now, 0); err != nil || n != 0 {
		t.Fatalf("a last sweep = %d, %v; want nothing left", n, err)
	}
	if got := total.Load(); got != expired {
		t.Fatalf("sweepers deleted %d rows in total, want %d", got, expired)
	}
	if keys := scanKeys(t, a, "s", nil, nil); len(keys) != live {
		t.Fatalf("%d keys left, want %d", len(keys), live)
	}
}

func TestMigrationsIdempotent(t *testing.T) {
	schema := freshSchema(t)
	first := openSchema(t, schema, Options{})
	put(t, first, "m", map[string]string{"k": "v"})
	_ = first.Close()
	second := openSchema(t, schema, Options{})
	if keys := scanKeys(t, second, "m", nil, nil); len(keys) != 1 {
		t.Fatalf("data after a second Open: %q", keys)
	}
	var n, v int
	err := second.pool.QueryRow(context.Background(), "SELECT count(*), max(version) FROM handoff_schema_migrations").Scan(&n, &v)
	if err != nil {
		t.Fatal(err)
	}
	if v != SchemaVersion() || n != len(mustMigrations(t)) {
		t.Fatalf("migrations table: %d rows, version %d; want %d rows, version %d", n, v, len(mustMigrations(t)), SchemaVersion())
	}
}

func mustMigrations(t *testing.T) []migration {
	ms, err := migrations()
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) == 0 || ms[0].version != 1 {
		t.Fatalf("migrations must start at 0001: %+v", ms)
	}
	for i := 1; i < len(ms); i++ {
		if ms[i].version != ms[i-1].version+1 {
			t.Fatalf("migration versions skip from %d to %d", ms[i-1].version, ms[i].version)
		}
	}
	return ms
}

func TestOpenRace(t *testing.T) {
	schema := freshSchema(t)
	dsn := testDSN(t)
	const n = 6
	var wg sync.WaitGroup
	stores := make([]*Store, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			stores[i], errs[i] = Open(ctx, Options{DSN: dsn, Schema: schema, MaxConns: 2})
		})
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("Open %d: %v", i, errs[i])
		}
		defer stores[i].Close()
	}
	put(t, stores[0], "r", map[string]string{"k": "v"})
	if keys := scanKeys(t, stores[n-1], "r", nil, nil); len(keys) != 1 {
		t.Fatalf("stores do not share the schema: %q", keys)
	}
	var rows int
	if err := stores[0].pool.QueryRow(context.Background(), "SELECT count(*) FROM handoff_schema_migrations").Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if rows != SchemaVersion() {
		t.Fatalf("%d migration rows after racing Opens, want %d", rows, SchemaVersion())
	}
}

func TestSchemaTooNew(t *testing.T) {
	schema := freshSchema(t)
	s := openSchema(t, schema, Options{})
	next := SchemaVersion() + 1
	if _, err := s.pool.Exec(context.Background(), "INSERT INTO handoff_schema_migrations (version, name) VALUES ($1, 'from_the_future.sql')", next); err != nil {
		t.Fatal(err)
	}
	_, err := Open(context.Background(), Options{DSN: testDSN(t), Schema: schema})
	if !errors.Is(err, ErrSchemaTooNew) {
		t.Fatalf("Open on a newer schema = %v, want ErrSchemaTooNew", err)
	}
	if !strings.Contains(err.Error(), strconv.Itoa(next)) {
		t.Fatalf("error does not name the version found: %v", err)
	}
}

func TestUnreachable(t *testing.T) {
	// A port nothing listens on: bind one, note it, close it.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	const password = "s3cr3t-Pa55"
	for _, dsn := range []string{
		"postgres://handoff:" + password + "@" + addr + "/handoff?sslmode=disable&connect_timeout=2",
		"host=127.0.0.1 port=" + addr[strings.LastIndex(addr, ":")+1:] + " user=handoff password=" + password + " dbname=handoff connect_timeout=2",
	} {
		start := time.Now()
		s, err := Open(context.Background(), Options{DSN: dsn})
		if err == nil {
			_ = s.Close()
			t.Fatal("Open of a closed port succeeded")
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("Open took %v to fail", d)
		}
		if !errors.Is(err, ErrUnreachable) {
			t.Errorf("error does not match ErrUnreachable: %v", err)
		}
		if !strings.Contains(err.Error(), addr) {
			t.Errorf("error does not name %s: %v", addr, err)
		}
		if strings.Contains(err.Error(), password) {
			t.Errorf("error leaks the password: %v", err)
		}
		t.Logf("%v", err)
	}
	// A server that answers but refuses is not "unreachable".
	u := testDSN(t)
	if i := strings.Index(u, "?"); i >= 0 {
		u = u[:strings.LastIndex(u[:i], "/")] + "/handoff_no_such_db" + u[i:]
	} else {
		u = u[:strings.LastIndex(u, "/")] + "/handoff_no_such_db"
	}
	_, err = Open(context.Background(), Options{DSN: u})
	if err == nil || errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), "handoff_no_such_db") {
		t.Errorf("Open of a missing database = %v", err)
	}
	t.Logf("%v", err)

	// A DSN pgx cannot parse must not echo the password either.
	_, err = Open(context.Background(), Options{DSN: "postgres://handoff:" + password + "@127.0.0.1:notaport/x"})
	if err == nil || strings.Contains(err.Error(), password) {
		t.Errorf("bad DSN: %v", err)
	}
}

// TestConnectionLoss kills the store's server connections: the next
// operations reconnect by themselves.
func TestConnectionLoss(t *testing.T) {
	schema := freshSchema(t)
	app := "handoff_test_" + schema[len("handoff_test_"):]
	dsn := testDSN(t)
	sep := "?"
	if strings.Contains(dsn, "?") {
		sep = "&"
	}
	ctx := context.Background()
	s, err := Open(ctx, Options{DSN: dsn + sep + "application_name=" + app, Schema: schema, MaxConns: 4, MinConns: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	put(t, s, "l", map[string]string{"k": "v"})
	conn := admin(t)
	for round := range 3 {
		var killed int
		if err := conn.QueryRow(ctx, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1", app).Scan(&killed); err != nil {
			t.Fatal(err)
		}
		if killed == 0 {
			t.Fatalf("round %d: no connection to kill", round)
		}
		// Updates run again on a fresh connection; a View may report
		// the loss once, but the store recovers without help.
		if err := s.Update(ctx, func(tx tokenstore.Tx) error {
			_, err := tx.Get("l", []byte("k"))
			if err != nil {
				return err
			}
			return tx.Put("l", []byte("k"), []byte(strconv.Itoa(round)), time.Time{})
		}); err != nil {
			t.Fatalf("round %d: update after connection loss: %v", round, err)
		}
		if err := s.Ping(ctx); err != nil {
			t.Fatalf("round %d: ping: %v", round, err)
		}
	}
	t.Logf("stats: %+v", s.Stats())
}

func TestClosed(t *testing.T) {
	s := openTest(t)
	_ = s.Close()
	_ = s.Close()
	ctx := context.Background()
	if err := s.Update(ctx, func(tokenstore.Tx) error { return nil }); !errors.Is(err, tokenstore.ErrClosed) {
		t.Errorf("Update after Close = %v", err)
	}
	if err := s.View(ctx, func(tokenstore.Tx) error { return nil }); !errors.Is(err, tokenstore.ErrClosed) {
		t.Errorf("View after Close = %v", err)
	}
	if _, err := s.Sweep(ctx, time.Now(), 1); !errors.Is(err, tokenstore.ErrClosed) {
		t.Errorf("Sweep after Close = %v", err)
	}
	if err := s.Ping(ctx); !errors.Is(err, tokenstore.ErrClosed) {
		t.Errorf("Ping after Close = %v", err)
	}
}

func TestPrefixEnd(t *testing.T) {
	for _, c := range []struct{ in, want []byte }{
		{nil, nil},
		{[]byte{}, nil},
		{[]byte{0xff}, nil},
		{[]byte{0xff, 0xff}, nil},
		{[]byte("a"), []byte("b")},
		{[]byte{'a', 0xff}, []byte("b")},
		{[]byte{'a', 0}, []byte{'a', 1}},
		{[]byte{0x01, 0xfe, 0xff}, []byte{0x01, 0xff}},
	} {
		if got := prefixEnd(c.in); !bytes.Equal(got, c.want) || (got == nil) != (c.want == nil) {
			t.Errorf("prefixEnd(%x) = %x, want %x", c.in, got, c.want)
		}
	}
}

// TestViewSnapshot: all reads of a View see one snapshot, even when an
// Update commits between them.
func TestViewSnapshot(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	put(t, s, "v", map[string]string{"a": "1", "b": "1"})
	err := s.View(ctx, func(tx tokenstore.Tx) error {
		a, err := tx.Get("v", []byte("a"))
		if err != nil {
			return err
		}
		put(t, s, "v", map[string]string{"a": "2", "b": "2"})
		b, err := tx.Get("v", []byte("b"))
		if err != nil {
			return err
		}
		if string(a) != "1" || string(b) != "1" {
			return fmt.Errorf("view saw a=%s b=%s, want both from one snapshot", a, b)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestRetryRunsFnAgain interleaves two read-modify-writes of one key by
// hand: the one that loses is rolled back and its fn runs again on the new
// value, so no increment is lost.
func TestRetryRunsFnAgain(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	put(t, s, "r", map[string]string{"n": "0"})
	incr := func(tx tokenstore.Tx) error {
		v, err := tx.Get("r", []byte("n"))
		if err != nil {
			return err
		}
		n, _ := strconv.Atoi(string(v))
		return tx.Put("r", []byte("n"), []byte(strconv.Itoa(n+1)), time.Time{})
	}
	runs := 0
	err := s.Update(ctx, func(tx tokenstore.Tx) error {
		runs++
		v, err := tx.Get("r", []byte("n"))
		if err != nil {
			return err
		}
		if runs == 1 {
			if err := s.Update(ctx, incr); err != nil { // another client, in between
				return err
			}
		}
		n, _ := strconv.Atoi(string(v))
		return tx.Put("r", []byte("n"), []byte(strconv.Itoa(n+1)), time.Time{})
	})
	if err != nil {
		t.Fatal(err)
	}
	if runs != 2 {
		t.Fatalf("fn ran %d times, want 2", runs)
	}
	wantValue(t, s, "r", "n", "2")

	// A serialization failure that fn swallows still stops the commit:
	// the store runs fn again instead.
	put(t, s, "r", map[string]string{"k": "v"})
	runs = 0
	var took []bool
	err = s.Update(ctx, func(tx tokenstore.Tx) error {
		runs++
		if _, err := tx.Get("r", []byte("n")); err != nil {
			return err
		}
		if runs == 1 {
			if err := s.Update(ctx, func(tx tokenstore.Tx) error {
				_, err := tx.Take("r", []byte("k"))
				return err
			}); err != nil {
				return err
			}
		}
		_, err := tx.Take("r", []byte("k"))
		took = append(took, err == nil)
		_ = tx.Put("r", []byte("after"), []byte(strconv.Itoa(runs)), time.Time{})
		return nil // whatever went wrong
	})
	if err != nil {
		t.Fatal(err)
	}
	if runs != 2 || took[1] {
		t.Fatalf("fn ran %d times, took %v; want 2 runs, the second finding the key gone", runs, took)
	}
	wantValue(t, s, "r", "after", "2")
}

func wantValue(t *testing.T, s *Store, bucket, key, want string) {
	t.Helper()
	err := s.View(context.Background(), func(tx tokenstore.Tx) error {
		v, err := tx.Get(bucket, []byte(key))
		if err != nil {
			return err
		}
		if string(v) != want {
			return fmt.Errorf("%s/%s = %q, want %q", bucket, key, v, want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestHotRow has 64 writers increment one counter: none is lost, the
// losers queue for the row instead of retrying in a herd, and no advisory
// lock outlives its transaction.
func TestHotRow(t *testing.T) {
	schema := freshSchema(t)
	app := "handoff_test_hot_" + schema[len("handoff_test_"):]
	dsn := testDSN(t)
	sep := "?"
	if strings.Contains(dsn, "?") {
		sep = "&"
	}
	ctx := context.Background()
	s, err := Open(ctx, Options{DSN: dsn + sep + "application_name=" + app, Schema: schema})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const writers, each = 64, 5
	var wg sync.WaitGroup
	for range writers {
		wg.Go(func() {
			for range each {
				err := s.Update(ctx, func(tx tokenstore.Tx) error {
					n := 0
					v, err := tx.Get("h", []byte("n"))
					switch {
					case err == nil:
						n, _ = strconv.Atoi(string(v))
					case !errors.Is(err, tokenstore.ErrNotFound):
						return err
					}
					return tx.Put("h", []byte("n"), []byte(strconv.Itoa(n+1)), time.Time{})
				})
				if err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	wantValue(t, s, "h", "n", strconv.Itoa(writers*each))
	st := s.Stats()
	t.Logf("%d increments: %d transactions, %d retries, %d queued for the row", writers*each, st.Transactions, st.Retries, st.RowWaits)
	if st.RowWaits == 0 {
		t.Errorf("no retry queued for the contended row")
	}
	if st.Retries > 4*writers*each {
		t.Errorf("%d retries for %d increments: the herd is back", st.Retries, writers*each)
	}
	conn := admin(t)
	deadline := time.Now().Add(5 * time.Second)
	for {
		var held int
		err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid)
			WHERE l.locktype = 'advisory' AND a.application_name = $1`, app).Scan(&held)
		if err != nil {
			t.Fatal(err)
		}
		if held == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d advisory locks still held by idle pooled connections", held)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestSecretsAtRest is the attack of a leaked database or backup: every
// row of the schema, as bytes and as PostgreSQL prints it, holds neither
// the pepper nor a signing seed in any encoding. The control (a core
// without a Sealer, as before sealing) shows the scan finds them when they
// are there.
func TestSecretsAtRest(t *testing.T) {
	for _, tc := range []struct {
		name   string
		sealed bool
	}{{"sealed", true}, {"plain, the control", false}} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			schema := freshSchema(t)
			st := openSchema(t, schema, Options{})
			var sealer *tokenstore.Sealer
			if tc.sealed {
				sealer, _ = storetest.NewSealer(t, 1)
			}
			core, err := tokenstore.New(ctx, st, tokenstore.Options{Sealer: sealer})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := core.RotateSigningKey(ctx); err != nil {
				t.Fatal(err)
			}
			needles := storetest.Secrets(t, st, sealer)
			rows, err := admin(t).Query(ctx, "SELECT value, t::text FROM "+pgx.Identifier{schema, "handoff_kv"}.Sanitize()+" t")
			if err != nil {
				t.Fatal(err)
			}
			var dump [][]byte
			for rows.Next() {
				var value []byte
				var text string
				if err := rows.Scan(&value, &text); err != nil {
					t.Fatal(err)
				}
				dump = append(dump, value, []byte(text))
			}
			if err := rows.Err(); err != nil {
				t.Fatal(err)
			}
			found := 0
			for _, n := range needles {
				for _, d := range dump {
					if bytes.Contains(d, n) {
						found++
						break
					}
				}
			}
			switch {
			case tc.sealed && found > 0:
				t.Fatalf("%d of %d forms of the pepper and seeds are in the rows", found, len(needles))
			case !tc.sealed && found == 0:
				t.Fatal("the control found no secret in a plain store's rows: the scan is blind")
			}
		})
	}
}
