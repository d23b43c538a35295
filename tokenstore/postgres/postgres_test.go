package postgres

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
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

// newUser is a user for the tests that need one.
func newUser(id string) tokenstore.User {
	now := time.Now().UTC().Truncate(time.Microsecond)
	return tokenstore.User{ID: id, Name: id, Status: true, CreatedAt: now, UpdatedAt: now}
}

func TestMigrationsIdempotent(t *testing.T) {
	schema := freshSchema(t)
	first := openSchema(t, schema, Options{})
	u := newUser("m")
	if err := first.CreateUser(context.Background(), u); err != nil {
		t.Fatal(err)
	}
	_ = first.Close()
	second := openSchema(t, schema, Options{})
	if got, err := second.User(context.Background(), u.ID); err != nil || got.ID != u.ID {
		t.Fatalf("data after a second Open: %+v, %v", got, err)
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
	if err := stores[0].CreateUser(context.Background(), newUser("r")); err != nil {
		t.Fatal(err)
	}
	if _, err := stores[n-1].User(context.Background(), "r"); err != nil {
		t.Fatalf("stores do not share the schema: %v", err)
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
	if err := s.CreateUser(ctx, newUser("l")); err != nil {
		t.Fatal(err)
	}
	conn := admin(t)
	for round := range 3 {
		var killed int
		if err := conn.QueryRow(ctx, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1", app).Scan(&killed); err != nil {
			t.Fatal(err)
		}
		if killed == 0 {
			t.Fatalf("round %d: no connection to kill", round)
		}
		// Steps run again on a fresh connection: the store recovers
		// without help.
		if _, err := s.UpdateUser(ctx, "l", func(u *tokenstore.User) error {
			u.Name = strconv.Itoa(round)
			return nil
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
	if err := s.CreateUser(ctx, newUser("c")); !errors.Is(err, tokenstore.ErrClosed) {
		t.Errorf("CreateUser after Close = %v", err)
	}
	if _, _, err := s.SessionByHash(ctx, "u", []byte("h")); !errors.Is(err, tokenstore.ErrClosed) {
		t.Errorf("SessionByHash after Close = %v", err)
	}
	if err := s.Ping(ctx); !errors.Is(err, tokenstore.ErrClosed) {
		t.Errorf("Ping after Close = %v", err)
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
			// Every row as stored (Dump), and as PostgreSQL prints it.
			recs, err := st.Dump(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var dump [][]byte
			for _, r := range recs {
				dump = append(dump, r.Key, r.Value)
			}
			for _, tb := range dumpTables {
				rows, err := admin(t).Query(ctx, "SELECT t::text FROM "+pgx.Identifier{schema, tb.table}.Sanitize()+" t")
				if err != nil {
					t.Fatal(err)
				}
				for rows.Next() {
					var text string
					if err := rows.Scan(&text); err != nil {
						t.Fatal(err)
					}
					dump = append(dump, []byte(text))
				}
				if err := rows.Err(); err != nil {
					t.Fatal(err)
				}
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
