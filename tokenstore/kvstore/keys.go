package kvstore

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/handoffd/handoff/tokenstore"
)

// metaBootstrapped marks a store whose first API key has been made.
const metaBootstrapped = "bootstrapped"

// CreateKey stores k with its hash index, in one Update. With first, it
// stores k only on a store that holds no key and never marked a first
// one, and marks it.
func (s *Store) CreateKey(ctx context.Context, k tokenstore.APIKey, first bool) (bool, error) {
	raw, err := json.Marshal(k)
	if err != nil {
		return false, err
	}
	var created bool
	err = s.b.Update(ctx, func(tx Tx) error {
		created = false
		if first {
			has := false
			if err := tx.Scan(bucketKeys, nil, nil, func(_, _ []byte) bool { has = true; return false }); err != nil || has {
				return err
			}
			switch err := tx.Insert(bucketMeta, []byte(metaBootstrapped), []byte(k.ID), time.Time{}); {
			case errors.Is(err, tokenstore.ErrExists):
				return nil // made before, and since revoked
			case err != nil:
				return err
			}
		}
		if err := tx.Insert(bucketKeys, []byte(k.ID), raw, time.Time{}); err != nil {
			return err
		}
		created = true
		return tx.Insert(bucketKeysByHash, k.Hash, []byte(k.ID), time.Time{})
	})
	if err != nil {
		return false, err
	}
	return created, nil
}

// KeyByHash finds the API key through the hash index.
func (s *Store) KeyByHash(ctx context.Context, hash []byte) (tokenstore.APIKey, error) {
	var k tokenstore.APIKey
	err := s.b.View(ctx, func(tx Tx) error {
		id, err := tx.Get(bucketKeysByHash, hash)
		if err != nil {
			return err
		}
		return getJSON(tx, bucketKeys, id, &k)
	})
	switch {
	case errors.Is(err, tokenstore.ErrNotFound):
		return tokenstore.APIKey{}, tokenstore.ErrKeyInvalid
	case err != nil:
		return tokenstore.APIKey{}, err
	}
	return k, nil
}

// Keys returns every API key, in id order (the keys bucket's).
func (s *Store) Keys(ctx context.Context) ([]tokenstore.APIKey, error) {
	var out []tokenstore.APIKey
	err := s.b.View(ctx, func(tx Tx) (err error) {
		out, err = scanJSON[tokenstore.APIKey](tx, bucketKeys, nil)
		return err
	})
	return out, err
}

// DeleteKey deletes the API key id and its hash index entry (and, with
// first, the first-key mark) in one Update.
func (s *Store) DeleteKey(ctx context.Context, id string, first bool) error {
	return s.b.Update(ctx, func(tx Tx) error {
		var k tokenstore.APIKey
		if err := getJSON(tx, bucketKeys, []byte(id), &k); err != nil {
			return err
		}
		if err := tx.Delete(bucketKeys, []byte(id)); err != nil {
			return err
		}
		if err := tx.Delete(bucketKeysByHash, k.Hash); err != nil {
			return err
		}
		if first {
			return tx.Delete(bucketMeta, []byte(metaBootstrapped))
		}
		return nil
	})
}
