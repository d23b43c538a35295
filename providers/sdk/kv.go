package sdk

import (
	"context"
	"time"
)

// Host is what the host offers a plugin, handed over in Configure.
type Host interface {
	// KV is the provider instance's own key-value space in the daemon's
	// store: plugins keep no state of their own, so they restart and scale
	// with the daemon.
	KV() KV
}

// KV is a key-value space namespaced to one provider instance. Every
// method takes the caller's ctx: pass the one Verify got, and its deadline
// crosses to the host.
type KV interface {
	// Get returns the value under key, or an error matching ErrNotFound.
	Get(ctx context.Context, key string) ([]byte, error)
	// Put stores value under key; a ttl above zero expires it.
	Put(ctx context.Context, key string, value []byte, ttl time.Duration) error
	// Delete removes key; an absent key is no error.
	Delete(ctx context.Context, key string) error
	// List returns up to limit entries whose keys start with prefix, in key
	// order, after the key after ("" starts at the first). limit <= 0 means
	// the host's default (100).
	List(ctx context.Context, prefix, after string, limit int) ([]KVEntry, error)
	// CompareAndSwap stores new under key only if the current value is old,
	// and reports whether it did. A nil old means "only if absent" (so it
	// is put-if-absent); a nil new deletes the key. Use it for one-time
	// markers and counters; ttl applies to new.
	CompareAndSwap(ctx context.Context, key string, old, new []byte, ttl time.Duration) (bool, error)
}

// KVEntry is one key and its value, from KV.List.
type KVEntry struct {
	Key   string
	Value []byte
}
