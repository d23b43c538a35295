package kvstore

import (
	"cmp"
	"context"
	"crypto/hmac"
	"errors"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/handoffd/handoff/tokenstore"
)

// tokenKey is where a token lives: under its user, by its keyed hash.
func tokenKey(userID string, hash []byte) []byte {
	return append(userKindPrefix(userID, kindToken), hash...)
}

// Mint stores t for its user, evicting the user's expired tokens and the
// oldest live ones beyond keep, in one Update.
func (s *Store) Mint(ctx context.Context, t tokenstore.Token, keep int, now time.Time) error {
	raw := encodeToken(t)
	return s.b.Update(ctx, func(tx Tx) error {
		if _, err := getUser(tx, t.UserID); err != nil {
			return err
		}
		return putToken(tx, t.UserID, t.Hash, raw, t.Expire, keep, now)
	})
}

// putToken evicts userID's tokens as Mint does and stores raw, a token of
// the user, under hash. Two secrets of one user colliding (likely only for
// short secrets) would make one unreachable: the later one replaces it.
func putToken(tx Tx, userID string, hash, raw []byte, expire time.Time, keep int, now time.Time) error {
	if err := evictTokens(tx, userID, now, keep); err != nil {
		return err
	}
	return tx.Put(bucketUserData, tokenKey(userID, hash), raw, expire)
}

// Exchange takes the token and opens the session, or counts the failure,
// in one Update (see tokenstore.Exchange). Every refusal does the same
// work whatever its reason, and reports it as a result, not an error, so
// a group commit never runs it twice.
func (s *Store) Exchange(ctx context.Context, x tokenstore.Exchange) (tokenstore.ExchangeResult, error) {
	var res tokenstore.ExchangeResult
	err := s.b.Update(ctx, func(tx Tx) (err error) {
		if x.Limit == nil {
			res, err = exchange(tx, x)
			return err
		}
		lim := x.Limit
		count, err := windowCount(tx, lim.Key, lim.Start)
		if err != nil {
			return err
		}
		hits := int(min(count+1, math.MaxInt32))
		if hits > lim.Max {
			res = tokenstore.ExchangeResult{Limited: true, Hits: hits}
			return nil
		}
		if res, err = exchange(tx, x); err != nil {
			return err
		}
		res.Hits = hits
		if res.OK {
			return tx.Delete(bucketLimits, []byte(lim.Key))
		}
		return putWindowCount(tx, lim.Key, lim.Start, count+1, lim.Expire)
	})
	if err != nil {
		return tokenstore.ExchangeResult{}, err
	}
	return res, nil
}

// exchange is Exchange's step without the limit, in tx.
func exchange(tx Tx, x tokenstore.Exchange) (tokenstore.ExchangeResult, error) {
	res := tokenstore.ExchangeResult{Reason: tokenstore.ExchangeWrongSecret}
	_, userErr := tx.Get(bucketUsers, []byte(x.UserID)) // only whether the user exists
	switch {
	case errors.Is(userErr, tokenstore.ErrNotFound):
		userErr = tokenstore.ErrUserNotFound
	case userErr != nil:
		return res, userErr
	}
	raw, err := tx.Take(bucketUserData, tokenKey(x.UserID, x.Hash))
	if err != nil && !errors.Is(err, tokenstore.ErrNotFound) {
		return res, err
	}
	if err == nil && userErr == nil {
		t, err := decodeToken(raw)
		if err != nil {
			return res, err
		}
		// The key lookup already matched the keyed hash; the
		// constant-time compare guards the record itself. A count at
		// the limit (which a lowered MaxAttempts can leave) refuses
		// like a burn.
		if hmac.Equal(t.Hash, x.Hash) && !x.Now.After(t.Expire) && t.Attempts < x.MaxAttempts {
			sess := exchangedSession(x.Session, t)
			if err := insertSession(tx, sess, x.MaxSessions); err != nil {
				return res, err
			}
			return tokenstore.ExchangeResult{OK: true, Session: sess}, nil
		}
		res.Reason = tokenstore.ExchangeExpired
		if !x.Now.After(t.Expire) {
			res.Reason = tokenstore.ExchangeBurned
		}
	}
	if userErr != nil {
		res.Reason = tokenstore.ExchangeUnknownUser
		return res, nil // an unknown user has no count to keep
	}
	res.Burned, err = countFailure(tx, x.UserID, x.Now, x.MaxAttempts)
	return res, err
}

// exchangedSession is the session an exchange of t opens: s, with what
// the token carries for it.
func exchangedSession(s tokenstore.Session, t tokenstore.Token) tokenstore.Session {
	if t.Provider != "" {
		s.Provider = t.Provider
		s.ProviderUID = t.ProviderUID
		s.Factors = []string{t.Provider}
		s.ProviderTokens = t.ProviderTokens
	}
	if t.SessionID != "" {
		s.ID = t.SessionID
	}
	return s
}

// countFailure adds one wrong guess to each live token of userID and burns
// the tokens it brings to maxAttempts; expired tokens go on the way.
func countFailure(tx Tx, userID string, now time.Time, maxAttempts int) (burned int, err error) {
	toks, err := userTokens(tx, userID)
	if err != nil {
		return 0, err
	}
	for _, t := range toks {
		k := tokenKey(userID, t.Hash)
		if now.After(t.Expire) {
			if err := tx.Delete(bucketUserData, k); err != nil {
				return 0, err
			}
			continue
		}
		t.Attempts++
		if t.Attempts >= maxAttempts {
			if err := tx.Delete(bucketUserData, k); err != nil {
				return 0, err
			}
			burned++
			continue
		}
		if err := tx.Put(bucketUserData, k, encodeToken(t), t.Expire); err != nil {
			return 0, err
		}
	}
	return burned, nil
}

// evictTokens deletes userID's expired tokens and, of its live ones, the
// oldest (by CreatedAt, then ID) beyond keep.
func evictTokens(tx Tx, userID string, now time.Time, keep int) error {
	toks, err := userTokens(tx, userID)
	if err != nil {
		return err
	}
	live := toks[:0]
	for _, t := range toks {
		if now.After(t.Expire) {
			if err := tx.Delete(bucketUserData, tokenKey(userID, t.Hash)); err != nil {
				return err
			}
			continue
		}
		live = append(live, t)
	}
	if len(live) <= keep {
		return nil
	}
	slices.SortFunc(live, func(a, b tokenstore.Token) int {
		return cmp.Or(a.CreatedAt.Compare(b.CreatedAt), strings.Compare(a.ID, b.ID))
	})
	for _, t := range live[:len(live)-max(keep, 0)] {
		if err := tx.Delete(bucketUserData, tokenKey(userID, t.Hash)); err != nil {
			return err
		}
	}
	return nil
}

// userTokens returns every stored token of userID, expired ones included.
func userTokens(tx Tx, userID string) ([]tokenstore.Token, error) {
	return scanDecode(tx, bucketUserData, userKindPrefix(userID, kindToken), decodeToken)
}

// Tokens returns every stored token of the user.
func (s *Store) Tokens(ctx context.Context, userID string) ([]tokenstore.Token, error) {
	var out []tokenstore.Token
	err := s.b.View(ctx, func(tx Tx) (err error) {
		out, err = userTokens(tx, userID)
		return err
	})
	return out, err
}
