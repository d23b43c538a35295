package kvstore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/handoffd/handoff/tokenstore"
)

// kvHeader is the size of the expiry in front of a plugin value.
const kvHeader = 8

// Plugin values are kept as 8 bytes of expiry (unix nanoseconds, 0 =
// never) then the value, so reads can hide expired entries before the
// sweep gets them.
func encodeKV(value []byte, expire time.Time) []byte {
	var ns uint64
	if !expire.IsZero() {
		ns = uint64(expire.UnixNano())
	}
	return append(binary.BigEndian.AppendUint64(make([]byte, 0, kvHeader+len(value)), ns), value...)
}

// decodeKV returns the value raw holds and whether it is live at now.
func decodeKV(raw []byte, now time.Time) ([]byte, bool) {
	if len(raw) < kvHeader {
		return nil, false
	}
	if ns := binary.BigEndian.Uint64(raw); ns != 0 && now.UnixNano() > int64(ns) {
		return nil, false
	}
	return raw[kvHeader:], true
}

// liveKV reads the live value of ns/k (nil, false when absent or
// expired).
func liveKV(tx Tx, ns, k string, now time.Time) ([]byte, bool, error) {
	raw, err := tx.Get(bucketKV, key(ns, k))
	switch {
	case errors.Is(err, tokenstore.ErrNotFound):
		return nil, false, nil
	case err != nil:
		return nil, false, err
	}
	v, ok := decodeKV(raw, now)
	if !ok {
		return nil, false, nil
	}
	return clone(v), true, nil
}

// KVGet returns the live value of ns/k.
func (s *Store) KVGet(ctx context.Context, ns, k string, now time.Time) ([]byte, error) {
	var (
		out []byte
		ok  bool
	)
	err := s.b.View(ctx, func(tx Tx) (err error) {
		out, ok, err = liveKV(tx, ns, k, now)
		return err
	})
	switch {
	case err != nil:
		return nil, err
	case !ok:
		return nil, tokenstore.ErrNotFound
	}
	return out, nil
}

// KVPut stores value under ns/k.
func (s *Store) KVPut(ctx context.Context, ns, k string, value []byte, expire time.Time) error {
	raw := encodeKV(value, expire)
	return s.b.Update(ctx, func(tx Tx) error { return tx.Put(bucketKV, key(ns, k), raw, expire) })
}

// KVDelete deletes ns/k.
func (s *Store) KVDelete(ctx context.Context, ns, k string) error {
	return s.b.Update(ctx, func(tx Tx) error { return tx.Delete(bucketKV, key(ns, k)) })
}

// KVList scans ns's keys under p from after, skipping expired values.
func (s *Store) KVList(ctx context.Context, ns, p, after string, limit int, now time.Time) ([]tokenstore.KVEntry, error) {
	if limit <= 0 {
		limit = 100
	}
	out := []tokenstore.KVEntry{}
	var from []byte
	if after != "" {
		from = key(ns, after)
	}
	err := s.b.View(ctx, func(tx Tx) error {
		return tx.Scan(bucketKV, key(ns, p), from, func(k, raw []byte) bool {
			if v, ok := decodeKV(raw, now); ok {
				out = append(out, tokenstore.KVEntry{Key: string(k[len(ns)+1:]), Value: clone(v)})
			}
			return len(out) < limit
		})
	})
	return out, err
}

// KVUpdate applies change to the live value of ns/k in one Update.
func (s *Store) KVUpdate(ctx context.Context, ns, k string, now, expire time.Time, change func(old []byte) ([]byte, error)) error {
	return s.b.Update(ctx, func(tx Tx) error {
		old, _, err := liveKV(tx, ns, k, now)
		if err != nil {
			return err
		}
		v, err := change(old)
		if err != nil {
			return err
		}
		if v == nil {
			return tx.Delete(bucketKV, key(ns, k))
		}
		return tx.Put(bucketKV, key(ns, k), encodeKV(v, expire), expire)
	})
}

// KVAdd adds delta to the counter under ns/k in one Update.
func (s *Store) KVAdd(ctx context.Context, ns, k string, delta int64, now, expire time.Time) (int64, error) {
	var n int64
	err := s.b.Update(ctx, func(tx Tx) error {
		v, ok, err := liveKV(tx, ns, k, now)
		if err != nil {
			return err
		}
		// Not KVUpdate: it hands an empty value over as absent, and an
		// empty value is no counter.
		var cur int64
		if ok {
			if len(v) != tokenstore.CounterSize {
				return fmt.Errorf("kv: the value under %q is not a counter: %w", k, tokenstore.ErrInvalidArgument)
			}
			cur = int64(binary.BigEndian.Uint64(v))
		}
		n = cur + delta
		if (delta > 0 && n < cur) || (delta < 0 && n > cur) {
			return fmt.Errorf("kv: counter %q overflows: %w", k, tokenstore.ErrInvalidArgument)
		}
		v = binary.BigEndian.AppendUint64(make([]byte, 0, tokenstore.CounterSize), uint64(n))
		return tx.Put(bucketKV, key(ns, k), encodeKV(v, expire), expire)
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}
