package sdk

import (
	"context"
	"encoding/binary"
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
	// Add adds delta to the int64 counter under key (an absent or expired
	// key counts as 0) in one step, atomic across daemon replicas, and
	// returns the counter's new value. A ttl above zero expires the counter
	// ttl after this Add (every Add restarts the clock: a sliding window);
	// zero leaves it without expiry. The counter is stored as 8 bytes,
	// big-endian two's complement (encoding/binary.BigEndian.Uint64, then
	// int64), which is what Get returns for it. A key that holds some other
	// value, or an add that would overflow, is an error matching
	// ErrInvalidRequest. Use it to reserve an attempt before checking a
	// secret: the count is taken before the check, so concurrent guesses
	// cannot all read the same old count.
	Add(ctx context.Context, key string, delta int64, ttl time.Duration) (int64, error)
}

// CounterSize is the length of a counter's value, as KV.Get returns it.
const CounterSize = 8

// EncodeCounter returns n as a counter's value, as KV.Get returns it.
func EncodeCounter(n int64) []byte {
	return binary.BigEndian.AppendUint64(make([]byte, 0, CounterSize), uint64(n))
}

// DecodeCounter reads a counter's value as KV.Get returns it; ok is false
// when v is not a counter.
func DecodeCounter(v []byte) (n int64, ok bool) {
	if len(v) != CounterSize {
		return 0, false
	}
	return int64(binary.BigEndian.Uint64(v)), true
}

// KVEntry is one key and its value, from KV.List.
type KVEntry struct {
	Key   string
	Value []byte
}
