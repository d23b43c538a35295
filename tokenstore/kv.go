package tokenstore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// KV is the key-value space of one plugin instance (its namespace), kept in
// the store so plugins hold no state of their own. Values may carry a TTL.
type KV struct {
	core *Core
	ns   string
}

// KV returns the key-value space of namespace ns.
func (c *Core) KV(ns string) KV { return KV{core: c, ns: ns} }

// KVEntry is one key and value from List.
type KVEntry struct {
	Key   string
	Value []byte
}

// Values are kept as 8 bytes of expiry (unix nanoseconds, 0 = never) then
// the value, so reads can hide expired entries before the sweep gets them.
func encodeKV(value []byte, expire time.Time) []byte {
	var ns uint64
	if !expire.IsZero() {
		ns = uint64(expire.UnixNano())
	}
	return append(binary.BigEndian.AppendUint64(make([]byte, 0, 8+len(value)), ns), value...)
}

func decodeKV(raw []byte, now time.Time) ([]byte, bool) {
	if len(raw) < 8 {
		return nil, false
	}
	if ns := binary.BigEndian.Uint64(raw); ns != 0 && now.UnixNano() > int64(ns) {
		return nil, false
	}
	return raw[8:], true
}

// Get returns the value under k, or ErrNotFound.
func (kv KV) Get(ctx context.Context, k string) ([]byte, error) {
	var out []byte
	now := kv.core.now()
	err := kv.core.store.View(ctx, func(tx Tx) error {
		raw, err := tx.Get(bucketKV, key(kv.ns, k))
		if err != nil {
			return err
		}
		v, ok := decodeKV(raw, now)
		if !ok {
			return ErrNotFound
		}
		out = clone(v)
		return nil
	})
	return out, err
}

// Put stores value under k; a ttl above zero expires it.
func (kv KV) Put(ctx context.Context, k string, value []byte, ttl time.Duration) error {
	var expire time.Time
	if ttl > 0 {
		expire = kv.core.now().Add(ttl)
	}
	raw := encodeKV(value, expire)
	return kv.core.store.Update(ctx, func(tx Tx) error {
		return tx.Put(bucketKV, key(kv.ns, k), raw, expire)
	})
}

// Delete removes k; an absent key is no error.
func (kv KV) Delete(ctx context.Context, k string) error {
	return kv.core.store.Update(ctx, func(tx Tx) error { return tx.Delete(bucketKV, key(kv.ns, k)) })
}

// List returns up to limit live entries whose keys start with p, in key
// order, after the key after ("" from the first).
func (kv KV) List(ctx context.Context, p, after string, limit int) ([]KVEntry, error) {
	if limit <= 0 {
		limit = 100
	}
	out := []KVEntry{}
	now := kv.core.now()
	var from []byte
	if after != "" {
		from = key(kv.ns, after)
	}
	err := kv.core.store.View(ctx, func(tx Tx) error {
		out = out[:0]
		return tx.Scan(bucketKV, key(kv.ns, p), from, func(k, raw []byte) bool {
			if v, ok := decodeKV(raw, now); ok {
				out = append(out, KVEntry{Key: string(k[len(kv.ns)+1:]), Value: clone(v)})
			}
			return len(out) < limit
		})
	})
	return out, err
}

// Update applies change to the value under k (nil when absent) in one
// transaction and stores what it returns, or deletes k when it returns
// nil. It serves counters and compare-and-set in plugins.
func (kv KV) Update(ctx context.Context, k string, ttl time.Duration, change func(old []byte) ([]byte, error)) error {
	now := kv.core.now()
	var expire time.Time
	if ttl > 0 {
		expire = now.Add(ttl)
	}
	return kv.core.store.Update(ctx, func(tx Tx) error {
		raw, err := tx.Get(bucketKV, key(kv.ns, k))
		var old []byte
		switch {
		case err == nil:
			if v, ok := decodeKV(raw, now); ok {
				old = clone(v)
			}
		case !errors.Is(err, ErrNotFound):
			return err
		}
		v, err := change(old)
		if err != nil {
			return err
		}
		if v == nil {
			return tx.Delete(bucketKV, key(kv.ns, k))
		}
		return tx.Put(bucketKV, key(kv.ns, k), encodeKV(v, expire), expire)
	})
}

// CounterSize is the length of a counter's value: 8 bytes, big-endian
// two's complement, as Get returns it.
const CounterSize = 8

// Add adds delta to the int64 counter under k (absent or expired is 0) in
// one store transaction and returns the new value, so concurrent Adds, on
// one daemon or many sharing a store, each see a distinct count. A ttl
// above zero expires the counter ttl after this Add (each Add restarts
// the clock); zero leaves it without expiry. A value under k that is not
// CounterSize bytes, or a sum that overflows, is ErrInvalidArgument and
// changes nothing.
func (kv KV) Add(ctx context.Context, k string, delta int64, ttl time.Duration) (int64, error) {
	now := kv.core.now()
	var expire time.Time
	if ttl > 0 {
		expire = now.Add(ttl)
	}
	var n int64
	err := kv.core.store.Update(ctx, func(tx Tx) error {
		raw, err := tx.Get(bucketKV, key(kv.ns, k))
		if err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
		var cur int64
		// Not Update: it hands an empty value over as absent, and an
		// empty value is no counter.
		if v, ok := decodeKV(raw, now); err == nil && ok {
			if len(v) != CounterSize {
				return fmt.Errorf("kv: the value under %q is not a counter: %w", k, ErrInvalidArgument)
			}
			cur = int64(binary.BigEndian.Uint64(v))
		}
		n = cur + delta
		if (delta > 0 && n < cur) || (delta < 0 && n > cur) {
			return fmt.Errorf("kv: counter %q overflows: %w", k, ErrInvalidArgument)
		}
		v := binary.BigEndian.AppendUint64(make([]byte, 0, CounterSize), uint64(n))
		return tx.Put(bucketKV, key(kv.ns, k), encodeKV(v, expire), expire)
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}
