package tokenstore

import (
	"context"
	"crypto/hmac"
	"encoding/json"
	"errors"
	"time"
)

// Mint creates a one-time token for a user and returns it with its secret:
// r.Length lowercase hex characters from crypto/rand (default 6), valid for
// r.Expire (default 15 minutes). Only HMAC-SHA256(pepper, secret) is kept.
// An unknown user gives ErrUserNotFound.
func (c *Core) Mint(ctx context.Context, r MintRequest) (Token, string, error) {
	if r.Length == 0 {
		r.Length = c.opts.TokenLength
	}
	if r.Expire == 0 {
		r.Expire = c.opts.TokenExpire
	}
	if err := checkRange("length", r.Length, MinTokenLength, MaxTokenLength); err != nil {
		return Token{}, "", err
	}
	if r.Expire%time.Second != 0 {
		return Token{}, "", &ArgumentError{Param: "expire", Reason: "Value must be a whole number of seconds"}
	}
	if err := checkRange("expire", int(r.Expire/time.Second), int(MinTokenExpire/time.Second), int(MaxTokenExpire/time.Second)); err != nil {
		return Token{}, "", err
	}
	secret := randomHex(r.Length)
	now := c.now()
	t := Token{
		ID:        NewID(),
		UserID:    r.UserID,
		Hash:      c.tokenMAC(secret),
		CreatedAt: now,
		Expire:    now.Add(r.Expire),
		Provider:  r.Provider,
		IP:        r.IP,
		UserAgent: r.UserAgent,
	}
	raw := mustJSON(t)
	err := c.store.Update(ctx, func(tx Tx) error {
		if _, err := tx.Get(bucketUsers, []byte(r.UserID)); err != nil {
			if errors.Is(err, ErrNotFound) {
				return ErrUserNotFound
			}
			return err
		}
		// Two secrets of one user colliding (likely only for short
		// secrets) would make one unreachable: the later one replaces it.
		return tx.Put(bucketTokens, key(r.UserID, string(t.Hash)), raw, t.Expire)
	})
	if err != nil {
		return Token{}, "", err
	}
	return t, secret, nil
}

// failures is a user's run of failed exchanges.
type failures struct {
	Count int       `json:"count"`
	Last  time.Time `json:"last"`
}

// Exchange consumes a user's token and opens a session, atomically: of
// several concurrent exchanges of one secret exactly one succeeds. The
// session secret is returned inside the credential (see Credential).
//
// An unknown user, a wrong secret and a used or expired token all give
// ErrInvalidToken after the same steps: one write transaction that looks up
// the user and takes the token by its keyed hash. A failure counts against
// the user; at MaxAttempts failures in a row every outstanding token of the
// user is burned. Success resets the count and evicts the user's oldest
// sessions beyond MaxSessions.
func (c *Core) Exchange(ctx context.Context, userID, secret string, cl Client) (Session, string, error) {
	if secret == "" || len(secret) > 256 {
		return Session{}, "", ErrInvalidToken
	}
	mac := c.tokenMAC(secret)
	sessionSecret := randomHex(sessionSecretLength)
	now := c.now()
	s := Session{
		ID:        NewID(),
		UserID:    userID,
		Hash:      sha256Sum(sessionSecret),
		CreatedAt: now,
		UpdatedAt: now,
		Expire:    now.Add(c.opts.SessionDuration),
		Provider:  "token",
		Factors:   []string{"token"},
		IP:        cl.IP,
		UserAgent: cl.UserAgent,
	}
	var ok bool
	err := c.store.Update(ctx, func(tx Tx) error {
		ok = false
		_, userErr := tx.Get(bucketUsers, []byte(userID))
		if userErr != nil && !errors.Is(userErr, ErrNotFound) {
			return userErr
		}
		raw, err := tx.Take(bucketTokens, key(userID, string(mac)))
		if err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
		if err == nil && userErr == nil {
			var t Token
			if err := json.Unmarshal(raw, &t); err != nil {
				return err
			}
			// The key lookup already matched the keyed hash; the
			// constant-time compare guards the record itself.
			if hmac.Equal(t.Hash, mac) && !now.After(t.Expire) {
				if t.Provider != "" {
					s.Provider = t.Provider
					s.Factors = []string{t.Provider}
				}
				ok = true
				if err := tx.Delete(bucketFailures, []byte(userID)); err != nil {
					return err
				}
				return c.insertSession(tx, s)
			}
		}
		if userErr != nil {
			return nil // an unknown user has no count to keep
		}
		return c.countFailure(tx, userID, now)
	})
	if err != nil {
		return Session{}, "", err
	}
	if !ok {
		return Session{}, "", ErrInvalidToken
	}
	return s, Credential(userID, sessionSecret), nil
}

// countFailure adds one failed exchange for userID and burns all its tokens
// when the count reaches MaxAttempts.
func (c *Core) countFailure(tx Tx, userID string, now time.Time) error {
	var f failures
	if err := getJSON(tx, bucketFailures, []byte(userID), &f); err != nil && !errors.Is(err, ErrNotFound) {
		return err
	}
	f.Count++
	f.Last = now
	if f.Count < c.opts.MaxAttempts {
		return putJSON(tx, bucketFailures, []byte(userID), f, now.Add(failureWindow))
	}
	if err := tx.Delete(bucketFailures, []byte(userID)); err != nil {
		return err
	}
	return deleteTokens(tx, userID)
}

// Failures returns the user's current run of failed exchanges.
func (c *Core) Failures(ctx context.Context, userID string) (int, error) {
	var f failures
	err := c.store.View(ctx, func(tx Tx) error {
		err := getJSON(tx, bucketFailures, []byte(userID), &f)
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		return err
	})
	return f.Count, err
}

// ListTokens returns the user's outstanding (unexpired) tokens.
func (c *Core) ListTokens(ctx context.Context, userID string) ([]Token, error) {
	out := []Token{}
	now := c.now()
	err := c.store.View(ctx, func(tx Tx) error {
		out = out[:0]
		var derr error
		err := tx.Scan(bucketTokens, prefix(userID), nil, func(_, v []byte) bool {
			var t Token
			if derr = json.Unmarshal(v, &t); derr != nil {
				return false
			}
			if !now.After(t.Expire) {
				out = append(out, t)
			}
			return true
		})
		if err != nil {
			return err
		}
		return derr
	})
	return out, err
}

func deleteTokens(tx Tx, userID string) error {
	_, err := deletePrefix(tx, bucketTokens, prefix(userID))
	return err
}
