package tokenstore

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"time"
)

// KeyPrefix starts every API key handoff issues, as Appwrite's standard keys.
const KeyPrefix = "standard_"

// CreateKey creates an API key with scopes and returns it with its secret
// form, the one time it is shown. A zero expire never expires.
func (c *Core) CreateKey(ctx context.Context, name string, scopes []string, expire time.Time) (APIKey, string, error) {
	secret := KeyPrefix + randomHex(64)
	k := APIKey{ID: NewID(), Name: name, Scopes: scopes, Hash: sha256Sum(secret), CreatedAt: c.now(), Expire: expire}
	raw := mustJSON(k)
	err := c.store.Update(ctx, func(tx Tx) error {
		if err := tx.Insert(bucketKeys, []byte(k.ID), raw, time.Time{}); err != nil {
			return err
		}
		return tx.Insert(bucketKeysByHash, k.Hash, []byte(k.ID), time.Time{})
	})
	if err != nil {
		return APIKey{}, "", err
	}
	return k, secret, nil
}

// metaBootstrapped marks a store whose first API key has been made.
const metaBootstrapped = "bootstrapped"

// CreateFirstKey creates an API key only when the store has never had one
// made by it and holds none, in one transaction: of several daemons that
// start at once on one empty database, exactly one creates (and prints) the
// first key. It reports whether it created one.
func (c *Core) CreateFirstKey(ctx context.Context, name string, scopes []string) (APIKey, string, bool, error) {
	secret := KeyPrefix + randomHex(64)
	k := APIKey{ID: NewID(), Name: name, Scopes: scopes, Hash: sha256Sum(secret), CreatedAt: c.now()}
	raw := mustJSON(k)
	var created bool
	err := c.store.Update(ctx, func(tx Tx) error {
		created = false
		has := false
		if err := tx.Scan(bucketKeys, nil, nil, func(_, _ []byte) bool { has = true; return false }); err != nil || has {
			return err
		}
		switch err := tx.Insert(bucketMeta, []byte(metaBootstrapped), []byte(k.ID), time.Time{}); {
		case errors.Is(err, ErrExists):
			return nil // made before, and since revoked
		case err != nil:
			return err
		}
		if err := tx.Insert(bucketKeys, []byte(k.ID), raw, time.Time{}); err != nil {
			return err
		}
		created = true
		return tx.Insert(bucketKeysByHash, k.Hash, []byte(k.ID), time.Time{})
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
	return c.store.Update(ctx, func(tx Tx) error {
		var k APIKey
		if err := getJSON(tx, bucketKeys, []byte(id), &k); err != nil {
			return err
		}
		if err := tx.Delete(bucketKeys, []byte(id)); err != nil {
			return err
		}
		if err := tx.Delete(bucketKeysByHash, k.Hash); err != nil {
			return err
		}
		return tx.Delete(bucketMeta, []byte(metaBootstrapped))
	})
}

// AuthenticateKey returns the API key whose secret form is secret:
// ErrKeyInvalid when there is none, ErrKeyExpired when it has expired.
func (c *Core) AuthenticateKey(ctx context.Context, secret string) (APIKey, error) {
	if !strings.HasPrefix(secret, KeyPrefix) {
		secret = KeyPrefix + secret // Appwrite reads a key without a type as standard
	}
	var k APIKey
	err := c.store.View(ctx, func(tx Tx) error {
		id, err := tx.Get(bucketKeysByHash, sha256Sum(secret))
		if err != nil {
			return err
		}
		return getJSON(tx, bucketKeys, id, &k)
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
	out := []APIKey{}
	err := c.store.View(ctx, func(tx Tx) error {
		out = out[:0]
		var derr error
		err := tx.Scan(bucketKeys, nil, nil, func(_, v []byte) bool {
			var k APIKey
			if derr = json.Unmarshal(v, &k); derr != nil {
				return false
			}
			out = append(out, k)
			return true
		})
		if err != nil {
			return err
		}
		return derr
	})
	return out, err
}

// RevokeKey deletes the API key with id, or gives ErrNotFound.
func (c *Core) RevokeKey(ctx context.Context, id string) error {
	return c.store.Update(ctx, func(tx Tx) error {
		var k APIKey
		if err := getJSON(tx, bucketKeys, []byte(id), &k); err != nil {
			return err
		}
		if err := tx.Delete(bucketKeys, []byte(id)); err != nil {
			return err
		}
		return tx.Delete(bucketKeysByHash, k.Hash)
	})
}
