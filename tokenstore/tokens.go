package tokenstore

import (
	"cmp"
	"context"
	"crypto/hmac"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Mint creates a one-time token for a user and returns it with its secret:
// r.Length lowercase hex characters from crypto/rand (default 6), valid for
// r.Expire (default 15 minutes). Only HMAC-SHA256(pepper, secret) is kept.
// An unknown user gives ErrUserNotFound.
//
// A user keeps at most MaxOutstanding live tokens: in the same transaction
// the oldest (by CreatedAt) go, so a guess at a user's secret never has
// more than MaxOutstanding tokens to hit.
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
		ID:          NewID(),
		UserID:      r.UserID,
		Hash:        c.tokenMAC(secret),
		CreatedAt:   now,
		Expire:      now.Add(r.Expire),
		Provider:    r.Provider,
		ProviderUID: r.ProviderUID,
		IP:          r.IP,
		UserAgent:   r.UserAgent,
	}
	t.ProviderTokens = c.sealProviderTokens(bucketTokens, t.ID, r.ProviderTokens)
	raw := mustJSON(t)
	err := c.store.Update(ctx, func(tx Tx) error {
		if _, err := tx.Get(bucketUsers, []byte(r.UserID)); err != nil {
			if errors.Is(err, ErrNotFound) {
				return ErrUserNotFound
			}
			return err
		}
		if err := evictTokens(tx, r.UserID, now, c.opts.MaxOutstanding-1); err != nil {
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

// Exchange consumes a user's token and opens a session, atomically: of
// several concurrent exchanges of one secret exactly one succeeds. The
// session secret is returned inside the credential (see Credential).
//
// An unknown user, a wrong secret and a used or expired token all give
// ErrInvalidToken (an *ExchangeError, whose detail is for the operator's
// log and never for the client) after the same steps: one write transaction that looks up
// the user and takes the token by its keyed hash. A failure of a known
// user counts against each of the user's live tokens, since any of them
// may have been the target; a token burns when its count reaches
// MaxAttempts (see countFailure). Success evicts the user's oldest
// sessions beyond MaxSessions.
func (c *Core) Exchange(ctx context.Context, userID, secret string, cl Client) (Session, string, error) {
	if secret == "" || len(secret) > 256 {
		return Session{}, "", &ExchangeError{Reason: ExchangeWrongSecret}
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
	var (
		ok   bool
		fail ExchangeError
	)
	err := c.store.Update(ctx, func(tx Tx) error {
		ok, fail = false, ExchangeError{Reason: ExchangeWrongSecret}
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
			// constant-time compare guards the record itself. A count
			// at the limit (which a lowered MaxAttempts, or a replica
			// configured otherwise, can leave) refuses like a burn.
			if hmac.Equal(t.Hash, mac) && !now.After(t.Expire) && t.Attempts < c.opts.MaxAttempts {
				if t.Provider != "" {
					s.Provider = t.Provider
					s.ProviderUID = t.ProviderUID
					s.Factors = []string{t.Provider}
				}
				s.ProviderTokens = c.resealProviderTokens(t, s.ID)
				ok = true
				return c.insertSession(tx, s)
			}
			fail.Reason = ExchangeExpired
			if !now.After(t.Expire) {
				fail.Reason = ExchangeBurned
			}
		}
		if userErr != nil {
			fail.Reason = ExchangeUnknownUser
			return nil // an unknown user has no count to keep
		}
		burned, err := c.countFailure(tx, userID, now)
		fail.Burned = burned
		return err
	})
	if ok && errors.Is(err, ErrCommitUnknown) {
		err = c.readBack(ctx, s, err)
	}
	if err != nil {
		return Session{}, "", err
	}
	if !ok {
		return Session{}, "", &fail
	}
	return s, Credential(userID, sessionSecret), nil
}

// readBack settles an exchange whose COMMIT outcome is unknown (err). The
// session's id and secret were made before the transaction, so whether
// it committed is whether the session is there: if it is, the exchange
// succeeded and the client gets its session, where a 503 would have sent
// it to retry a secret already spent. If it is not, the token is still
// there too and err (a 503) stands. The read runs under a deadline of its
// own, on a connection of its own.
func (c *Core) readBack(ctx context.Context, s Session, err error) error {
	var found bool
	rerr := c.store.View(ctx, func(tx Tx) error {
		var got Session
		err := getJSON(tx, bucketSessions, []byte(s.ID), &got)
		found = err == nil && hmac.Equal(got.Hash, s.Hash)
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		return err
	})
	switch {
	case rerr != nil:
		return fmt.Errorf("%w (and the read-back failed: %w)", err, rerr)
	case found:
		return nil
	}
	return err
}

// countFailure adds one wrong guess to each live token of userID and burns
// the tokens it brings to MaxAttempts.
//
// Counting on the tokens, not on the user, bounds every token by itself:
// a token has faced exactly the wrong guesses made while it was live, so
// none is ever exchanged after MaxAttempts of them, whatever was minted,
// exchanged or burned around it. And a denial of service costs MaxAttempts
// wrong guesses inside each token's own life: failures an attacker spread
// out before the victim minted burn only the tokens that were live then.
func (c *Core) countFailure(tx Tx, userID string, now time.Time) (burned int, err error) {
	toks, err := userTokens(tx, userID)
	if err != nil {
		return 0, err
	}
	for _, t := range toks {
		k := key(userID, string(t.Hash))
		if now.After(t.Expire) {
			if err := tx.Delete(bucketTokens, k); err != nil {
				return 0, err
			}
			continue
		}
		t.Attempts++
		if t.Attempts >= c.opts.MaxAttempts {
			if err := tx.Delete(bucketTokens, k); err != nil {
				return 0, err
			}
			burned++
			continue
		}
		if err := tx.Put(bucketTokens, k, mustJSON(t), t.Expire); err != nil {
			return 0, err
		}
	}
	return burned, nil
}

// evictTokens deletes userID's expired tokens and, of its live ones, the
// oldest beyond keep.
func evictTokens(tx Tx, userID string, now time.Time, keep int) error {
	toks, err := userTokens(tx, userID)
	if err != nil {
		return err
	}
	live := toks[:0]
	for _, t := range toks {
		if now.After(t.Expire) {
			if err := tx.Delete(bucketTokens, key(userID, string(t.Hash))); err != nil {
				return err
			}
			continue
		}
		live = append(live, t)
	}
	if len(live) <= keep {
		return nil
	}
	slices.SortFunc(live, func(a, b Token) int {
		return cmp.Or(a.CreatedAt.Compare(b.CreatedAt), strings.Compare(a.ID, b.ID))
	})
	for _, t := range live[:len(live)-keep] {
		if err := tx.Delete(bucketTokens, key(userID, string(t.Hash))); err != nil {
			return err
		}
	}
	return nil
}

// userTokens returns every stored token of userID, expired ones included.
func userTokens(tx Tx, userID string) ([]Token, error) {
	var (
		out  []Token
		derr error
	)
	err := tx.Scan(bucketTokens, prefix(userID), nil, func(_, v []byte) bool {
		var t Token
		if derr = json.Unmarshal(v, &t); derr != nil {
			return false
		}
		out = append(out, t)
		return true
	})
	if err != nil {
		return nil, err
	}
	return out, derr
}

// ListTokens returns the user's outstanding (unexpired) tokens, each with
// the wrong guesses it has faced (Attempts).
func (c *Core) ListTokens(ctx context.Context, userID string) ([]Token, error) {
	out := []Token{}
	now := c.now()
	err := c.store.View(ctx, func(tx Tx) error {
		toks, err := userTokens(tx, userID)
		out = out[:0]
		for _, t := range toks {
			if !now.After(t.Expire) {
				out = append(out, t)
			}
		}
		return err
	})
	return out, err
}

func deleteTokens(tx Tx, userID string) error {
	_, err := deletePrefix(tx, bucketTokens, prefix(userID))
	return err
}

// ExchangeFailure is why an exchange was refused, for the operator: the
// client is told ErrInvalidToken whatever it is.
type ExchangeFailure string

// The reasons of a refused exchange.
const (
	// ExchangeUnknownUser: no user has the id.
	ExchangeUnknownUser ExchangeFailure = "unknown_user"
	// ExchangeWrongSecret: no live token of the user has the secret (a
	// guess, a token already exchanged or swept, or a typo).
	ExchangeWrongSecret ExchangeFailure = "wrong_secret"
	// ExchangeExpired: the secret is a token's that has expired.
	ExchangeExpired ExchangeFailure = "expired"
	// ExchangeBurned: the secret is a token's that had already faced
	// MaxAttempts wrong guesses.
	ExchangeBurned ExchangeFailure = "burned"
)

// ExchangeError is a refused exchange: it is ErrInvalidToken to errors.Is,
// and tells the operator why and how many of the user's tokens this
// failure burned. Building it costs nothing the client could time: every
// refusal does the same store work whatever the reason.
type ExchangeError struct {
	Reason ExchangeFailure
	// Burned is how many of the user's live tokens this wrong guess
	// brought to MaxAttempts and deleted.
	Burned int
}

func (e *ExchangeError) Error() string { return ErrInvalidToken.Error() + ": " + string(e.Reason) }

// Unwrap makes an ExchangeError ErrInvalidToken to errors.Is.
func (e *ExchangeError) Unwrap() error { return ErrInvalidToken }
