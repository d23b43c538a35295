package postgres

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/handoffd/handoff/tokenstore"
)

// The plugins' values (handoff_plugin_kv). A value is live while its
// expire is NULL or not before the step's now ($3 below); an expired row
// is absent to every read until Sweep removes it.
const (
	qKVGet = "SELECT value FROM handoff_plugin_kv WHERE namespace = $1 AND key = $2 " +
		"AND (expire IS NULL OR expire >= $3)"
	qKVPut = "INSERT INTO handoff_plugin_kv (namespace, key, value, expire) VALUES ($1, $2, $3, $4) " +
		"ON CONFLICT (namespace, key) DO UPDATE SET value = EXCLUDED.value, expire = EXCLUDED.expire"
	qKVDelete = "DELETE FROM handoff_plugin_kv WHERE namespace = $1 AND key = $2"

	// qKVList reads a page in key order from the primary key, live
	// values only, from the lower bound $2 (see kvListSQL) and below the
	// first key past the prefix ($5) when there is one: the range is a
	// condition of the index scan, so a page costs the keys it returns.
	qKVList = "SELECT key, value FROM handoff_plugin_kv WHERE namespace = $1 AND key %s $2%s " +
		"AND (expire IS NULL OR expire >= $3) ORDER BY key LIMIT $4"

	// qKVLock takes the row of a key for KVUpdate, creating it when it is
	// absent, in one statement: ON CONFLICT DO UPDATE either inserts or
	// locks the existing row, so two updates of an absent key queue on
	// that row like any other. A created row holds nothing and has
	// already expired (-infinity), so it reads as absent; the same step
	// then writes or deletes it before it commits.
	qKVLock = "INSERT INTO handoff_plugin_kv (namespace, key, value, expire) VALUES ($1, $2, '', '-infinity') " +
		"ON CONFLICT (namespace, key) DO UPDATE SET value = handoff_plugin_kv.value " +
		"RETURNING value, expire IS NULL OR expire >= $3"
	qKVSet = "UPDATE handoff_plugin_kv SET value = $3, expire = $4 WHERE namespace = $1 AND key = $2"

	// qKVAdd is KVAdd in one statement under the row's lock. An absent or
	// expired value counts from 0; a live one must be a counter
	// (CounterSize bytes), else the WHERE leaves the row untouched and
	// nothing is returned; a sum past int64 fails the statement (22003).
	// int8send writes a bigint as 8 big-endian bytes; the bit(64) cast
	// reads them back.
	qKVAdd = "INSERT INTO handoff_plugin_kv AS kv (namespace, key, value, expire) VALUES ($1, $2, int8send($3::bigint), $5) " +
		"ON CONFLICT (namespace, key) DO UPDATE SET value = int8send(CASE WHEN kv.expire < $4 THEN 0 " +
		"ELSE ('x' || encode(kv.value, 'hex'))::bit(64)::bigint END + $3::bigint), expire = EXCLUDED.expire " +
		"WHERE kv.expire < $4 OR length(kv.value) = 8 " +
		"RETURNING value"
)

// codeOutOfRange is numeric_value_out_of_range: a bigint sum that overflows.
const codeOutOfRange = "22003"

// KVGet implements tokenstore.KVStore.
func (s *Store) KVGet(ctx context.Context, ns, key string, now time.Time) ([]byte, error) {
	var v []byte
	found := false
	err := s.read(ctx, "kv get", func(t *txn) error {
		found = false
		t.queue(qKVGet, ns, key, sqlNow(now)).QueryRow(func(row pgx.Row) error {
			err := row.Scan(&v)
			found = err == nil
			if errors.Is(err, pgx.ErrNoRows) {
				return nil
			}
			return err
		})
		return t.send()
	})
	switch {
	case err != nil:
		return nil, err
	case !found:
		return nil, tokenstore.ErrNotFound
	}
	return nonNil(v), nil
}

// KVPut implements tokenstore.KVStore.
func (s *Store) KVPut(ctx context.Context, ns, key string, value []byte, expire time.Time) error {
	return s.write(ctx, "kv put", func(t *txn) error {
		t.queue(qKVPut, ns, key, nonNil(value), expireArg(expire))
		return nil
	})
}

// KVDelete implements tokenstore.KVStore.
func (s *Store) KVDelete(ctx context.Context, ns, key string) error {
	return s.write(ctx, "kv delete", func(t *txn) error {
		t.queue(qKVDelete, ns, key)
		return nil
	})
}

// KVList implements tokenstore.KVStore. A limit of 0 or less lists every
// live entry.
func (s *Store) KVList(ctx context.Context, ns, prefix, after string, limit int, now time.Time) ([]tokenstore.KVEntry, error) {
	var lim any
	if limit > 0 {
		lim = limit
	}
	// The range starts at the prefix, or just after the key after when
	// that is further on; it ends before the first key past the prefix.
	from, op := prefix, ">="
	if after != "" && after >= prefix {
		from, op = after, ">"
	}
	args, upper := []any{ns, from, sqlNow(now), lim}, ""
	if end, ok := textPrefixEnd(prefix); ok {
		args, upper = append(args, end), " AND key < $5"
	}
	sql := fmt.Sprintf(qKVList, op, upper)
	var out []tokenstore.KVEntry
	err := s.read(ctx, "kv list", func(t *txn) error {
		out = []tokenstore.KVEntry{}
		t.queue(sql, args...).Query(func(rows pgx.Rows) error {
			for rows.Next() {
				var e tokenstore.KVEntry
				if err := rows.Scan(&e.Key, &e.Value); err != nil {
					return err
				}
				e.Value = nonNil(e.Value)
				out = append(out, e)
			}
			return rows.Err()
		})
		return t.send()
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// KVUpdate implements tokenstore.KVStore in two round trips: BEGIN with
// the row locked (qKVLock), then, once change has decided, the write and
// COMMIT.
func (s *Store) KVUpdate(ctx context.Context, ns, key string, now, expire time.Time, change func(old []byte) ([]byte, error)) error {
	return s.write(ctx, "kv update", func(t *txn) error {
		var (
			raw  []byte
			live bool
		)
		t.queue(qKVLock, ns, key, sqlNow(now)).QueryRow(func(row pgx.Row) error { return row.Scan(&raw, &live) })
		if err := t.send(); err != nil {
			return err
		}
		var old []byte
		if live {
			old = nonNil(raw)
		}
		v, err := change(old)
		if err != nil {
			return err
		}
		if v == nil {
			t.queue(qKVDelete, ns, key)
		} else {
			t.queue(qKVSet, ns, key, v, expireArg(expire))
		}
		return nil
	})
}

// KVAdd implements tokenstore.KVStore in one statement (qKVAdd).
func (s *Store) KVAdd(ctx context.Context, ns, key string, delta int64, now, expire time.Time) (int64, error) {
	var (
		raw   []byte
		added bool
	)
	err := s.write(ctx, "kv add", func(t *txn) error {
		added = false
		t.queue(qKVAdd, ns, key, delta, sqlNow(now), expireArg(expire)).QueryRow(func(row pgx.Row) error {
			err := row.Scan(&raw)
			added = err == nil
			var pgErr *pgconn.PgError
			switch {
			case errors.Is(err, pgx.ErrNoRows):
				return nil
			case errors.As(err, &pgErr) && pgErr.Code == codeOutOfRange:
				// The statement failed, so nothing changed; the
				// PostgreSQL error stays in the chain, which tells the
				// step runner the server refused it.
				return fmt.Errorf("postgres: kv counter %q overflows: %w (%w)", key, tokenstore.ErrInvalidArgument, err)
			}
			return err
		})
		return nil
	})
	switch {
	case err != nil:
		return 0, err
	case !added || len(raw) != tokenstore.CounterSize:
		return 0, fmt.Errorf("postgres: kv: the value under %q is not a counter: %w", key, tokenstore.ErrInvalidArgument)
	}
	return int64(binary.BigEndian.Uint64(raw)), nil
}

// textPrefixEnd returns the smallest string above every string that
// starts with p, for an index range: p with its last code point raised by
// one (UTF-8 sorts bytewise as code points do, and the column is COLLATE
// "C"), past the surrogates, dropping trailing code points already at the
// maximum. ok is false when there is no such string (p empty, or all of
// it U+10FFFF).
func textPrefixEnd(p string) (string, bool) {
	rs := []rune(p)
	for i := len(rs) - 1; i >= 0; i-- {
		r := rs[i] + 1
		if r == 0xD800 {
			r = 0xE000
		}
		if r <= utf8.MaxRune {
			rs[i] = r
			return string(rs[:i+1]), true
		}
	}
	return "", false
}

// expireArg is a zero time as SQL NULL (no expiry).
func expireArg(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t
}

// nonNil maps nil to an empty slice: pgx sends a nil []byte as NULL.
func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}
