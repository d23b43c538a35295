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

// v1Page is how many v1 rows are read, and inserted, per round trip.
const v1Page = 1000

// qV1Page reads a page of a bucket in key order, after the key $2.
var qV1Page = "SELECT key, value, expire FROM handoff_kv WHERE bucket = $1 AND key > $2 ORDER BY key LIMIT " + strconv.Itoa(v1Page)

const (
	qV1Exists = "SELECT to_regclass('handoff_kv') IS NOT NULL"
	qV1Empty  = "SELECT NOT EXISTS (SELECT 1 FROM handoff_kv)"
	qV1Keep   = "ALTER TABLE handoff_kv RENAME TO handoff_kv_v1"
	qV1Drop   = "DROP TABLE handoff_kv"
	// qV1Identity links a v1 identity; one whose user is gone (which v1
	// never left behind) is skipped rather than failing the migration,
	// as the token and session INSERTs skip theirs.
	qV1Identity = "INSERT INTO handoff_identities (" + identityColumns + ") " +
		"SELECT $1::text, $2::text, $3::text, $4::text, $5::boolean, $6::text, $7::text, $8::jsonb, $9::timestamptz, $10::timestamptz " +
		"WHERE EXISTS (SELECT 1 FROM handoff_users WHERE id = $3)"
	qV1Meta  = "INSERT INTO handoff_meta (name, value) VALUES ($1, $2)"
	qV1Limit = "INSERT INTO handoff_limits (key, window_start, count, expire) VALUES ($1, $2, $3, $4)"
)

// v1Bucket converts the records of one v1 bucket: convert queues the
// INSERT of one row on b, or nothing for a row it skips.
type v1Bucket struct {
	name    string
	convert func(b *pgx.Batch, key, value []byte, expire *time.Time) error
}

// v1Buckets are the buckets that hold records, users first (every other
// record names one). The others are v1's indexes (users_email,
// sessions_hash, ...), which the typed tables' own indexes replace, and
// failures, which v1 no longer wrote.
var v1Buckets = []v1Bucket{
	{"users", v1JSON(func(b *pgx.Batch, u tokenstore.User) {
		u.CreatedAt, u.UpdatedAt, u.AccessedAt = toMicros(u.CreatedAt), toMicros(u.UpdatedAt), toMicros(u.AccessedAt)
		b.Queue(qUserInsert, userArgs(u)...)
	})},
	{"tokens", v1JSON(func(b *pgx.Batch, t tokenstore.Token) {
		// v1 sealed a token's IdP tokens for the token, v2 seals them
		// for the session it opens, and the store never holds the key
		// to seal them again: a v1 token still unexchanged keeps its
		// provider and subject but opens a session without them.
		t.ProviderTokens = nil
		t.CreatedAt, t.Expire = toMicros(t.CreatedAt), toMicros(t.Expire)
		b.Queue(qTokenInsert, tokenArgs(t)...)
	})},
	{"sessions", v1JSON(func(b *pgx.Batch, s tokenstore.Session) {
		s.CreatedAt, s.UpdatedAt, s.Expire = toMicros(s.CreatedAt), toMicros(s.UpdatedAt), toMicros(s.Expire)
		b.Queue(qSessionInsert, sessionArgs(s)...)
	})},
	{"identities", v1JSON(func(b *pgx.Batch, id tokenstore.Identity) {
		id.CreatedAt, id.UpdatedAt = toMicros(id.CreatedAt), toMicros(id.UpdatedAt)
		b.Queue(qV1Identity, identityArgs(id)...)
	})},
	{"keys", v1JSON(func(b *pgx.Batch, k tokenstore.APIKey) {
		k.CreatedAt, k.Expire = toMicros(k.CreatedAt), toMicros(k.Expire)
		b.Queue(qKeyInsert, k.ID, k.Name, k.Scopes, nonNil(k.Hash), k.CreatedAt, expireArg(k.Expire))
	})},
	// The pepper and the signing keys move as they are (sealed or not),
	// with the markers (sealed, bootstrapped).
	{"meta", func(b *pgx.Batch, key, value []byte, _ *time.Time) error {
		b.Queue(qV1Meta, string(key), nonNil(value))
		return nil
	}},
	// A plugin value: namespace 0 key, then 8 bytes of expiry (unix
	// nanoseconds, 0 for none) ahead of the value.
	{"kv", func(b *pgx.Batch, key, value []byte, _ *time.Time) error {
		ns, k, ok := bytes.Cut(key, []byte{0})
		if !ok || len(value) < 8 {
			return errors.New("not a v1 plugin value (namespace, key, expiry header)")
		}
		var expire time.Time
		if n := binary.BigEndian.Uint64(value); n != 0 {
			expire = toMicros(time.Unix(0, int64(n)))
		}
		b.Queue(qKVPut, string(ns), string(k), nonNil(value[8:]), expireArg(expire))
		return nil
	}},
	// A limit counter: the window's start (unix nanoseconds) and the
	// count, 8 bytes each; the row's expire is the window's end.
	{"limits", func(b *pgx.Batch, key, value []byte, expire *time.Time) error {
		if len(value) != 16 || expire == nil {
			return nil // no counter v1 wrote: it would have started again
		}
		start := time.Unix(0, int64(binary.BigEndian.Uint64(value)))
		count := min(binary.BigEndian.Uint64(value[8:]), math.MaxInt32)
		b.Queue(qV1Limit, string(key), toMicros(start), int32(count), *expire)
		return nil
	}},
}

// v1JSON converts a bucket whose values are JSON of T.
func v1JSON[T any](insert func(*pgx.Batch, T)) func(*pgx.Batch, []byte, []byte, *time.Time) error {
	return func(b *pgx.Batch, key, value []byte, _ *time.Time) error {
		var rec T
		if err := json.Unmarshal(value, &rec); err != nil {
			return err
		}
		insert(b, rec)
		return nil
	}
}

// toMicros is t in UTC at PostgreSQL's precision, as the core makes its times.
func toMicros(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return t.UTC().Truncate(time.Microsecond)
}

// migrateV1 converts the v1 data of handoff_kv, if there is such a table,
// within tx (see the top of this file), and logs how many records of each
// bucket it read.
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
	counts := make([]any, 0, 2*len(v1Buckets))
	for _, bk := range v1Buckets {
		n, err := convertV1Bucket(ctx, tx, bk)
		if err != nil {
			return fmt.Errorf("v1 bucket %s: %w", bk.name, err)
		}
		counts = append(counts, bk.name, n)
	}
	if _, err := tx.Exec(ctx, qV1Keep); err != nil {
		return err
	}
	log.Info("postgres v1 data converted into the v2 tables; handoff_kv kept as handoff_kv_v1",
		append(counts, "took", time.Since(start).Round(time.Millisecond))...)
	return nil
}

// convertV1Bucket converts one bucket a page at a time: a page read, then
// its INSERTs in one batch.
func convertV1Bucket(ctx context.Context, tx pgx.Tx, bk v1Bucket) (int, error) {
	type row struct {
		key, value []byte
		expire     *time.Time
	}
	total, read := 0, 0
	after := []byte{}
	for {
		rows, err := tx.Query(ctx, qV1Page, bk.name, after)
		if err != nil {
			return total, err
		}
		page, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (row, error) {
			var x row
			err := r.Scan(&x.key, &x.value, &x.expire)
			return x, err
		})
		if err != nil {
			return total, err
		}
		b := &pgx.Batch{}
		for i, r := range page {
			// The error names the record by its place, not its key: a
			// key may hold a plugin's secret, and no log should.
			if err := bk.convert(b, r.key, r.value, r.expire); err != nil {
				return total, fmt.Errorf("record %d in key order: %w", read+i+1, err)
			}
		}
		read += len(page)
		if b.Len() > 0 {
			if err := tx.SendBatch(ctx, b).Close(); err != nil {
				return total, err
			}
		}
		total += b.Len()
		if len(page) < v1Page {
			return total, nil
		}
		after = page[len(page)-1].key
	}
}
