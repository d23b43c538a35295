package kvstore

import (
	"cmp"
	"context"
	"crypto/subtle"
	"errors"
	"slices"
	"strings"

	"github.com/handoffd/handoff/tokenstore"
)

// The kinds of a user's records in user_data, after the user's prefix.
const (
	kindToken   = 't'
	kindSession = 's'
)

// userKindPrefix is where userID's records of kind sit in user_data.
func userKindPrefix(userID string, kind byte) []byte { return append(prefix(userID), kind) }

// sessionKey is where the user's session with hash lives: under its
// user, by its secret's hash, so the credential (which names both) finds
// it with one Get and an exchange writes nowhere but the user's pages.
func sessionKey(userID string, hash []byte) []byte {
	return append(userKindPrefix(userID, kindSession), hash...)
}

// userSessions returns userID's stored sessions, oldest
// (CreatedAt, then ID) first.
func userSessions(tx Tx, userID string) ([]tokenstore.Session, error) {
	sessions, err := scanDecode(tx, bucketUserData, userKindPrefix(userID, kindSession), decodeSession)
	slices.SortFunc(sessions, func(a, b tokenstore.Session) int {
		return cmp.Or(a.CreatedAt.Compare(b.CreatedAt), strings.Compare(a.ID, b.ID))
	})
	return sessions, err
}

// putSession stores s under its user, expiring with it.
func putSession(tx Tx, s tokenstore.Session) error {
	return tx.Put(bucketUserData, sessionKey(s.UserID, s.Hash), encodeSession(s), s.Expire)
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
	// The keys tell how many there are; only a user past the cap has
	// their sessions read to find the oldest.
	n := 0
	err := tx.Scan(bucketUserData, userKindPrefix(s.UserID, kindSession), nil, func(_, _ []byte) bool {
		n++
		return true
	})
	if err != nil || n <= maxSessions {
		return err
	}
	sessions, err := userSessions(tx, s.UserID)
	if err != nil {
		return err
	}
	for _, old := range sessions[:max(0, len(sessions)-maxSessions)] {
		if err := deleteSession(tx, old); err != nil {
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

// SessionByHash finds the user's session by its key, with the user.
func (s *Store) SessionByHash(ctx context.Context, userID string, hash []byte) (tokenstore.User, tokenstore.Session, error) {
	var (
		u    tokenstore.User
		sess tokenstore.Session
	)
	err := s.b.View(ctx, func(tx Tx) error {
		raw, err := tx.Get(bucketUserData, sessionKey(userID, hash))
		if errors.Is(err, tokenstore.ErrNotFound) {
			return tokenstore.ErrSessionNotFound
		} else if err != nil {
			return err
		}
		if sess, err = decodeSession(raw); err != nil {
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

// Sessions returns the user's sessions, oldest first: a scan of the
// user's sessions in user_data.
func (s *Store) Sessions(ctx context.Context, userID string) ([]tokenstore.Session, error) {
	var out []tokenstore.Session
	err := s.b.View(ctx, func(tx Tx) (err error) {
		out, err = userSessions(tx, userID)
		return err
	})
	return out, err
}

// UpdateSession applies change to the user's session id and stores it
// again with its hash entry, under its new expiry, in one Update.
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
		sess, err := userSession(tx, userID, id)
		if err != nil {
			return err
		}
		return deleteSession(tx, sess)
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

// userSession returns userID's session id, or ErrSessionNotFound: a scan
// of the user's few sessions.
func userSession(tx Tx, userID, id string) (tokenstore.Session, error) {
	sessions, err := userSessions(tx, userID)
	if err != nil {
		return tokenstore.Session{}, err
	}
	for _, s := range sessions {
		if s.ID == id {
			return s, nil
		}
	}
	return tokenstore.Session{}, tokenstore.ErrSessionNotFound
}

// deleteSession deletes s.
func deleteSession(tx Tx, s tokenstore.Session) error {
	return tx.Delete(bucketUserData, sessionKey(s.UserID, s.Hash))
}

// deleteUserSessions deletes every session of userID and reports how many
// there were.
func deleteUserSessions(tx Tx, userID string) (int, error) {
	sessions, err := userSessions(tx, userID)
	if err != nil {
		return 0, err
	}
	for _, s := range sessions {
		if err := deleteSession(tx, s); err != nil {
			return 0, err
		}
	}
	return len(sessions), nil
}
