// Package memkv is an in-memory KV with TTLs, for hosts without a store
// (tests, the plugin test harness).
package memkv

import (
	"context"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/handoffd/handoff/providers/internal/hostrpc"
	"github.com/handoffd/handoff/providers/sdk"
)

// KV is an in-memory key-value space; the zero value is not usable, use New.
type KV struct {
	mu  sync.Mutex
	m   map[string]entry
	now func() time.Time
}

type entry struct {
	value  []byte
	expire time.Time
}

// New returns an empty KV.
func New() *KV { return &KV{m: map[string]entry{}, now: time.Now} }

func (kv *KV) live(k string) ([]byte, bool) {
	e, ok := kv.m[k]
	if !ok {
		return nil, false
	}
	if !e.expire.IsZero() && !kv.now().Before(e.expire) {
		delete(kv.m, k)
		return nil, false
	}
	return e.value, true
}

func (kv *KV) expiry(ttl time.Duration) time.Time {
	if ttl <= 0 {
		return time.Time{}
	}
	return kv.now().Add(ttl)
}

// Get returns the value under key or sdk.ErrNotFound.
func (kv *KV) Get(ctx context.Context, key string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	kv.mu.Lock()
	defer kv.mu.Unlock()
	v, ok := kv.live(key)
	if !ok {
		return nil, sdk.ErrNotFound
	}
	return append([]byte{}, v...), nil
}

// Put stores value under key; ttl > 0 expires it.
func (kv *KV) Put(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	kv.mu.Lock()
	defer kv.mu.Unlock()
	kv.m[key] = entry{value: append([]byte{}, value...), expire: kv.expiry(ttl)}
	return nil
}

// Delete removes key.
func (kv *KV) Delete(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	kv.mu.Lock()
	defer kv.mu.Unlock()
	delete(kv.m, key)
	return nil
}

// List returns up to limit live entries with the prefix, after after, in
// key order.
func (kv *KV) List(ctx context.Context, prefix, after string, limit int) ([]sdk.KVEntry, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if limit <= 0 {
		limit = 100
	}
	kv.mu.Lock()
	defer kv.mu.Unlock()
	keys := make([]string, 0, len(kv.m))
	for k := range kv.m {
		if strings.HasPrefix(k, prefix) && k > after {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	out := []sdk.KVEntry{}
	for _, k := range keys {
		if len(out) == limit {
			break
		}
		if v, ok := kv.live(k); ok {
			out = append(out, sdk.KVEntry{Key: k, Value: append([]byte{}, v...)})
		}
	}
	return out, nil
}

// Update changes the value under key in one step: change gets the current
// value (nil when absent) and returns the new one, or nil to delete.
func (kv *KV) Update(ctx context.Context, key string, ttl time.Duration, change func(old []byte) ([]byte, error)) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	kv.mu.Lock()
	defer kv.mu.Unlock()
	old, ok := kv.live(key)
	if ok {
		old = append([]byte{}, old...)
	}
	v, err := change(old)
	if err != nil {
		return err
	}
	if v == nil {
		delete(kv.m, key)
		return nil
	}
	kv.m[key] = entry{value: append([]byte{}, v...), expire: kv.expiry(ttl)}
	return nil
}

// CompareAndSwap implements sdk.KV's CompareAndSwap, for verifiers run
// directly (without the host) in tests.
func (kv *KV) CompareAndSwap(ctx context.Context, key string, old, new []byte, ttl time.Duration) (bool, error) {
	swapped := false
	err := kv.Update(ctx, key, ttl, func(cur []byte) ([]byte, error) {
		if (old == nil) != (cur == nil) || string(old) != string(cur) {
			return cur, errKeep
		}
		swapped = true
		if new == nil {
			return nil, nil
		}
		return append([]byte{}, new...), nil
	})
	if err == errKeep {
		err = nil
	}
	return swapped, err
}

// Add implements sdk.KV's Add in one Update, for verifiers run directly
// (without the host) in tests.
func (kv *KV) Add(ctx context.Context, key string, delta int64, ttl time.Duration) (int64, error) {
	var n int64
	err := kv.Update(ctx, key, ttl, func(cur []byte) ([]byte, error) {
		sum, v, err := hostrpc.AddCounter(cur, delta)
		n = sum
		return v, err
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

type keep struct{}

func (keep) Error() string { return "keep" }

var errKeep error = keep{}
