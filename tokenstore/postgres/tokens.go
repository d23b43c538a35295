package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/handoffd/handoff/tokenstore"
)

// tokenColumns are handoff_tokens' columns in the order of tokenRow.dest
// and tokenArgs.
const tokenColumns = "user_id, hash, id, session_id, created_at, expire, provider, provider_uid, provider_tokens, ip, user_agent, attempts"

const (
	// qTokensEvict deletes the user's expired tokens and, of the live
	// ones, all but the newest $3 (by created_at, then id). It runs after
	// the user's row lock, so it sees every token of the user's earlier
	// steps and no later step adds one before this one commits.
	qTokensEvict = "DELETE FROM handoff_tokens WHERE user_id = $1 AND (expire < $2 OR hash IN (" +
		"SELECT hash FROM handoff_tokens WHERE user_id = $1 AND expire >= $2 ORDER BY created_at DESC, id DESC OFFSET $3))"
	// qTokenInsert stores a token of a user that exists, replacing one of
	// the same hash; it returns nothing when the user does not exist.
	qTokenInsert = "INSERT INTO handoff_tokens (" + tokenColumns + ") " +
		"SELECT $1::text, $2::bytea, $3::text, $4::text, $5::timestamptz, $6::timestamptz, $7::text, $8::text, $9::bytea, $10::text, $11::text, $12::int " +
		"WHERE EXISTS (SELECT 1 FROM handoff_users WHERE id = $1) " +
		"ON CONFLICT (user_id, hash) DO UPDATE SET id = EXCLUDED.id, session_id = EXCLUDED.session_id, " +
		"created_at = EXCLUDED.created_at, expire = EXCLUDED.expire, provider = EXCLUDED.provider, " +
		"provider_uid = EXCLUDED.provider_uid, provider_tokens = EXCLUDED.provider_tokens, ip = EXCLUDED.ip, " +
		"user_agent = EXCLUDED.user_agent, attempts = EXCLUDED.attempts " +
		"RETURNING 1"
	qTokens = "SELECT " + tokenColumns + " FROM handoff_tokens WHERE user_id = $1"

	// qExchange is the exchange, after the user's row lock. With a route
	// limit ($16 its key, not NULL; $17 its window's start, $18 its
	// maximum, $19 its window's end) it first reads the limit's count,
	// and past $18 does nothing else (refused). Else it takes (DELETE …
	// RETURNING) the token $2 of user $1; when it is live ($3 is not
	// after its expire) and below $4 attempts, stores the session ($5..
	// as given, but the token's provider, subject, factors and sealed
	// IdP tokens when it has a provider, and its session id when it has
	// one) and deletes the limit's counter; else it counts the failure
	// on the user's other tokens (expired ones go, the rest get one more
	// attempt and those that reach $4 go, burned) and one hit on the
	// limit's counter, as qHit does. It answers whether the user exists,
	// whether a token was taken and had expired, how many tokens burned,
	// whether the limit refused, the limit's count with this request,
	// and the session as stored, if any.
	qExchange = `WITH lim AS (
	SELECT coalesce((SELECT count FROM handoff_limits WHERE key = $16::text AND window_start = $17::timestamptz), 0) AS count
), refused AS (
	SELECT $16::text IS NOT NULL AND (SELECT count FROM lim) >= $18::int AS yes
), taken AS (
	DELETE FROM handoff_tokens WHERE user_id = $1 AND hash = $2 AND NOT (SELECT yes FROM refused)
	RETURNING session_id, expire, attempts, provider, provider_uid, provider_tokens
), ok AS (
	SELECT * FROM taken WHERE expire >= $3 AND attempts < $4
), ins AS (
	INSERT INTO handoff_sessions (` + sessionColumns + `)
	SELECT coalesce(ok.session_id, $5::text), $1::text, $6::bytea, $7::timestamptz, $8::timestamptz, $9::timestamptz,
		CASE WHEN ok.provider <> '' THEN ok.provider ELSE $10::text END,
		CASE WHEN ok.provider <> '' THEN ok.provider_uid ELSE $11::text END,
		CASE WHEN ok.provider <> '' THEN ok.provider_tokens ELSE $12::bytea END,
		CASE WHEN ok.provider <> '' THEN ARRAY[ok.provider] ELSE $13::text[] END,
		$14::text, $15::text
	FROM ok
	RETURNING id, provider, provider_uid, provider_tokens, factors
), known AS (
	SELECT EXISTS (SELECT 1 FROM handoff_users WHERE id = $1) AS yes
), failed AS (
	SELECT (SELECT yes FROM known) AND NOT EXISTS (SELECT 1 FROM ok) AND NOT (SELECT yes FROM refused) AS yes
), gone AS (
	DELETE FROM handoff_tokens WHERE user_id = $1 AND hash <> $2 AND (SELECT yes FROM failed)
		AND (expire < $3 OR attempts + 1 >= $4)
	RETURNING expire >= $3 AS burned
), counted AS (
	UPDATE handoff_tokens SET attempts = attempts + 1 WHERE user_id = $1 AND hash <> $2 AND (SELECT yes FROM failed)
		AND expire >= $3 AND attempts + 1 < $4
	RETURNING 1
), reset AS (
	DELETE FROM handoff_limits WHERE key = $16 AND EXISTS (SELECT 1 FROM ok)
), hit AS (
	` + qHitOf + `
	SELECT $16::text, $17::timestamptz, 1, $19::timestamptz WHERE $16::text IS NOT NULL AND NOT (SELECT yes FROM refused) AND NOT EXISTS (SELECT 1 FROM ok)
	` + qHitConflict + `
)
SELECT (SELECT yes FROM known), EXISTS (SELECT 1 FROM taken), coalesce((SELECT expire < $3 FROM taken), false),
	(SELECT count(*) FROM gone WHERE burned), (SELECT count(*) FROM counted),
	(SELECT yes FROM refused), coalesce((SELECT count FROM hit), least((SELECT count FROM lim) + 1, 2147483647)),
	ins.id, ins.provider, ins.provider_uid, ins.provider_tokens, ins.factors
FROM (SELECT 1) AS one LEFT JOIN ins ON true`
)

// tokenRow receives a row of tokenColumns.
type tokenRow struct {
	t         tokenstore.Token
	sessionID *string
}

func (r *tokenRow) dest() []any {
	t := &r.t
	return []any{&t.UserID, &t.Hash, &t.ID, &r.sessionID, &t.CreatedAt, &t.Expire, &t.Provider, &t.ProviderUID,
		&t.ProviderTokens, &t.IP, &t.UserAgent, &t.Attempts}
}

func (r *tokenRow) token() tokenstore.Token {
	t := r.t
	t.SessionID = deref(r.sessionID)
	t.CreatedAt, t.Expire = t.CreatedAt.UTC(), t.Expire.UTC()
	return t
}

// tokenArgs are t's values in tokenColumns order; an empty session id is
// NULL, which the exchange reads as "none".
func tokenArgs(t tokenstore.Token) []any {
	return []any{t.UserID, t.Hash, t.ID, nullText(t.SessionID), t.CreatedAt, t.Expire, t.Provider, t.ProviderUID,
		t.ProviderTokens, t.IP, t.UserAgent, t.Attempts}
}

// queueMint queues what Mint does after the user's row lock: the
// eviction of the user's expired tokens and oldest live ones beyond keep,
// then the token's INSERT, as two statements, so the INSERT sees the
// eviction (a token of the same hash that went is inserted anew). stored
// reports whether the user existed and the token was stored.
func queueMint(t *txn, tok tokenstore.Token, keep int, now time.Time, stored *bool) {
	t.queue(qTokensEvict, tok.UserID, sqlNow(now), max(keep, 0))
	t.queue(qTokenInsert, tokenArgs(tok)...).Exec(func(tag pgconn.CommandTag) error {
		*stored = tag.RowsAffected() == 1
		return nil
	})
}

// Mint implements tokenstore.Store, in one round trip: BEGIN, the user's
// row lock, the eviction, the INSERT, COMMIT.
func (s *Store) Mint(ctx context.Context, tok tokenstore.Token, keep int, now time.Time) error {
	var stored bool
	err := s.writeStep(ctx, "mint", tok.UserID, "", func(t *txn) error {
		stored = false
		t.queue(qLockUser, tok.UserID)
		queueMint(t, tok, keep, now, &stored)
		return nil
	})
	switch {
	case err != nil:
		return err
	case !stored:
		return tokenstore.ErrUserNotFound
	}
	return nil
}

// Exchange implements tokenstore.Store, in one round trip: BEGIN, the
// user's row lock, qExchange, the session cap's eviction, COMMIT.
func (s *Store) Exchange(ctx context.Context, x tokenstore.Exchange) (tokenstore.ExchangeResult, error) {
	var (
		res   tokenstore.ExchangeResult
		limit string
	)
	if x.Limit != nil {
		limit = x.Limit.Key
	}
	err := s.writeStep(ctx, "exchange", x.UserID, limit, func(t *txn) error {
		res = tokenstore.ExchangeResult{}
		sess := x.Session
		t.queue(qLockUser, x.UserID)
		var lim [4]any // a NULL key: no limit
		if l := x.Limit; l != nil {
			lim = [4]any{l.Key, l.Start, l.Max, l.Expire}
		}
		t.queue(qExchange, x.UserID, x.Hash, sqlNow(x.Now), x.MaxAttempts,
			sess.ID, sess.Hash, sess.CreatedAt, sess.UpdatedAt, sess.Expire,
			sess.Provider, sess.ProviderUID, sess.ProviderTokens, sess.Factors, sess.IP, sess.UserAgent,
			lim[0], lim[1], lim[2], lim[3],
		).QueryRow(func(row pgx.Row) error {
			var (
				known, took, expired, refused bool
				burned, counted, hits         int64
				id, provider, uid             *string
				sealed                        []byte
				factors                       []string
			)
			if err := row.Scan(&known, &took, &expired, &burned, &counted, &refused, &hits,
				&id, &provider, &uid, &sealed, &factors); err != nil {
				return err
			}
			if x.Limit != nil {
				res.Hits = int(hits)
			}
			switch {
			case refused:
				res.Limited = true
			case id != nil:
				// The session as stored: as given, with what the
				// token gave it.
				sess.ID, sess.Provider, sess.ProviderUID = *id, deref(provider), deref(uid)
				sess.ProviderTokens, sess.Factors = sealed, factors
				res.OK, res.Session = true, sess
			case !known:
				res.Reason = tokenstore.ExchangeUnknownUser
			case !took:
				res.Reason = tokenstore.ExchangeWrongSecret
			case expired:
				res.Reason = tokenstore.ExchangeExpired
			default:
				res.Reason = tokenstore.ExchangeBurned
			}
			res.Burned = int(burned)
			return nil
		})
		queueEvict(t, x.UserID, x.MaxSessions, sess.Hash)
		return nil
	})
	if err != nil {
		return tokenstore.ExchangeResult{}, err
	}
	return res, nil
}

// Tokens implements tokenstore.Store.
func (s *Store) Tokens(ctx context.Context, userID string) ([]tokenstore.Token, error) {
	var out []tokenstore.Token
	err := s.read(ctx, "tokens", func(t *txn) error {
		queueRows(t, &out, scanToken, qTokens, userID)
		return nil
	})
	return out, err
}

// scanToken reads a row of tokenColumns.
func scanToken(row pgx.Row) (tokenstore.Token, error) {
	var r tokenRow
	err := row.Scan(r.dest()...)
	return r.token(), err
}

// sqlNow is now as the statements compare it with a stored instant, which
// has microseconds: rounded up, so "expire < now" holds exactly when now
// is after expire, also when now has nanoseconds (PostgreSQL would drop
// them, and an instant 1ns after the expiry would still be live).
func sqlNow(now time.Time) time.Time {
	up := now.Truncate(time.Microsecond)
	if up.Before(now) {
		up = up.Add(time.Microsecond)
	}
	return up
}
