package postgres

import (
	"bytes"
	"context"
	"hash/fnv"
	"maps"

	"github.com/jackc/pgx/v5"

	"github.com/handoffd/handoff/tokenstore"
)

const (
	// qMetaLock serialises Meta steps across replicas until the step
	// commits: of several daemons starting at once on an empty database,
	// the first creates the pepper and the others wait, then read it.
	// Row locks could not do this, since the row to lock does not exist
	// yet.
	qMetaLock = "SELECT pg_advisory_xact_lock($1)"
	qMetaAll  = "SELECT name, value FROM handoff_meta"
	qMetaPut  = "INSERT INTO handoff_meta (name, value) VALUES ($1, $2) " +
		"ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value"
)

// metaLockKey is the advisory lock of Meta. It is per database; two
// schemas in one database share it, which costs nothing but a wait.
var metaLockKey = func() int64 {
	h := fnv.New64a()
	h.Write([]byte("handoff/meta"))
	return int64(h.Sum64())
}()

// Meta implements tokenstore.Store, in two round trips: BEGIN, the
// advisory lock and every named value (they are few: a pepper, the
// signing keys, markers); fn runs on them; the values it changed travel
// with the COMMIT.
func (s *Store) Meta(ctx context.Context, fn func(tokenstore.MetaTx) error) error {
	return s.write(ctx, "meta", func(t *txn) error {
		m := &metaTx{values: map[string][]byte{}}
		t.queue(qMetaLock, metaLockKey)
		t.queue(qMetaAll).Query(func(rows pgx.Rows) error {
			for rows.Next() {
				var (
					name  string
					value []byte
				)
				if err := rows.Scan(&name, &value); err != nil {
					return err
				}
				m.values[name] = value
			}
			return rows.Err()
		})
		if err := t.send(); err != nil {
			return err
		}
		read := maps.Clone(m.values)
		if err := fn(m); err != nil {
			return err
		}
		for name, v := range m.values {
			if old, ok := read[name]; !ok || !bytes.Equal(old, v) {
				t.queue(qMetaPut, name, v)
			}
		}
		return nil
	})
}

// metaTx is the core's named values inside Meta, read whole at its
// start; Put changes them here and Meta writes them at its end.
type metaTx struct {
	values map[string][]byte
}

// Get implements tokenstore.MetaTx.
func (m *metaTx) Get(name string) ([]byte, error) {
	v, ok := m.values[name]
	if !ok {
		return nil, tokenstore.ErrNotFound
	}
	return bytes.Clone(v), nil
}

// Put implements tokenstore.MetaTx.
func (m *metaTx) Put(name string, value []byte) error {
	m.values[name] = append([]byte{}, value...)
	return nil
}
