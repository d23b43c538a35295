package postgres

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/handoffd/handoff/tokenstore"
)

// sessionColumns are handoff_sessions' columns in the order of
// sessionRow.dest and sessionArgs.
const sessionColumns = "id, user_id, hash, created_at, updated_at, expire, provider, provider_uid, provider_tokens, factors, ip, user_agent"

const (
	// qSessionInsert stores a session of a user that exists; it returns
	// nothing when the user does not. The user's row is locked by then
	// (qLockUser), so it cannot go before the step commits.
	qSessionInsert = "INSERT INTO handoff_sessions (" + sessionColumns + ") " +
		"SELECT $1::text, $2::text, $3::bytea, $4::timestamptz, $5::timestamptz, $6::timestamptz, $7::text, $8::text, $9::bytea, $10::text[], $11::text, $12::text " +
		"WHERE EXISTS (SELECT 1 FROM handoff_users WHERE id = $2) " +
		"RETURNING 1"
	// qSessionEvict deletes the user's sessions beyond the newest $2,
	// once the session whose hash is $3 is stored: it runs after the
	// step's INSERT, as a statement of its own, so it sees that session.
	qSessionEvict = "DELETE FROM handoff_sessions WHERE id IN (" +
		"SELECT id FROM handoff_sessions WHERE user_id = $1 ORDER BY created_at DESC, id DESC OFFSET $2) " +
		"AND EXISTS (SELECT 1 FROM handoff_sessions WHERE hash = $3)"
	// qSessionByHash reads a user's session and the user in one
	// statement, through the unique index on hash and the users' primary
	// key.
	qSessionByHash = "SELECT " + userColumnsOf + ", " + sessionColumnsOf +
		" FROM handoff_sessions s JOIN handoff_users u ON u.id = s.user_id WHERE s.hash = $2 AND s.user_id = $1"
	qSession       = "SELECT " + sessionColumns + " FROM handoff_sessions WHERE id = $2 AND user_id = $1"
	qSessionLock   = qSession + " FOR NO KEY UPDATE"
	qSessions      = "SELECT " + sessionColumns + " FROM handoff_sessions WHERE user_id = $1 ORDER BY created_at, id"
	qSessionUpdate = "UPDATE handoff_sessions SET created_at = $4, updated_at = $5, expire = $6, provider = $7, " +
		"provider_uid = $8, provider_tokens = $9, factors = $10, ip = $11, user_agent = $12 WHERE id = $1 AND user_id = $2 AND hash = $3"
	qSessionDelete  = "DELETE FROM handoff_sessions WHERE id = $2 AND user_id = $1"
	qSessionsDelete = "DELETE FROM handoff_sessions WHERE user_id = $1"
)

// sessionColumnsOf is sessionColumns qualified by the table alias s.
const sessionColumnsOf = "s.id, s.user_id, s.hash, s.created_at, s.updated_at, s.expire, s.provider, s.provider_uid, s.provider_tokens, s.factors, s.ip, s.user_agent"

// sessionRow receives a row of sessionColumns.
type sessionRow struct{ s tokenstore.Session }

func (r *sessionRow) dest() []any {
	s := &r.s
	return []any{&s.ID, &s.UserID, &s.Hash, &s.CreatedAt, &s.UpdatedAt, &s.Expire, &s.Provider, &s.ProviderUID,
		&s.ProviderTokens, &s.Factors, &s.IP, &s.UserAgent}
}

func (r *sessionRow) session() tokenstore.Session {
	s := r.s
	s.CreatedAt, s.UpdatedAt, s.Expire = s.CreatedAt.UTC(), s.UpdatedAt.UTC(), s.Expire.UTC()
	return s
}

// sessionArgs are s's values in sessionColumns order.
func sessionArgs(s tokenstore.Session) []any {
	return []any{s.ID, s.UserID, s.Hash, s.CreatedAt, s.UpdatedAt, s.Expire, s.Provider, s.ProviderUID,
		s.ProviderTokens, s.Factors, s.IP, s.UserAgent}
}

// queueEvict queues the session cap's eviction, after the statement that
// stored the session whose hash is hash; a negative max is no cap.
func queueEvict(t *txn, userID string, max int, hash []byte) {
	if max >= 0 {
		t.queue(qSessionEvict, userID, max, hash)
	}
}

// CreateSession implements tokenstore.Store, in one round trip: BEGIN,
// the user's row lock, the INSERT, the eviction beyond maxSessions,
// COMMIT.
func (s *Store) CreateSession(ctx context.Context, sess tokenstore.Session, maxSessions int) error {
	var stored bool
	err := s.write(ctx, "create session", func(t *txn) error {
		stored = false
		t.queue(qLockUser, sess.UserID)
		t.queue(qSessionInsert, sessionArgs(sess)...).Exec(func(tag pgconn.CommandTag) error {
			stored = tag.RowsAffected() == 1
			return nil
		})
		queueEvict(t, sess.UserID, maxSessions, sess.Hash)
		return nil
	})
	switch {
	case violates(err, ""):
		return tokenstore.ErrExists
	case err != nil:
		return err
	case !stored:
		return tokenstore.ErrUserNotFound
	}
	return nil
}

// SessionByHash implements tokenstore.Store: one SELECT joining the user.
func (s *Store) SessionByHash(ctx context.Context, userID string, hash []byte) (tokenstore.User, tokenstore.Session, error) {
	var (
		u     userRow
		sr    sessionRow
		found bool
	)
	err := s.read(ctx, "session by hash", func(t *txn) error {
		t.queue(qSessionByHash, userID, hash).QueryRow(func(row pgx.Row) error {
			err := row.Scan(append(u.dest(), sr.dest()...)...)
			if errors.Is(err, pgx.ErrNoRows) {
				return nil
			}
			found = err == nil
			return err
		})
		return nil
	})
	switch {
	case err != nil:
		return tokenstore.User{}, tokenstore.Session{}, err
	case !found:
		return tokenstore.User{}, tokenstore.Session{}, tokenstore.ErrSessionNotFound
	}
	return u.user(), sr.session(), nil
}

// queueSession queues a statement that reads one session into sess.
func queueSession(t *txn, sql string, sess *tokenstore.Session, found *bool, args ...any) {
	queueOne(t, sess, found, scanSession, sql, args...)
}

// Session implements tokenstore.Store: one SELECT by primary key.
func (s *Store) Session(ctx context.Context, userID, id string) (tokenstore.Session, error) {
	var (
		sess  tokenstore.Session
		found bool
	)
	err := s.read(ctx, "session", func(t *txn) error {
		queueSession(t, qSession, &sess, &found, userID, id)
		return nil
	})
	switch {
	case err != nil:
		return tokenstore.Session{}, err
	case !found:
		return tokenstore.Session{}, tokenstore.ErrSessionNotFound
	}
	return sess, nil
}

// Sessions implements tokenstore.Store.
func (s *Store) Sessions(ctx context.Context, userID string) ([]tokenstore.Session, error) {
	var out []tokenstore.Session
	err := s.read(ctx, "sessions", func(t *txn) error {
		queueRows(t, &out, scanSession, qSessions, userID)
		return nil
	})
	return out, err
}

// scanSession reads a row of sessionColumns.
func scanSession(row pgx.Row) (tokenstore.Session, error) {
	var r sessionRow
	err := row.Scan(r.dest()...)
	return r.session(), err
}

// UpdateSession implements tokenstore.Store: the session's row is read
// FOR NO KEY UPDATE, change runs, and the UPDATE travels with the COMMIT.
func (s *Store) UpdateSession(ctx context.Context, userID, id string, change func(*tokenstore.Session) error) (tokenstore.Session, error) {
	var out tokenstore.Session
	err := s.write(ctx, "update session", func(t *txn) error {
		var (
			sess  tokenstore.Session
			found bool
		)
		queueSession(t, qSessionLock, &sess, &found, userID, id)
		if err := t.send(); err != nil {
			return err
		}
		if !found {
			return tokenstore.ErrSessionNotFound
		}
		hash := sess.Hash
		if err := change(&sess); err != nil {
			return err
		}
		sess.ID, sess.UserID, sess.Hash = id, userID, hash
		t.queue(qSessionUpdate, sessionArgs(sess)...)
		out = sess
		return nil
	})
	if err != nil {
		return tokenstore.Session{}, err
	}
	return out, nil
}

// DeleteSession implements tokenstore.Store.
func (s *Store) DeleteSession(ctx context.Context, userID, id string) error {
	n, err := s.delete(ctx, "delete session", qSessionDelete, userID, id)
	if err == nil && n == 0 {
		return tokenstore.ErrSessionNotFound
	}
	return err
}

// DeleteSessions implements tokenstore.Store.
func (s *Store) DeleteSessions(ctx context.Context, userID string) (int, error) {
	n, err := s.delete(ctx, "delete sessions", qSessionsDelete, userID)
	return int(n), err
}

// delete runs one DELETE in a step of its own and reports how many rows
// went.
func (s *Store) delete(ctx context.Context, op, sql string, args ...any) (int64, error) {
	var n int64
	err := s.write(ctx, op, func(t *txn) error {
		t.queue(sql, args...).Exec(func(tag pgconn.CommandTag) error {
			n = tag.RowsAffected()
			return nil
		})
		return nil
	})
	return n, err
}
