package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/handoffd/handoff/tokenstore"
)

// metaBootstrapped is the handoff_meta row that marks a database whose
// first API key was made (CreateKey with first), whether or not that key
// is still held. Its value is the key's id, as v1 wrote it.
const metaBootstrapped = "bootstrapped"

// The API keys (handoff_api_keys).
const (
	keyCols    = "id, name, scopes, hash, created_at, expire"
	qKeyInsert = "INSERT INTO handoff_api_keys (" + keyCols + ") VALUES ($1, $2, $3, $4, $5, $6)"
	// qKeyFirst stores the first key in one statement: the marker goes in
	// only when no key is held, and the key only with the marker. Of
	// several daemons that start together on an empty database, one
	// inserts the marker; the others wait on its unique index entry and
	// then find it there (DO NOTHING), so they store no key.
	qKeyFirst = "WITH mark AS (INSERT INTO handoff_meta (name, value) " +
		"SELECT '" + metaBootstrapped + "', convert_to($1, 'UTF8') WHERE NOT EXISTS (SELECT 1 FROM handoff_api_keys) " +
		"ON CONFLICT (name) DO NOTHING RETURNING 1) " +
		"INSERT INTO handoff_api_keys (" + keyCols + ") SELECT $1, $2, $3, $4, $5, $6 FROM mark"
	qKeyByHash = "SELECT " + keyCols + " FROM handoff_api_keys WHERE hash = $1"
	qKeys      = "SELECT " + keyCols + " FROM handoff_api_keys ORDER BY id"
	// qKeyDelete deletes the key and, with $2, the first-key marker with
	// it (only when the key was there to delete).
	qKeyDelete = "WITH k AS (DELETE FROM handoff_api_keys WHERE id = $1 RETURNING id), " +
		"m AS (DELETE FROM handoff_meta WHERE name = '" + metaBootstrapped + "' AND $2 AND EXISTS (SELECT 1 FROM k)) " +
		"SELECT count(*) FROM k"
)

// CreateKey implements tokenstore.Store. An id or hash already held gives
// ErrExists.
func (s *Store) CreateKey(ctx context.Context, k tokenstore.APIKey, first bool) (bool, error) {
	sql := qKeyInsert
	if first {
		sql = qKeyFirst
	}
	var stored bool
	err := s.write(ctx, "create key", func(t *txn) error {
		stored = false
		t.queue(sql, k.ID, k.Name, k.Scopes, nonNil(k.Hash), k.CreatedAt, expireArg(k.Expire)).Exec(func(tag pgconn.CommandTag) error {
			stored = tag.RowsAffected() == 1
			return nil
		})
		return nil
	})
	if violates(err, "") {
		return false, fmt.Errorf("postgres: create key: %w", tokenstore.ErrExists)
	}
	return stored, err
}

// KeyByHash implements tokenstore.Store.
func (s *Store) KeyByHash(ctx context.Context, hash []byte) (tokenstore.APIKey, error) {
	var (
		k     tokenstore.APIKey
		found bool
	)
	err := s.read(ctx, "key by hash", func(t *txn) error {
		t.queue(qKeyByHash, nonNil(hash)).QueryRow(func(row pgx.Row) error {
			var err error
			k, err = scanKey(row)
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
		return tokenstore.APIKey{}, err
	case !found:
		return tokenstore.APIKey{}, tokenstore.ErrKeyInvalid
	}
	return k, nil
}

// Keys implements tokenstore.Store.
func (s *Store) Keys(ctx context.Context) ([]tokenstore.APIKey, error) {
	var out []tokenstore.APIKey
	err := s.read(ctx, "keys", func(t *txn) error {
		out = []tokenstore.APIKey{}
		t.queue(qKeys).Query(func(rows pgx.Rows) error {
			for rows.Next() {
				k, err := scanKey(rows)
				if err != nil {
					return err
				}
				out = append(out, k)
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

// DeleteKey implements tokenstore.Store.
func (s *Store) DeleteKey(ctx context.Context, id string, first bool) error {
	var n int
	err := s.write(ctx, "delete key", func(t *txn) error {
		t.queue(qKeyDelete, id, first).QueryRow(func(row pgx.Row) error { return row.Scan(&n) })
		return nil
	})
	switch {
	case err != nil:
		return err
	case n == 0:
		return tokenstore.ErrNotFound
	}
	return nil
}

// scanKey reads the columns keyCols names.
func scanKey(row pgx.Row) (tokenstore.APIKey, error) {
	var (
		k      tokenstore.APIKey
		expire *time.Time
	)
	if err := row.Scan(&k.ID, &k.Name, &k.Scopes, &k.Hash, &k.CreatedAt, &expire); err != nil {
		return tokenstore.APIKey{}, err
	}
	if expire != nil {
		k.Expire = *expire
	}
	return k, nil
}
