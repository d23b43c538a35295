package tokenstore

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"
)

// KeyPrefix starts every API key handoff issues, as Appwrite's standard keys.
const KeyPrefix = "standard_"

// newKey makes an API key and its secret form.
func (c *Core) newKey(name string, scopes []string, expire time.Time) (APIKey, string) {
	secret := KeyPrefix + randomHex(64)
	return APIKey{ID: NewID(), Name: name, Scopes: scopes, Hash: sha256Sum(secret), CreatedAt: c.now(), Expire: expire}, secret
}

// CreateKey creates an API key with scopes and returns it with its secret
// form, the one time it is shown. A zero expire never expires.
func (c *Core) CreateKey(ctx context.Context, name string, scopes []string, expire time.Time) (APIKey, string, error) {
	k, secret := c.newKey(name, scopes, expire)
	err := c.call(ctx, "create_key", func(ctx context.Context) error {
		_, err := c.store.CreateKey(ctx, k, false)
		return err
	})
	if err != nil {
		return APIKey{}, "", err
	}
	return k, secret, nil
}

// CreateFirstKey creates an API key only when the store has never had one
// made by it and holds none, in one step: of several daemons that start at
// once on one empty database, exactly one creates (and prints) the first
// key. It reports whether it created one.
func (c *Core) CreateFirstKey(ctx context.Context, name string, scopes []string) (APIKey, string, bool, error) {
	k, secret := c.newKey(name, scopes, time.Time{})
	var created bool
	err := c.call(ctx, "create_first_key", func(ctx context.Context) (err error) {
		created, err = c.store.CreateKey(ctx, k, true)
		return err
	})
	if err != nil || !created {
		return APIKey{}, "", false, err
	}
	return k, secret, true, nil
}

// UndoFirstKey deletes the first API key CreateFirstKey made, and the
// mark that it was made, so the next start makes one again: for a first
// key that could not be handed to anyone.
func (c *Core) UndoFirstKey(ctx context.Context, id string) error {
	err := c.call(ctx, "delete_key", func(ctx context.Context) error { return c.store.DeleteKey(ctx, id, true) })
	c.keyCache.clear()
	return err
}

// AuthenticateKey returns the API key whose secret form is secret:
// ErrKeyInvalid when there is none, ErrKeyExpired when it has expired.
// With Options.KeyCacheTTL, a key found in the store is kept in memory
// for that long and not read again meanwhile (see keyCache).
func (c *Core) AuthenticateKey(ctx context.Context, secret string) (APIKey, error) {
	if !strings.HasPrefix(secret, KeyPrefix) {
		secret = KeyPrefix + secret // Appwrite reads a key without a type as standard
	}
	hash := sha256Sum(secret)
	now := c.now()
	k, ok := c.keyCache.get(hash, now)
	if !ok {
		err := c.call(ctx, "key_by_hash", func(ctx context.Context) (err error) {
			k, err = c.store.KeyByHash(ctx, hash)
			return err
		})
		switch {
		case errors.Is(err, ErrNotFound):
			return APIKey{}, ErrKeyInvalid
		case err != nil:
			return APIKey{}, err
		}
		c.keyCache.put(hash, k, now)
	}
	if !k.Expire.IsZero() && now.After(k.Expire) {
		return APIKey{}, ErrKeyExpired
	}
	return k, nil
}

// keyCache keeps the API keys recently read from the store, by the hash
// of their secret, for ttl: an API caller pays one store read per key per
// ttl instead of one per request. Only keys that exist are kept, so a
// stream of wrong keys cannot fill it, and it holds at most keyCacheSize
// of them. RevokeKey empties it, so a key revoked through this core stops
// working at once; a key revoked through another daemon on the same
// database works here until its entry is ttl old. Zero ttl: no cache.
type keyCache struct {
	ttl  time.Duration
	mu   sync.Mutex
	keys map[string]cachedKey
}

// keyCacheSize bounds the cache; a full cache starts again empty.
const keyCacheSize = 1024

type cachedKey struct {
	key  APIKey
	read time.Time
}

func (kc *keyCache) get(hash []byte, now time.Time) (APIKey, bool) {
	if kc.ttl <= 0 {
		return APIKey{}, false
	}
	kc.mu.Lock()
	defer kc.mu.Unlock()
	e, ok := kc.keys[string(hash)]
	if !ok || now.Sub(e.read) >= kc.ttl || now.Before(e.read) {
		return APIKey{}, false
	}
	return e.key, true
}

func (kc *keyCache) put(hash []byte, k APIKey, now time.Time) {
	if kc.ttl <= 0 {
		return
	}
	kc.mu.Lock()
	defer kc.mu.Unlock()
	if kc.keys == nil || len(kc.keys) >= keyCacheSize {
		kc.keys = make(map[string]cachedKey)
	}
	kc.keys[string(hash)] = cachedKey{key: k, read: now}
}

// clear forgets every key.
func (kc *keyCache) clear() {
	kc.mu.Lock()
	kc.keys = nil
	kc.mu.Unlock()
}

// ListKeys returns every API key.
func (c *Core) ListKeys(ctx context.Context) ([]APIKey, error) {
	var out []APIKey
	err := c.call(ctx, "keys", func(ctx context.Context) (err error) { out, err = c.store.Keys(ctx); return err })
	if out == nil {
		out = []APIKey{}
	}
	return out, err
}

// RevokeKey deletes the API key with id, or gives ErrNotFound.
func (c *Core) RevokeKey(ctx context.Context, id string) error {
	err := c.call(ctx, "delete_key", func(ctx context.Context) error { return c.store.DeleteKey(ctx, id, false) })
	c.keyCache.clear() // also when the outcome is unknown
	return err
}
