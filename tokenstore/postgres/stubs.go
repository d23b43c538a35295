package postgres

import (
	"context"
	"errors"
	"time"

	"github.com/handoffd/handoff/tokenstore"
)

// errNotImplemented is the answer of the steps pg2b fills in its own
// files (identities.go, keys.go, kv.go, limits.go, sweep.go); this file
// goes when they do.
var errNotImplemented = errors.New("postgres: not implemented yet")

// Identity implements tokenstore.Store.
func (s *Store) Identity(ctx context.Context, provider, subject string) (tokenstore.Identity, error) {
	return tokenstore.Identity{}, errNotImplemented
}

// LinkIdentity implements tokenstore.Store.
func (s *Store) LinkIdentity(ctx context.Context, id tokenstore.Identity) (tokenstore.Identity, error) {
	return tokenstore.Identity{}, errNotImplemented
}

// SignIn implements tokenstore.Store.
func (s *Store) SignIn(ctx context.Context, in tokenstore.SignIn) (tokenstore.SignInResult, error) {
	return tokenstore.SignInResult{}, errNotImplemented
}

// Identities implements tokenstore.Store.
func (s *Store) Identities(ctx context.Context, userID string) ([]tokenstore.Identity, error) {
	return nil, errNotImplemented
}

// CreateKey implements tokenstore.Store.
func (s *Store) CreateKey(ctx context.Context, k tokenstore.APIKey, first bool) (bool, error) {
	return false, errNotImplemented
}

// KeyByHash implements tokenstore.Store.
func (s *Store) KeyByHash(ctx context.Context, hash []byte) (tokenstore.APIKey, error) {
	return tokenstore.APIKey{}, errNotImplemented
}

// Keys implements tokenstore.Store.
func (s *Store) Keys(ctx context.Context) ([]tokenstore.APIKey, error) {
	return nil, errNotImplemented
}

// DeleteKey implements tokenstore.Store.
func (s *Store) DeleteKey(ctx context.Context, id string, first bool) error {
	return errNotImplemented
}

// KVGet implements tokenstore.KVStore.
func (s *Store) KVGet(ctx context.Context, ns, key string, now time.Time) ([]byte, error) {
	return nil, errNotImplemented
}

// KVPut implements tokenstore.KVStore.
func (s *Store) KVPut(ctx context.Context, ns, key string, value []byte, expire time.Time) error {
	return errNotImplemented
}

// KVDelete implements tokenstore.KVStore.
func (s *Store) KVDelete(ctx context.Context, ns, key string) error {
	return errNotImplemented
}

// KVList implements tokenstore.KVStore.
func (s *Store) KVList(ctx context.Context, ns, prefix, after string, limit int, now time.Time) ([]tokenstore.KVEntry, error) {
	return nil, errNotImplemented
}

// KVUpdate implements tokenstore.KVStore.
func (s *Store) KVUpdate(ctx context.Context, ns, key string, now, expire time.Time, change func(old []byte) ([]byte, error)) error {
	return errNotImplemented
}

// KVAdd implements tokenstore.KVStore.
func (s *Store) KVAdd(ctx context.Context, ns, key string, delta int64, now, expire time.Time) (int64, error) {
	return 0, errNotImplemented
}

// Hit implements tokenstore.Store.
func (s *Store) Hit(ctx context.Context, key string, start, expire time.Time) (int, error) {
	return 0, errNotImplemented
}

// ForgetHits implements tokenstore.Store.
func (s *Store) ForgetHits(ctx context.Context, key string) error {
	return errNotImplemented
}

// Sweep implements tokenstore.Store.
func (s *Store) Sweep(ctx context.Context, now time.Time, limit int) (int, error) {
	return 0, errNotImplemented
}
