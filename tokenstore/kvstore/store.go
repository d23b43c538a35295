package kvstore

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"time"

	"github.com/handoffd/handoff/tokenstore"
)

// Interface guards.
var (
	_ tokenstore.Store  = (*Store)(nil)
	_ tokenstore.MetaTx = metaTx{}
)

// Store is a tokenstore.Store over a Buckets backend: each step is one
// View or Update of the backend. It is safe for concurrent use when the
// backend is.
type Store struct {
	b Buckets
}

// New returns the typed store over b, which must hold layout 2 already (a
// new, empty backend does; Open migrates one of layout 1). The Store owns
// b from then on: its Close closes b.
func New(b Buckets) *Store { return &Store{b: b} }

// Buckets returns the backend under the store.
func (s *Store) Buckets() Buckets { return s.b }

// pinger is a backend with a readiness check of its own.
type pinger interface {
	Ping(ctx context.Context) error
}

// sharer is a backend that several daemons may share.
type sharer interface {
	Shared() bool
}

// Ping asks the backend when it can answer (tokenstore/bolt checks its
// last commit and probes the disk after a failed one); otherwise it runs
// an empty read transaction.
func (s *Store) Ping(ctx context.Context) error {
	if p, ok := s.b.(pinger); ok {
		return p.Ping(ctx)
	}
	return s.b.View(ctx, func(Tx) error { return nil })
}

// Shared reports what the backend says, and false for a backend that says
// nothing (one file, one daemon).
func (s *Store) Shared() bool {
	sh, ok := s.b.(sharer)
	return ok && sh.Shared()
}

// Sweep is the backend's sweep of its expiry index, counting records: a
// layout 1 session's index entries go with it uncounted.
func (s *Store) Sweep(ctx context.Context, now time.Time, limit int) (int, error) {
	return s.b.Sweep(ctx, now, limit, isRecord)
}

// isRecord reports whether a key of bucket is a record of its own, not an
// index entry of one.
func isRecord(bucket string) bool {
	return bucket != v1SessionsByHash && bucket != v1UserSessions
}

// Close closes the backend.
func (s *Store) Close() error { return s.b.Close() }

// Meta runs fn in one Update over the meta bucket.
func (s *Store) Meta(ctx context.Context, fn func(tokenstore.MetaTx) error) error {
	return s.b.Update(ctx, func(tx Tx) error { return fn(metaTx{tx}) })
}

// metaTx is the meta bucket of one transaction.
type metaTx struct{ tx Tx }

// Get returns a copy of the value name, or tokenstore.ErrNotFound.
func (m metaTx) Get(name string) ([]byte, error) {
	v, err := m.tx.Get(bucketMeta, []byte(name))
	if err != nil {
		return nil, err
	}
	return clone(v), nil
}

// Put stores a copy of value under name, without expiry.
func (m metaTx) Put(name string, value []byte) error {
	return m.tx.Put(bucketMeta, []byte(name), clone(value), time.Time{})
}

// key joins parts with a 0 byte, the separator no id contains.
func key(parts ...string) []byte {
	n := len(parts) - 1
	for _, p := range parts {
		n += len(p)
	}
	b := make([]byte, 0, n)
	for i, p := range parts {
		if i > 0 {
			b = append(b, 0)
		}
		b = append(b, p...)
	}
	return b
}

// prefix is key(parts...) followed by the separator.
func prefix(parts ...string) []byte { return append(key(parts...), 0) }

// timeKey is t as 8 big-endian bytes, so keys sort by time.
func timeKey(t time.Time) []byte {
	return binary.BigEndian.AppendUint64(nil, uint64(t.UnixNano()))
}

func clone(b []byte) []byte { return append([]byte(nil), b...) }

func getJSON(tx Tx, bucket string, k []byte, v any) error {
	raw, err := tx.Get(bucket, k)
	if err != nil {
		return err
	}
	return json.Unmarshal(raw, v)
}

func putJSON(tx Tx, bucket string, k []byte, v any, expire time.Time) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return tx.Put(bucket, k, raw, expire)
}

// deletePrefix deletes every key under prefix in bucket and returns them.
func deletePrefix(tx Tx, bucket string, p []byte) ([][]byte, error) {
	var keys [][]byte
	if err := tx.Scan(bucket, p, nil, func(k, _ []byte) bool {
		keys = append(keys, clone(k))
		return true
	}); err != nil {
		return nil, err
	}
	for _, k := range keys {
		if err := tx.Delete(bucket, k); err != nil {
			return nil, err
		}
	}
	return keys, nil
}

// scanJSON decodes every value under prefix p in bucket, in key order.
func scanJSON[T any](tx Tx, bucket string, p []byte) ([]T, error) {
	return scanDecode(tx, bucket, p, func(v []byte) (x T, err error) {
		err = json.Unmarshal(v, &x)
		return x, err
	})
}

// scanDecode decodes every value under prefix p in bucket with decode, in
// key order.
func scanDecode[T any](tx Tx, bucket string, p []byte, decode func([]byte) (T, error)) ([]T, error) {
	out := []T{}
	var derr error
	err := tx.Scan(bucket, p, nil, func(_, v []byte) bool {
		var x T
		if x, derr = decode(v); derr != nil {
			return false
		}
		out = append(out, x)
		return true
	})
	if err != nil {
		return nil, err
	}
	return out, derr
}
