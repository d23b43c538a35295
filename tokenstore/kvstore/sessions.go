package kvstore

import (
	"context"
	"crypto/subtle"
	"errors"
	"slices"

	"github.com/handoffd/handoff/tokenstore"
)

// userSessionKey is s's entry in the user's session index: user, then
// creation time, then id, so the index lists a user's sessions oldest
// first.
func userSessionKey(s tokenstore.Session) []byte {
	return append(append(prefix(s.UserID), timeKey(s.CreatedAt)...), s.ID...)
}

// userSessionIDs returns the ids in userID's session index, oldest first.
func userSessionIDs(tx Tx, userID string) ([]string, error) {
	var ids []string
	n := len(userID) + 1 + 8
	err := tx.Scan(bucketUserSessions, prefix(userID), nil, func(k, _ []byte) bool {
		ids = append(ids, string(k[n:]))
		return true
	})
	return ids, err
}

// putSession stores s with its hash and user indexes, all expiring with
// it.
func putSession(tx Tx, s tokenstore.Session) error {
	if err := putJSON(tx, bucketSessions, []byte(s.ID), s, s.Expire); err != nil {
		return err
	}
	if err := tx.Put(bucketSessionsByHash, s.Hash, []byte(s.ID), s.Expire); err != nil {
		return err
	}
	return tx.Put(bucketUserSessions, userSessionKey(s), nil, s.Expire)
}

// insertSession stores s and evicts the user's oldest sessions beyond
// maxSessions (<0: none).
func insertSession(tx Tx, s tokenstore.Session, maxSessions int) error {
	if err := putSession(tx, s); err != nil {
		return err
	}
	if maxSessions < 0 {
		return nil
	}
	ids, err := userSessionIDs(tx, s.UserID)
	if err != nil {
		return err
	}
	for _, id := range ids[:max(0, len(ids)-maxSessions)] {
		if err := deleteSession(tx, id); err != nil && !errors.Is(err, tokenstore.ErrSessionNotFound) {
			return err
		}
	}
	return nil
}

// CreateSession stores s for its (existing) user and evicts beyond
// maxSessions, in one Update.
func (s *Store) CreateSession(ctx context.Context, sess tokenstore.Session, maxSessions int) error {
	return s.b.Update(ctx, func(tx Tx) error {
		if _, err := getUser(tx, sess.UserID); err != nil {
			return err
		}
		return insertSession(tx, sess, maxSessions)
	})
}

// SessionByHash finds the session through the hash index, with its user.
func (s *Store) SessionByHash(ctx context.Context, hash []byte) (tokenstore.User, tokenstore.Session, error) {
	var (
		u    tokenstore.User
		sess tokenstore.Session
	)
	err := s.b.View(ctx, func(tx Tx) error {
		id, err := tx.Get(bucketSessionsByHash, hash)
		if errors.Is(err, tokenstore.ErrNotFound) {
			return tokenstore.ErrSessionNotFound
		} else if err != nil {
			return err
		}
		if sess, err = getSession(tx, string(id)); err != nil {
			return err
		}
		if subtle.ConstantTimeCompare(sess.Hash, hash) != 1 {
			return tokenstore.ErrSessionNotFound
		}
		u, err = getUser(tx, sess.UserID)
		if errors.Is(err, tokenstore.ErrUserNotFound) {
			return tokenstore.ErrSessionNotFound
		}
		return err
	})
	if err != nil {
		return tokenstore.User{}, tokenstore.Session{}, err
	}
	return u, sess, nil
}

// Session returns the user's session id.
func (s *Store) Session(ctx context.Context, userID, id string) (tokenstore.Session, error) {
	var sess tokenstore.Session
	err := s.b.View(ctx, func(tx Tx) (err error) {
		sess, err = userSession(tx, userID, id)
		return err
	})
	return sess, err
}

// Sessions returns the user's sessions, oldest first, through the user's
// session index.
func (s *Store) Sessions(ctx context.Context, userID string) ([]tokenstore.Session, error) {
	out := []tokenstore.Session{}
	err := s.b.View(ctx, func(tx Tx) error {
		ids, err := userSessionIDs(tx, userID)
		if err != nil {
			return err
		}
		for _, id := range ids {
			sess, err := getSession(tx, id)
			if errors.Is(err, tokenstore.ErrSessionNotFound) {
				continue
			} else if err != nil {
				return err
			}
			out = append(out, sess)
		}
		return nil
	})
	return out, err
}

// UpdateSession applies change to the user's session id and stores it
// again with its indexes, under its new expiry, in one Update.
func (s *Store) UpdateSession(ctx context.Context, userID, id string, change func(*tokenstore.Session) error) (tokenstore.Session, error) {
	var out tokenstore.Session
	err := s.b.Update(ctx, func(tx Tx) error {
		old, err := userSession(tx, userID, id)
		if err != nil {
			return err
		}
		sess := old
		sess.Factors = slices.Clone(old.Factors)
		sess.ProviderTokens = clone(old.ProviderTokens)
		sess.Hash = clone(old.Hash)
		if err := change(&sess); err != nil {
			return err
		}
		sess.ID, sess.UserID, sess.Hash = old.ID, old.UserID, old.Hash
		if !sess.CreatedAt.Equal(old.CreatedAt) {
			if err := tx.Delete(bucketUserSessions, userSessionKey(old)); err != nil {
				return err
			}
		}
		out = sess
		return putSession(tx, sess)
	})
	if err != nil {
		return tokenstore.Session{}, err
	}
	return out, nil
}

// DeleteSession deletes the user's session id.
func (s *Store) DeleteSession(ctx context.Context, userID, id string) error {
	return s.b.Update(ctx, func(tx Tx) error {
		if _, err := userSession(tx, userID, id); err != nil {
			return err
		}
		return deleteSession(tx, id)
	})
}

// DeleteSessions deletes every session of the user.
func (s *Store) DeleteSessions(ctx context.Context, userID string) (int, error) {
	var n int
	err := s.b.Update(ctx, func(tx Tx) (err error) {
		n, err = deleteUserSessions(tx, userID)
		return err
	})
	return n, err
}

// getSession reads the session id, or gives ErrSessionNotFound.
func getSession(tx Tx, id string) (tokenstore.Session, error) {
	var s tokenstore.Session
	err := getJSON(tx, bucketSessions, []byte(id), &s)
	if errors.Is(err, tokenstore.ErrNotFound) {
		return s, tokenstore.ErrSessionNotFound
	}
	return s, err
}

// userSession is getSession for a session that must be userID's.
func userSession(tx Tx, userID, id string) (tokenstore.Session, error) {
	s, err := getSession(tx, id)
	if err == nil && s.UserID != userID {
		return tokenstore.Session{}, tokenstore.ErrSessionNotFound
	}
	return s, err
}

// deleteSession deletes the session id and its index entries.
func deleteSession(tx Tx, id string) error {
	s, err := getSession(tx, id)
	if err != nil {
		return err
	}
	for _, del := range []struct {
		bucket string
		key    []byte
	}{{bucketSessions, []byte(s.ID)}, {bucketSessionsByHash, s.Hash}, {bucketUserSessions, userSessionKey(s)}} {
		if err := tx.Delete(del.bucket, del.key); err != nil {
			return err
		}
	}
	return nil
}

// deleteUserSessions deletes every session in userID's index and reports
// how many there were.
func deleteUserSessions(tx Tx, userID string) (int, error) {
	keys, err := deletePrefix(tx, bucketUserSessions, prefix(userID))
	if err != nil {
		return 0, err
	}
	n := 0
	for _, k := range keys {
		switch err := deleteSession(tx, string(k[len(userID)+1+8:])); {
		case err == nil:
			n++
		case !errors.Is(err, tokenstore.ErrSessionNotFound):
			return 0, err
		}
	}
	return n, nil
}
