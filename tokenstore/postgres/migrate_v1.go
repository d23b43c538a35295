package postgres

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/handoffd/handoff/tokenstore"
)

// The v1 → v2 data migration. handoff v1 kept every record as a value of
// one table, handoff_kv(bucket, key, value, expire): the token core's
// buckets (the layout tokenstore/kvstore documents), each record JSON of
// the tokenstore model types. migrateV1 converts such a database into the
// typed tables, inside migrate's transaction and under its advisory lock,
// so replicas that start together convert once and a failure leaves the
// database as it was. handoff_kv is then renamed handoff_kv_v1 and kept,
// for an operator to drop once satisfied; a database without v1 data just
// loses the empty table. A database that has neither (converted before)
// costs one catalog lookup.

// v1Page is how many v1 rows are read per round trip.
const v1Page = 5000

// qV1Page reads a page of a bucket in key order, after the key $2.
var qV1Page = "SELECT key, value, expire FROM handoff_kv WHERE bucket = $1 AND key > $2 ORDER BY key LIMIT " + strconv.Itoa(v1Page)

const (
	qV1Exists = "SELECT to_regclass('handoff_kv') IS NOT NULL"
	qV1Empty  = "SELECT NOT EXISTS (SELECT 1 FROM handoff_kv)"
	qV1Keep   = "ALTER TABLE handoff_kv RENAME TO handoff_kv_v1"
	qV1Drop   = "DROP TABLE handoff_kv"
)

// v1Bucket converts the records of one v1 bucket into rows of table: row
// returns a record's values in the order of columns.
//
// The records of a bucket whose rows name a user (owned) are copied into
// a temporary table first and moved from there with one INSERT … SELECT
// that skips a row whose user is gone, which v1 never left behind but
// which would otherwise fail the whole migration on the foreign key.
type v1Bucket struct {
	name, table, columns string
	owned                bool
	row                  func(key, value []byte, expire *time.Time) ([]any, error)
}

// v1Buckets are the buckets that hold records, users first (every other
// record names one). The others are v1's indexes (users_email,
// sessions_hash, ...), which the typed tables' own indexes replace, and
// failures, which v1 no longer wrote.
var v1Buckets = []v1Bucket{
	{"users", "handoff_users", userColumns, false, v1JSON(func(u tokenstore.User) []any {
		u.CreatedAt, u.UpdatedAt, u.AccessedAt = toMicros(u.CreatedAt), toMicros(u.UpdatedAt), toMicros(u.AccessedAt)
		return userArgs(u)
	})},
	{"tokens", "handoff_tokens", tokenColumns, true, v1JSON(func(t tokenstore.Token) []any {
		// v1 sealed a token's IdP tokens for the token, v2 seals them
		// for the session it opens, and the store never holds the key
		// to seal them again: a v1 token still unexchanged keeps its
		// provider and subject but opens a session without them.
		t.ProviderTokens = nil
		t.CreatedAt, t.Expire = toMicros(t.CreatedAt), toMicros(t.Expire)
		return tokenArgs(t)
	})},
	{"sessions", "handoff_sessions", sessionColumns, true, v1JSON(func(s tokenstore.Session) []any {
		s.CreatedAt, s.UpdatedAt, s.Expire = toMicros(s.CreatedAt), toMicros(s.UpdatedAt), toMicros(s.Expire)
		return sessionArgs(s)
	})},
	{"identities", "handoff_identities", identityColumns, true, v1JSON(func(id tokenstore.Identity) []any {
		id.CreatedAt, id.UpdatedAt = toMicros(id.CreatedAt), toMicros(id.UpdatedAt)
		return identityArgs(id)
	})},
	{"keys", "handoff_api_keys", keyCols, false, v1JSON(func(k tokenstore.APIKey) []any {
		return []any{k.ID, k.Name, k.Scopes, nonNil(k.Hash), toMicros(k.CreatedAt), expireArg(toMicros(k.Expire))}
	})},
	// The pepper and the signing keys move as they are (sealed or not),
	// with the markers (sealed, bootstrapped).
	{"meta", "handoff_meta", "name, value", false, func(key, value []byte, _ *time.Time) ([]any, error) {
		return []any{string(key), nonNil(value)}, nil
	}},
	// A plugin value: namespace 0 key, then 8 bytes of expiry (unix
	// nanoseconds, 0 for none) ahead of the value.
	{"kv", "handoff_plugin_kv", "namespace, key, value, expire", false, func(key, value []byte, _ *time.Time) ([]any, error) {
		ns, k, ok := bytes.Cut(key, []byte{0})
		if !ok || len(value) < 8 {
			return nil, errors.New("not a v1 plugin value (namespace, key, expiry header)")
		}
		var expire time.Time
		if n := binary.BigEndian.Uint64(value); n != 0 {
			expire = toMicros(time.Unix(0, int64(n)))
		}
		return []any{string(ns), string(k), nonNil(value[8:]), expireArg(expire)}, nil
	}},
	// A limit counter: the window's start (unix nanoseconds) and the
	// count, 8 bytes each; the row's expire is the window's end.
	{"limits", "handoff_limits", "key, window_start, count, expire", false, func(key, value []byte, expire *time.Time) ([]any, error) {
		if len(value) != 16 || expire == nil {
			return nil, nil // no counter v1 wrote: it would have started again
		}
		start := time.Unix(0, int64(binary.BigEndian.Uint64(value)))
		count := min(binary.BigEndian.Uint64(value[8:]), math.MaxInt32)
		return []any{string(key), toMicros(start), int32(count), *expire}, nil
	}},
}

// v1JSON converts a bucket whose values are JSON of T.
func v1JSON[T any](row func(T) []any) func([]byte, []byte, *time.Time) ([]any, error) {
	return func(_, value []byte, _ *time.Time) ([]any, error) {
		var rec T
		if err := json.Unmarshal(value, &rec); err != nil {
			return nil, err
		}
		return row(rec), nil
	}
}

// toMicros is t in UTC at PostgreSQL's precision, as the core makes its
// times.
func toMicros(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return t.UTC().Truncate(time.Microsecond)
}

// migrateV1 converts the v1 data of handoff_kv, if there is such a table,
// within tx (see the top of this file), and logs how many records of each
// bucket it stored.
func migrateV1(ctx context.Context, tx pgx.Tx, log *slog.Logger) error {
	var exists, empty bool
	if err := tx.QueryRow(ctx, qV1Exists).Scan(&exists); err != nil || !exists {
		return err
	}
	if err := tx.QueryRow(ctx, qV1Empty).Scan(&empty); err != nil {
		return err
	}
	if empty {
		_, err := tx.Exec(ctx, qV1Drop)
		return err
	}
	start := time.Now()
	counts := make([]any, 0, 2*len(v1Buckets)+2)
	skipped := int64(0)
	for _, bk := range v1Buckets {
		stored, orphans, err := convertV1Bucket(ctx, tx, bk)
		if err != nil {
			return fmt.Errorf("v1 bucket %s: %w", bk.name, err)
		}
		counts = append(counts, bk.name, stored)
		skipped += orphans
	}
	if _, err := tx.Exec(ctx, qV1Keep); err != nil {
		return err
	}
	log.Info("postgres v1 data converted into the v2 tables; handoff_kv kept as handoff_kv_v1",
		append(counts, "skipped_without_user", skipped, "took", time.Since(start).Round(time.Millisecond))...)
	return nil
}

// convertV1Bucket copies one bucket's records into its table (through a
// temporary one when owned), a page at a time, and reports how many it
// stored and how many it skipped for want of their user.
func convertV1Bucket(ctx context.Context, tx pgx.Tx, bk v1Bucket) (stored, orphans int64, err error) {
	into := bk.table
	if bk.owned {
		into = "handoff_v1_" + bk.name
		if _, err := tx.Exec(ctx, "CREATE TEMP TABLE "+into+" (LIKE "+bk.table+") ON COMMIT DROP"); err != nil {
			return 0, 0, err
		}
	}
	columns := strings.Split(bk.columns, ", ")
	var copied int64
	read := 0
	after := []byte{}
	for {
		rows, err := tx.Query(ctx, qV1Page, bk.name, after)
		if err != nil {
			return 0, 0, err
		}
		var (
			out  [][]any
			last []byte
		)
		n := 0
		for rows.Next() {
			var (
				key, value []byte
				expire     *time.Time
			)
			if err := rows.Scan(&key, &value, &expire); err != nil {
				rows.Close()
				return 0, 0, err
			}
			n++
			last = key
			row, err := bk.row(key, value, expire)
			if err != nil {
				rows.Close()
				// The record is named by its place, not its key: a
				// key may hold a plugin's secret, and no log should.
				return 0, 0, fmt.Errorf("record %d in key order: %w", read+n, err)
			}
			if row != nil {
				out = append(out, row)
			}
		}
		if err := rows.Err(); err != nil {
			return 0, 0, err
		}
		read += n
		if len(out) > 0 {
			c, err := tx.CopyFrom(ctx, pgx.Identifier{into}, columns, pgx.CopyFromRows(out))
			if err != nil {
				return 0, 0, err
			}
			copied += c
		}
		if n < v1Page {
			break
		}
		after = last
	}
	if !bk.owned {
		return copied, 0, nil
	}
	tag, err := tx.Exec(ctx, "INSERT INTO "+bk.table+" SELECT * FROM "+into+
		" s WHERE EXISTS (SELECT 1 FROM handoff_users u WHERE u.id = s.user_id)")
	if err != nil {
		return 0, 0, err
	}
	return tag.RowsAffected(), copied - tag.RowsAffected(), nil
}
