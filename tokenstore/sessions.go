package tokenstore

import (
	"context"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"slices"
	"strings"
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

// CreateSession opens a session for a user without a token (Appwrite's
// users.createSession, and verifiers that log in directly).
func (c *Core) CreateSession(ctx context.Context, userID, provider string, cl Client) (Session, string, error) {
	return c.CreateProviderSession(ctx, userID, provider, "", ProviderTokens{}, cl)
}

// CreateProviderSession is CreateSession for a sign-in through provider:
// the session also carries the identity's subject (uid) and the IdP's
// tokens, sealed for the session's id. The user's oldest sessions beyond
// MaxSessions go in the same step.
func (c *Core) CreateProviderSession(ctx context.Context, userID, provider, uid string, pt ProviderTokens, cl Client) (Session, string, error) {
	secret := randomHex(sessionSecretLength)
	now := c.now()
	s := Session{ID: NewID(), UserID: userID, Hash: sha256Sum(secret), CreatedAt: now, UpdatedAt: now,
		Expire: now.Add(c.opts.SessionDuration), Provider: provider, ProviderUID: uid, Factors: []string{provider}, IP: cl.IP, UserAgent: cl.UserAgent}
	s.ProviderTokens = c.sealProviderTokens(placeSessions, s.ID, pt)
	err := c.call(ctx, "create_session", func(ctx context.Context) error {
		return c.store.CreateSession(ctx, s, c.opts.MaxSessions)
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
	var (
		u User
		s Session
	)
	err := c.call(ctx, "session_by_hash", func(ctx context.Context) (err error) {
		u, s, err = c.store.SessionByHash(ctx, userID, hash)
		return err
	})
	if err != nil {
		return User{}, Session{}, err
	}
	if subtle.ConstantTimeCompare(s.Hash, hash) != 1 || s.UserID != userID || u.ID != userID || c.now().After(s.Expire) {
		return User{}, Session{}, ErrSessionNotFound
	}
	return u, s, nil
}

// SessionByID returns a live session of the user, or ErrSessionNotFound.
func (c *Core) SessionByID(ctx context.Context, userID, sessionID string) (Session, error) {
	var s Session
	err := c.call(ctx, "session", func(ctx context.Context) (err error) {
		s, err = c.store.Session(ctx, userID, sessionID)
		return err
	})
	if err == nil && (s.UserID != userID || c.now().After(s.Expire)) {
		return Session{}, ErrSessionNotFound
	}
	return s, err
}

// ListSessions returns the user's live sessions, oldest first.
func (c *Core) ListSessions(ctx context.Context, userID string) ([]Session, error) {
	var all []Session
	err := c.call(ctx, "sessions", func(ctx context.Context) (err error) {
		all, err = c.store.Sessions(ctx, userID)
		return err
	})
	if err != nil {
		return nil, err
	}
	now := c.now()
	out := []Session{}
	for _, s := range all {
		if !now.After(s.Expire) {
			out = append(out, s)
		}
	}
	return out, nil
}

// DeleteSession deletes one session of the user.
func (c *Core) DeleteSession(ctx context.Context, userID, sessionID string) error {
	return c.call(ctx, "delete_session", func(ctx context.Context) error {
		return c.store.DeleteSession(ctx, userID, sessionID)
	})
}

// DeleteSessions deletes every session of the user and returns how many.
func (c *Core) DeleteSessions(ctx context.Context, userID string) (int, error) {
	var n int
	err := c.call(ctx, "delete_sessions", func(ctx context.Context) (err error) {
		n, err = c.store.DeleteSessions(ctx, userID)
		return err
	})
	return n, err
}

// HasFactor reports whether the session was opened with factor f.
func (s Session) HasFactor(f string) bool { return slices.Contains(s.Factors, f) }
