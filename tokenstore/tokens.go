package tokenstore

import (
	"cmp"
	"context"
	"crypto/hmac"
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
	now := c.now()
	t, secret, err := c.newToken(r, now)
	if err != nil {
		return Token{}, "", err
	}
	err = c.call(ctx, "mint", func(ctx context.Context) error {
		return c.store.Mint(ctx, t, c.opts.MaxOutstanding-1, now)
	})
	if err != nil {
		return Token{}, "", err
	}
	return t, secret, nil
}

// newToken checks r and makes the token it asks for, with its secret.
func (c *Core) newToken(r MintRequest, now time.Time) (Token, string, error) {
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
	if !r.ProviderTokens.IsZero() {
		// Sealed for the session the token will open, so the exchange
		// only moves them.
		t.SessionID = NewID()
		t.ProviderTokens = c.sealProviderTokens(placeSessions, t.SessionID, r.ProviderTokens)
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
	s, cred, _, err := c.exchange(ctx, userID, secret, cl, nil)
	return s, cred, err
}

// ExchangeLimited is Exchange under a route limit that the store counts
// in the exchange's own step (see tokenstore.Exchange's Limit): one
// write where a Hit, the exchange and a reset would be three. Past the
// limit it returns ErrRateLimited and changes nothing; a success resets
// the count and a failure adds one, as Appwrite's abuse limit does. The
// LimitCount is where this request left the limit, for the client's
// X-RateLimit headers (zero when the request never reached the store).
func (c *Core) ExchangeLimited(ctx context.Context, userID, secret string, cl Client, lim RouteLimit) (Session, string, LimitCount, error) {
	return c.exchange(ctx, userID, secret, cl, &lim)
}

func (c *Core) exchange(ctx context.Context, userID, secret string, cl Client, rl *RouteLimit) (Session, string, LimitCount, error) {
	if secret == "" || len(secret) > 256 {
		return Session{}, "", LimitCount{}, &ExchangeError{Reason: ExchangeWrongSecret}
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
	x := Exchange{UserID: userID, Hash: mac, Now: now, MaxAttempts: c.opts.MaxAttempts, Session: s,
		MaxSessions: c.opts.MaxSessions}
	var count LimitCount
	if rl != nil {
		start := now.Truncate(rl.Period)
		x.Limit = &Limit{Key: rl.Key, Start: start, Expire: start.Add(rl.Period), Max: rl.Max}
		count.Reset = x.Limit.Expire
	}
	var res ExchangeResult
	err := c.call(ctx, "exchange", func(ctx context.Context) (err error) {
		res, err = c.store.Exchange(ctx, x)
		return err
	})
	if errors.Is(err, ErrCommitUnknown) {
		res, err = c.readBack(ctx, s, err)
	}
	if err != nil {
		return Session{}, "", LimitCount{}, err
	}
	count.Hits = res.Hits
	switch {
	case res.Limited:
		return Session{}, "", count, ErrRateLimited
	case !res.OK:
		return Session{}, "", count, &ExchangeError{Reason: res.Reason, Burned: res.Burned}
	}
	return res.Session, Credential(userID, sessionSecret), count, nil
}

// RouteLimit is a route limit counted in the store: at most Max requests
// under Key in each window of Period, windows aligned to multiples of
// Period (as Hit counts).
type RouteLimit struct {
	Key    string
	Period time.Duration
	Max    int
}

// LimitCount is where a request left its route limit: the count with it,
// and when the window ends.
type LimitCount struct {
	Hits  int
	Reset time.Time
}

// readBack settles an exchange whose COMMIT outcome is unknown (err). The
// session's secret was made before the step, so whether it committed is
// whether a session with its hash is there: if it is, the exchange
// succeeded and the client gets its session, where a 503 would have sent
// it to retry a secret already spent. If it is not, the token is still
// there too and err (a 503) stands. The read runs under a deadline of its
// own, on a connection of its own.
func (c *Core) readBack(ctx context.Context, s Session, err error) (ExchangeResult, error) {
	var got Session
	rerr := c.call(ctx, "exchange_read_back", func(ctx context.Context) (err error) {
		_, got, err = c.store.SessionByHash(ctx, s.UserID, s.Hash)
		return err
	})
	switch {
	case rerr == nil && got.UserID == s.UserID && hmac.Equal(got.Hash, s.Hash):
		return ExchangeResult{OK: true, Session: got}, nil
	case rerr != nil && !errors.Is(rerr, ErrSessionNotFound):
		return ExchangeResult{}, fmt.Errorf("%w (and the read-back failed: %w)", err, rerr)
	}
	return ExchangeResult{}, err
}

// ListTokens returns the user's outstanding (unexpired) tokens, each with
// the wrong guesses it has faced (Attempts), oldest first.
func (c *Core) ListTokens(ctx context.Context, userID string) ([]Token, error) {
	var toks []Token
	err := c.call(ctx, "tokens", func(ctx context.Context) (err error) {
		toks, err = c.store.Tokens(ctx, userID)
		return err
	})
	if err != nil {
		return nil, err
	}
	now := c.now()
	out := []Token{}
	for _, t := range toks {
		if !now.After(t.Expire) {
			out = append(out, t)
		}
	}
	slices.SortFunc(out, func(a, b Token) int {
		return cmp.Or(a.CreatedAt.Compare(b.CreatedAt), strings.Compare(a.ID, b.ID))
	})
	return out, nil
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
