package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// TempSchema creates a schema of its own, named prefix and 12 random hex
// characters, in the database of dsn, for a test or a benchmark that
// wants empty tables and must leave nothing behind. It returns the
// schema's name, dsn with that schema as its search_path (what a daemon's
// store.dsn takes), and a func that drops the schema with everything in
// it.
func TempSchema(ctx context.Context, dsn, prefix string) (schema, schemaDSN string, drop func() error, err error) {
	var b [6]byte
	_, _ = rand.Read(b[:])
	schema = prefix + hex.EncodeToString(b[:])
	ident := pgx.Identifier{schema}.Sanitize()
	if err := execOnce(ctx, dsn, "CREATE SCHEMA "+ident); err != nil {
		return "", "", nil, fmt.Errorf("postgres: create schema %s: %w", schema, scrubErr(err, dsn))
	}
	drop = func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := execOnce(ctx, dsn, "DROP SCHEMA IF EXISTS "+ident+" CASCADE"); err != nil {
			return fmt.Errorf("postgres: drop schema %s: %w", schema, scrubErr(err, dsn))
		}
		return nil
	}
	return schema, WithSearchPath(dsn, schema), drop, nil
}

// WithSearchPath returns dsn with its search_path set to schema, in a URL
// or a keyword/value DSN (pgx sends parameters it does not know to the
// server as run-time parameters).
func WithSearchPath(dsn, schema string) string {
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

// execOnce runs one statement on a connection of its own.
func execOnce(ctx context.Context, dsn, sql string) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, sql)
	return err
}

// scrubErr keeps dsn's password out of err's message.
func scrubErr(err error, dsn string) error {
	if p := passwordOf(dsn); p != "" && strings.Contains(err.Error(), p) {
		return errors.New(scrub(err.Error(), p))
	}
	return err
}
