package tokenstore

import (
	"context"
	"errors"
	"strings"
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
	return c.call(ctx, "delete_key", func(ctx context.Context) error { return c.store.DeleteKey(ctx, id, true) })
}

// AuthenticateKey returns the API key whose secret form is secret:
// ErrKeyInvalid when there is none, ErrKeyExpired when it has expired.
func (c *Core) AuthenticateKey(ctx context.Context, secret string) (APIKey, error) {
	if !strings.HasPrefix(secret, KeyPrefix) {
		secret = KeyPrefix + secret // Appwrite reads a key without a type as standard
	}
	var k APIKey
	err := c.call(ctx, "key_by_hash", func(ctx context.Context) (err error) {
		k, err = c.store.KeyByHash(ctx, sha256Sum(secret))
		return err
	})
	switch {
	case errors.Is(err, ErrNotFound):
		return APIKey{}, ErrKeyInvalid
	case err != nil:
		return APIKey{}, err
	case !k.Expire.IsZero() && c.now().After(k.Expire):
		return APIKey{}, ErrKeyExpired
	}
	return k, nil
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
	return c.call(ctx, "delete_key", func(ctx context.Context) error { return c.store.DeleteKey(ctx, id, false) })
}
