package tokenstore

import (
	"context"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"time"
)

// Credential encodes a session credential as Appwrite does:
// base64(JSON{"id": userId, "secret": secret}). The same string goes in the
// a_session_<project> cookie, X-Appwrite-Session and X-Fallback-Cookies.
func Credential(userID, secret string) string {
	raw, _ := json.Marshal(struct {
		ID     string `json:"id"`
		Secret string `json:"secret"`
	}{userID, secret})
	return base64.StdEncoding.EncodeToString(raw)
}

// ParseCredential decodes a credential. It reports false for anything that
// is not strict base64 of a JSON object with a non-empty id and secret.
func ParseCredential(s string) (userID, secret string, ok bool) {
	raw, err := base64.StdEncoding.Strict().DecodeString(strings.TrimSpace(s))
	if err != nil {
		return "", "", false
	}
	var v struct {
		ID     string `json:"id"`
		Secret string `json:"secret"`
	}
	if json.Unmarshal(raw, &v) != nil || v.ID == "" || v.Secret == "" {
		return "", "", false
	}
	return v.ID, v.Secret, true
}

func userSessionKey(s Session) []byte {
	return append(append(prefix(s.UserID), timeKey(s.CreatedAt)...), s.ID...)
}

// insertSession stores s with its indexes and evicts the user's oldest
// sessions beyond MaxSessions.
func (c *Core) insertSession(tx Tx, s Session) error {
	if err := tx.Put(bucketSessions, []byte(s.ID), mustJSON(s), s.Expire); err != nil {
		return err
	}
	if err := tx.Put(bucketSessionsByHash, s.Hash, []byte(s.ID), s.Expire); err != nil {
		return err
	}
	if err := tx.Put(bucketUserSessions, userSessionKey(s), nil, s.Expire); err != nil {
		return err
	}
	if c.opts.MaxSessions < 0 {
		return nil
	}
	var ids []string
	if err := tx.Scan(bucketUserSessions, prefix(s.UserID), nil, func(k, _ []byte) bool {
		ids = append(ids, string(k[len(s.UserID)+1+8:]))
		return true
	}); err != nil {
		return err
	}
	for _, id := range ids[:max(0, len(ids)-c.opts.MaxSessions)] {
		if err := deleteSession(tx, id); err != nil && !errors.Is(err, ErrSessionNotFound) {
			return err
		}
	}
	return nil
}

// CreateSession opens a session for a user without a token (Appwrite's
// users.createSession, and verifiers that log in directly).
func (c *Core) CreateSession(ctx context.Context, userID, provider string, cl Client) (Session, string, error) {
	return c.CreateProviderSession(ctx, userID, provider, "", ProviderTokens{}, cl)
}

// CreateProviderSession is CreateSession for a sign-in through provider:
// the session also carries the identity's subject (uid) and the IdP's
// tokens, sealed for the session's id.
func (c *Core) CreateProviderSession(ctx context.Context, userID, provider, uid string, pt ProviderTokens, cl Client) (Session, string, error) {
	secret := randomHex(sessionSecretLength)
	now := c.now()
	s := Session{ID: NewID(), UserID: userID, Hash: sha256Sum(secret), CreatedAt: now, UpdatedAt: now,
		Expire: now.Add(c.opts.SessionDuration), Provider: provider, ProviderUID: uid, Factors: []string{provider}, IP: cl.IP, UserAgent: cl.UserAgent}
	s.ProviderTokens = c.sealProviderTokens(bucketSessions, s.ID, pt)
	err := c.store.Update(ctx, func(tx Tx) error {
		if _, err := getUser(tx, userID); err != nil {
			return err
		}
		return c.insertSession(tx, s)
	})
	if err != nil {
		return Session{}, "", err
	}
	return s, Credential(userID, secret), nil
}

// Authenticate resolves a session credential to its user and session. A
// credential that does not parse, names another user, or whose session is
// gone or expired gives ErrSessionNotFound.
func (c *Core) Authenticate(ctx context.Context, credential string) (User, Session, error) {
	userID, secret, ok := ParseCredential(credential)
	if !ok {
		return User{}, Session{}, ErrSessionNotFound
	}
	hash := sha256Sum(secret)
	now := c.now()
	var (
		u User
		s Session
	)
	err := c.store.View(ctx, func(tx Tx) error {
		id, err := tx.Get(bucketSessionsByHash, hash)
		if errors.Is(err, ErrNotFound) {
			return ErrSessionNotFound
		} else if err != nil {
			return err
		}
		if s, err = getSession(tx, string(id)); err != nil {
			return err
		}
		if subtle.ConstantTimeCompare(s.Hash, hash) != 1 || s.UserID != userID || now.After(s.Expire) {
			return ErrSessionNotFound
		}
		u, err = getUser(tx, userID)
		if errors.Is(err, ErrUserNotFound) {
			return ErrSessionNotFound
		}
		return err
	})
	return u, s, err
}

// SessionByID returns a live session of the user, or ErrSessionNotFound.
func (c *Core) SessionByID(ctx context.Context, userID, sessionID string) (Session, error) {
	var s Session
	now := c.now()
	err := c.store.View(ctx, func(tx Tx) (err error) {
		s, err = getSession(tx, sessionID)
		if err == nil && (s.UserID != userID || now.After(s.Expire)) {
			return ErrSessionNotFound
		}
		return err
	})
	return s, err
}

// ListSessions returns the user's live sessions, oldest first.
func (c *Core) ListSessions(ctx context.Context, userID string) ([]Session, error) {
	out := []Session{}
	now := c.now()
	err := c.store.View(ctx, func(tx Tx) error {
		out = out[:0]
		var ids []string
		if err := tx.Scan(bucketUserSessions, prefix(userID), nil, func(k, _ []byte) bool {
			ids = append(ids, string(k[len(userID)+1+8:]))
			return true
		}); err != nil {
			return err
		}
		for _, id := range ids {
			s, err := getSession(tx, id)
			if errors.Is(err, ErrSessionNotFound) {
				continue
			} else if err != nil {
				return err
			}
			if !now.After(s.Expire) {
				out = append(out, s)
			}
		}
		return nil
	})
	return out, err
}

// DeleteSession deletes one session of the user.
func (c *Core) DeleteSession(ctx context.Context, userID, sessionID string) error {
	return c.store.Update(ctx, func(tx Tx) error {
		s, err := getSession(tx, sessionID)
		if err != nil {
			return err
		}
		if s.UserID != userID {
			return ErrSessionNotFound
		}
		return deleteSession(tx, sessionID)
	})
}

// DeleteSessions deletes every session of the user and returns how many.
func (c *Core) DeleteSessions(ctx context.Context, userID string) (int, error) {
	var n int
	err := c.store.Update(ctx, func(tx Tx) error {
		n = 0
		keys, err := deletePrefix(tx, bucketUserSessions, prefix(userID))
		if err != nil {
			return err
		}
		for _, k := range keys {
			if err := deleteSession(tx, string(k[len(userID)+1+8:])); err == nil {
				n++
			} else if !errors.Is(err, ErrSessionNotFound) {
				return err
			}
		}
		return nil
	})
	return n, err
}

func getSession(tx Tx, id string) (Session, error) {
	var s Session
	err := getJSON(tx, bucketSessions, []byte(id), &s)
	if errors.Is(err, ErrNotFound) {
		return s, ErrSessionNotFound
	}
	return s, err
}

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

func deleteUserSessions(tx Tx, userID string) error {
	keys, err := deletePrefix(tx, bucketUserSessions, prefix(userID))
	if err != nil {
		return err
	}
	for _, k := range keys {
		if err := deleteSession(tx, string(k[len(userID)+1+8:])); err != nil && !errors.Is(err, ErrSessionNotFound) {
			return err
		}
	}
	return nil
}

// HasFactor reports whether the session was opened with factor f.
func (s Session) HasFactor(f string) bool { return slices.Contains(s.Factors, f) }

var _ = time.Time{}
