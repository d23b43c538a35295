package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// freshSchema creates a schema of its own for one bench run in the
// database of dsn, and returns its name, dsn with that schema as its
// search_path, and a func that drops it with everything in it. Runs then
// start from empty tables and leave nothing behind.
func freshSchema(ctx context.Context, dsn string) (string, string, func(), error) {
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "handoff_bench_" + hex.EncodeToString(b[:])
	ident := pgx.Identifier{name}.Sanitize()
	exec := func(ctx context.Context, sql string) error {
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			return err
		}
		defer conn.Close(ctx)
		_, err = conn.Exec(ctx, sql)
		return err
	}
	if err := exec(ctx, "CREATE SCHEMA "+ident); err != nil {
		return "", "", nil, fmt.Errorf("bench: create schema %s: %w", name, err)
	}
	drop := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = exec(ctx, "DROP SCHEMA IF EXISTS "+ident+" CASCADE")
	}
	return name, withSearchPath(dsn, name), drop, nil
}

// withSearchPath sets search_path in a URL or keyword/value DSN (pgx
// sends unknown parameters to the server as run-time parameters).
func withSearchPath(dsn, schema string) string {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		if u, err := url.Parse(dsn); err == nil {
			q := u.Query()
			q.Set("search_path", schema)
			u.RawQuery = q.Encode()
			return u.String()
		}
	}
	return strings.TrimSpace(dsn) + " search_path=" + schema
}
