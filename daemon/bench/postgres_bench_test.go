package bench

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/handoffd/handoff/tokenstore"
	"github.com/handoffd/handoff/tokenstore/postgres"
)

// The core's hot paths on the PostgreSQL store, without HTTP, each in a
// schema of its own that is dropped afterwards:
//
//	HANDOFF_TEST_POSTGRES_DSN='postgres://postgres@127.0.0.1:5432/test?sslmode=disable' \
//	  go test ./daemon/bench -run '^$' -bench Postgres
//
// The pool has 32 connections (store.max_conns defaults to 16).

// postgresCore opens the core on a fresh schema. The start func it
// returns marks the end of the setup: from there to the end of the
// benchmark, the store's round trips and serialization retries per op are
// reported.
func postgresCore(b *testing.B) (*tokenstore.Core, func()) {
	b.Helper()
	dsn := os.Getenv("HANDOFF_TEST_POSTGRES_DSN")
	if dsn == "" {
		b.Skip("set HANDOFF_TEST_POSTGRES_DSN (e.g. postgres://postgres@127.0.0.1:5432/test?sslmode=disable) to benchmark the PostgreSQL store")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	schema, _, drop, err := freshSchema(ctx, dsn)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(drop)
	st, err := postgres.Open(ctx, postgres.Options{DSN: dsn, Schema: schema, MaxConns: 32})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	var before postgres.Stats
	b.Cleanup(func() {
		after := st.Stats()
		b.ReportMetric(float64(after.RoundTrips-before.RoundTrips)/float64(b.N), "roundtrips/op")
		b.ReportMetric(float64(after.Retries-before.Retries)/float64(b.N), "retries/op")
		b.ReportMetric(float64(after.Grouped-before.Grouped)/float64(b.N), "grouped/op")
	})
	core, err := tokenstore.New(ctx, st, tokenstore.Options{})
	if err != nil {
		b.Fatal(err)
	}
	return core, func() { before = st.Stats() }
}

func BenchmarkPostgresMint(b *testing.B) {
	core, start := postgresCore(b)
	benchMint(b, core, start)
}

func BenchmarkPostgresExchange(b *testing.B) {
	core, start := postgresCore(b)
	benchExchange(b, core, start)
}

func BenchmarkPostgresAuthenticate(b *testing.B) {
	core, start := postgresCore(b)
	benchAuthenticate(b, core, start)
}
