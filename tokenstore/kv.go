package tokenstore

import (
	"context"
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

// expireAt is when a value put now with ttl expires: never for ttl <= 0.
func (kv KV) expireAt(now time.Time, ttl time.Duration) time.Time {
	if ttl <= 0 {
		return time.Time{}
	}
	return now.Add(ttl)
}

// Get returns the value under k, or ErrNotFound.
func (kv KV) Get(ctx context.Context, k string) ([]byte, error) {
	var v []byte
	err := kv.core.call(ctx, "kv_get", func(ctx context.Context) (err error) {
		v, err = kv.core.store.KVGet(ctx, kv.ns, k, kv.core.now())
		return err
	})
	return v, err
}

// Put stores value under k; a ttl above zero expires it.
func (kv KV) Put(ctx context.Context, k string, value []byte, ttl time.Duration) error {
	now := kv.core.now()
	return kv.core.call(ctx, "kv_put", func(ctx context.Context) error {
		return kv.core.store.KVPut(ctx, kv.ns, k, value, kv.expireAt(now, ttl))
	})
}

// Delete removes k. An absent key is no error.
func (kv KV) Delete(ctx context.Context, k string) error {
	return kv.core.call(ctx, "kv_delete", func(ctx context.Context) error { return kv.core.store.KVDelete(ctx, kv.ns, k) })
}

// List returns up to limit live entries whose keys start with p, in key
// order, after the key after ("" from the first).
func (kv KV) List(ctx context.Context, p, after string, limit int) ([]KVEntry, error) {
	if limit <= 0 {
		limit = 100
	}
	var out []KVEntry
	err := kv.core.call(ctx, "kv_list", func(ctx context.Context) (err error) {
		out, err = kv.core.store.KVList(ctx, kv.ns, p, after, limit, kv.core.now())
		return err
	})
	if out == nil {
		out = []KVEntry{}
	}
	return out, err
}

// Update applies change to the value under k (nil when absent) in one
// step and stores what it returns, or deletes k when it returns nil. It
// serves counters and compare-and-set in plugins. change may run more
// than once.
func (kv KV) Update(ctx context.Context, k string, ttl time.Duration, change func(old []byte) ([]byte, error)) error {
	now := kv.core.now()
	return kv.core.call(ctx, "kv_update", func(ctx context.Context) error {
		return kv.core.store.KVUpdate(ctx, kv.ns, k, now, kv.expireAt(now, ttl), change)
	})
}

// CounterSize is the length of a counter's value: 8 bytes, big-endian
// two's complement, as Get returns it.
const CounterSize = 8

// Add adds delta to the int64 counter under k (absent or expired is 0) in
// one store step and returns the new value, so concurrent Adds, on one
// daemon or many sharing a store, each see a distinct count. A ttl above
// zero expires the counter ttl after this Add (each Add restarts the
// clock); zero leaves it without expiry. A value under k that is not
// CounterSize bytes, or a sum that overflows, is ErrInvalidArgument and
// changes nothing.
func (kv KV) Add(ctx context.Context, k string, delta int64, ttl time.Duration) (int64, error) {
	now := kv.core.now()
	var n int64
	err := kv.core.call(ctx, "kv_add", func(ctx context.Context) (err error) {
		n, err = kv.core.store.KVAdd(ctx, kv.ns, k, delta, now, kv.expireAt(now, ttl))
		return err
	})
	return n, err
}
