package kvstore

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/handoffd/handoff/tokenstore"
)

// scanBatch is how many users one read transaction of ScanUsers reads:
// fn runs outside the transaction, so it may use the store itself.
const scanBatch = 100

// CreateUser stores u with its indexes.
func (s *Store) CreateUser(ctx context.Context, u tokenstore.User) error {
	return s.b.Update(ctx, func(tx Tx) error { return insertUser(tx, u) })
}

// insertUser stores u with its email, phone and creation-order indexes;
// an id, email or phone already held gives ErrUserExists.
func insertUser(tx Tx, u tokenstore.User) error {
	if err := putUserIndexes(tx, u); err != nil {
		return err
	}
	raw, err := json.Marshal(u)
	if err != nil {
		return err
	}
	if err := tx.Insert(bucketUsers, []byte(u.ID), raw, time.Time{}); err != nil {
		return userConflict(err)
	}
	return tx.Put(bucketUsersByCreated, createdKey(u), nil, time.Time{})
}

func putUserIndexes(tx Tx, u tokenstore.User) error {
	if u.Email != "" {
		if err := tx.Insert(bucketUsersByEmail, []byte(u.Email), []byte(u.ID), time.Time{}); err != nil {
			return userConflict(err)
		}
	}
	if u.Phone != "" {
		if err := tx.Insert(bucketUsersByPhone, []byte(u.Phone), []byte(u.ID), time.Time{}); err != nil {
			return userConflict(err)
		}
	}
	return nil
}

func userConflict(err error) error {
	if errors.Is(err, tokenstore.ErrExists) {
		return tokenstore.ErrUserExists
	}
	return err
}

// createdKey is u's entry in the creation-order index.
func createdKey(u tokenstore.User) []byte { return append(timeKey(u.CreatedAt), u.ID...) }

// User returns the user id.
func (s *Store) User(ctx context.Context, id string) (tokenstore.User, error) {
	var u tokenstore.User
	err := s.b.View(ctx, func(tx Tx) (err error) { u, err = getUser(tx, id); return err })
	return u, err
}

// getUser reads the user id, or gives ErrUserNotFound.
func getUser(tx Tx, id string) (tokenstore.User, error) {
	var u tokenstore.User
	err := getJSON(tx, bucketUsers, []byte(id), &u)
	if errors.Is(err, tokenstore.ErrNotFound) {
		return u, tokenstore.ErrUserNotFound
	}
	return u, err
}

// putUser stores u over its old record; its indexes are the caller's.
func putUser(tx Tx, u tokenstore.User) error {
	return putJSON(tx, bucketUsers, []byte(u.ID), u, time.Time{})
}

// UserByEmail finds the user through the email index.
func (s *Store) UserByEmail(ctx context.Context, email string) (tokenstore.User, error) {
	var u tokenstore.User
	err := s.b.View(ctx, func(tx Tx) error {
		id, err := tx.Get(bucketUsersByEmail, []byte(strings.ToLower(email)))
		if errors.Is(err, tokenstore.ErrNotFound) {
			return tokenstore.ErrUserNotFound
		} else if err != nil {
			return err
		}
		u, err = getUser(tx, string(id))
		return err
	})
	return u, err
}

// UpdateUser applies change to the user id and stores the result, moving
// its email and phone index entries when they changed, in one Update.
func (s *Store) UpdateUser(ctx context.Context, id string, change func(*tokenstore.User) error) (tokenstore.User, error) {
	var out tokenstore.User
	err := s.b.Update(ctx, func(tx Tx) error {
		old, err := getUser(tx, id)
		if err != nil {
			return err
		}
		u := old
		u.Labels = slices.Clone(old.Labels)
		u.Prefs = maps.Clone(old.Prefs)
		u.Extra = maps.Clone(old.Extra)
		if err := change(&u); err != nil {
			return err
		}
		u.ID, u.CreatedAt = old.ID, old.CreatedAt
		u.Email = strings.ToLower(u.Email)
		if u.Email != old.Email {
			if err := reindex(tx, bucketUsersByEmail, old.Email, u.Email, u.ID); err != nil {
				return err
			}
		}
		if u.Phone != old.Phone {
			if err := reindex(tx, bucketUsersByPhone, old.Phone, u.Phone, u.ID); err != nil {
				return err
			}
		}
		out = u
		return putUser(tx, u)
	})
	if err != nil {
		return tokenstore.User{}, err
	}
	return out, nil
}

// reindex moves id's entry in an index bucket from old to new ("": none).
func reindex(tx Tx, bucket, old, new, id string) error {
	if new != "" {
		if err := tx.Insert(bucket, []byte(new), []byte(id), time.Time{}); err != nil {
			return userConflict(err)
		}
	}
	if old != "" {
		return tx.Delete(bucket, []byte(old))
	}
	return nil
}

// DeleteUser deletes the user, its indexes, tokens, sessions and
// identities, in one Update.
func (s *Store) DeleteUser(ctx context.Context, id string) error {
	return s.b.Update(ctx, func(tx Tx) error {
		u, err := getUser(tx, id)
		if err != nil {
			return err
		}
		for _, del := range []struct {
			bucket string
			key    string
		}{{bucketUsers, u.ID}, {bucketUsersByEmail, u.Email}, {bucketUsersByPhone, u.Phone}} {
			if del.key != "" {
				if err := tx.Delete(del.bucket, []byte(del.key)); err != nil {
					return err
				}
			}
		}
		if err := tx.Delete(bucketUsersByCreated, createdKey(u)); err != nil {
			return err
		}
		if _, err := deleteUserSessions(tx, u.ID); err != nil {
			return err
		}
		if _, err := deletePrefix(tx, bucketUserData, prefix(u.ID)); err != nil {
			return err
		}
		return deleteUserIdentities(tx, u.ID)
	})
}

// ScanUsers walks the creation-order index from after's entry, reading
// scanBatch users per read transaction and calling fn between them.
func (s *Store) ScanUsers(ctx context.Context, after string, fn func(tokenstore.User) bool) error {
	var from []byte
	if after != "" {
		err := s.b.View(ctx, func(tx Tx) error {
			u, err := getUser(tx, after)
			if errors.Is(err, tokenstore.ErrUserNotFound) {
				return tokenstore.ErrCursorNotFound
			}
			from = createdKey(u)
			return err
		})
		if err != nil {
			return err
		}
	}
	for {
		var batch []tokenstore.User
		err := s.b.View(ctx, func(tx Tx) error {
			batch = batch[:0]
			var scanErr error
			err := tx.Scan(bucketUsersByCreated, nil, from, func(k, _ []byte) bool {
				from = clone(k)
				u, err := getUser(tx, string(k[8:]))
				switch {
				case errors.Is(err, tokenstore.ErrUserNotFound):
					return true
				case err != nil:
					scanErr = err
					return false
				}
				batch = append(batch, u)
				return len(batch) < scanBatch
			})
			if err != nil {
				return err
			}
			return scanErr
		})
		if err != nil {
			return err
		}
		for _, u := range batch {
			if !fn(u) {
				return nil
			}
		}
		if len(batch) < scanBatch {
			return nil
		}
	}
}
