package postgres

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/handoffd/handoff/tokenstore"
)

// userColumns are handoff_users' columns in the order of userRow.dest and
// userArgs.
const userColumns = "id, name, email, phone, email_verification, phone_verification, status, labels, prefs, extra, created_at, updated_at, accessed_at"

// userColumnsOf is userColumns qualified by the table alias u, for joins.
const userColumnsOf = "u.id, u.name, u.email, u.phone, u.email_verification, u.phone_verification, u.status, u.labels, u.prefs, u.extra, u.created_at, u.updated_at, u.accessed_at"

const (
	qUserInsert = "INSERT INTO handoff_users (" + userColumns + ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
	qUser       = "SELECT " + userColumns + " FROM handoff_users WHERE id = $1"
	qUserLock   = qUser + " FOR NO KEY UPDATE"
	// qUserByEmail goes through the unique index on lower(email).
	qUserByEmail = "SELECT " + userColumns + " FROM handoff_users WHERE lower(email) = lower($1)"
	qUserUpdate  = "UPDATE handoff_users SET name = $2, email = $3, phone = $4, email_verification = $5, " +
		"phone_verification = $6, status = $7, labels = $8, prefs = $9, extra = $10, created_at = $11, updated_at = $12, accessed_at = $13 " +
		"WHERE id = $1"
	// qUserDelete takes the user's tokens, sessions and identities with
	// it (ON DELETE CASCADE).
	qUserDelete = "DELETE FROM handoff_users WHERE id = $1"
	// qUserCursor finds where ScanUsers resumes.
	qUserCursor = "SELECT created_at FROM handoff_users WHERE id = $1"
	// qUserPage reads a page of users after a (created_at, id) cursor,
	// through the index on (created_at, id).
	qUserPage = "SELECT " + userColumns + " FROM handoff_users WHERE (created_at, id) > ($1, $2) ORDER BY created_at, id LIMIT $3"
	// qUserFirstPage reads the first page.
	qUserFirstPage = "SELECT " + userColumns + " FROM handoff_users ORDER BY created_at, id LIMIT $1"
	// qLockUser locks a user's row against every other step of the user
	// (a mint, an exchange, a new session, its deletion) until the step
	// commits; a step queues it ahead of the statements that must see
	// the user's rows as that lock leaves them. See doc.go.
	qLockUser = "SELECT 1 FROM handoff_users WHERE id = $1 FOR NO KEY UPDATE"
)

// scanPage is how many users ScanUsers reads at a time.
const scanPage = 256

// userRow receives a row of userColumns.
type userRow struct {
	u            tokenstore.User
	email, phone *string
	accessed     *time.Time
}

// dest returns the scan destinations, in userColumns order.
func (r *userRow) dest() []any {
	u := &r.u
	return []any{&u.ID, &u.Name, &r.email, &r.phone, &u.EmailVerification, &u.PhoneVerification, &u.Status,
		&u.Labels, &u.Prefs, &u.Extra, &u.CreatedAt, &u.UpdatedAt, &r.accessed}
}

// user returns the row as the model's User.
func (r *userRow) user() tokenstore.User {
	u := r.u
	u.Email, u.Phone = deref(r.email), deref(r.phone)
	if r.accessed != nil {
		u.AccessedAt = r.accessed.UTC()
	}
	u.CreatedAt, u.UpdatedAt = u.CreatedAt.UTC(), u.UpdatedAt.UTC()
	return u
}

// userArgs are u's values in userColumns order. An empty email or phone
// is NULL, which the unique indexes skip.
func userArgs(u tokenstore.User) []any {
	return []any{u.ID, u.Name, nullText(u.Email), nullText(u.Phone), u.EmailVerification, u.PhoneVerification, u.Status,
		u.Labels, u.Prefs, u.Extra, u.CreatedAt, u.UpdatedAt, nullTime(u.AccessedAt)}
}

// scanUser reads a row of userColumns.
func scanUser(row pgx.Row) (tokenstore.User, error) {
	var r userRow
	err := row.Scan(r.dest()...)
	return r.user(), err
}

// queueUser queues a statement that reads one user into u, setting found.
func queueUser(t *txn, sql string, u *tokenstore.User, found *bool, args ...any) {
	queueOne(t, u, found, scanUser, sql, args...)
}

// CreateUser implements tokenstore.Store: one INSERT, whose unique
// indexes (id, lower(email), phone) refuse a user another one clashes with.
func (s *Store) CreateUser(ctx context.Context, u tokenstore.User) error {
	err := s.write(ctx, "create user", func(t *txn) error {
		t.queue(qUserInsert, userArgs(u)...)
		return nil
	})
	if violates(err, "") {
		return tokenstore.ErrUserExists
	}
	return err
}

// User implements tokenstore.Store.
func (s *Store) User(ctx context.Context, id string) (tokenstore.User, error) {
	return s.oneUser(ctx, "user", qUser, id)
}

// UserByEmail implements tokenstore.Store.
func (s *Store) UserByEmail(ctx context.Context, email string) (tokenstore.User, error) {
	if email == "" {
		return tokenstore.User{}, tokenstore.ErrUserNotFound
	}
	return s.oneUser(ctx, "user by email", qUserByEmail, email)
}

func (s *Store) oneUser(ctx context.Context, op, sql string, arg string) (tokenstore.User, error) {
	var (
		u     tokenstore.User
		found bool
	)
	err := s.read(ctx, op, func(t *txn) error {
		queueUser(t, sql, &u, &found, arg)
		return nil
	})
	switch {
	case err != nil:
		return tokenstore.User{}, err
	case !found:
		return tokenstore.User{}, tokenstore.ErrUserNotFound
	}
	return u, nil
}

// UpdateUser implements tokenstore.Store: the user's row is read FOR NO
// KEY UPDATE (one round trip), change runs, and the UPDATE travels with
// the COMMIT (another).
func (s *Store) UpdateUser(ctx context.Context, id string, change func(*tokenstore.User) error) (tokenstore.User, error) {
	var out tokenstore.User
	err := s.write(ctx, "update user", func(t *txn) error {
		var (
			u     tokenstore.User
			found bool
		)
		queueUser(t, qUserLock, &u, &found, id)
		if err := t.send(); err != nil {
			return err
		}
		if !found {
			return tokenstore.ErrUserNotFound
		}
		created := u.CreatedAt
		if err := change(&u); err != nil {
			return err
		}
		u.ID, u.CreatedAt = id, created
		t.queue(qUserUpdate, userArgs(u)...)
		out = u
		return nil
	})
	if violates(err, "") {
		return tokenstore.User{}, tokenstore.ErrUserExists
	}
	if err != nil {
		return tokenstore.User{}, err
	}
	return out, nil
}

// DeleteUser implements tokenstore.Store: one DELETE, which cascades to
// the user's tokens, sessions and identities. It waits for the user's
// row lock, so a step of the user in flight finishes first.
func (s *Store) DeleteUser(ctx context.Context, id string) error {
	n, err := s.delete(ctx, "delete user", qUserDelete, id)
	if err == nil && n == 0 {
		return tokenstore.ErrUserNotFound
	}
	return err
}

// ScanUsers implements tokenstore.Store: keyset pages of scanPage users
// in (created_at, id) order, each page one statement read whole before fn
// sees it, so no connection is held while fn runs.
func (s *Store) ScanUsers(ctx context.Context, after string, fn func(tokenstore.User) bool) error {
	var (
		at     time.Time
		cursor = after
	)
	if after != "" {
		found := false
		err := s.read(ctx, "scan users", func(t *txn) error {
			t.queue(qUserCursor, after).QueryRow(func(row pgx.Row) error {
				err := row.Scan(&at)
				if errors.Is(err, pgx.ErrNoRows) {
					return nil
				}
				found = err == nil
				return err
			})
			return nil
		})
		if err != nil {
			return err
		}
		if !found {
			return tokenstore.ErrCursorNotFound
		}
	}
	for {
		var page []tokenstore.User
		err := s.read(ctx, "scan users", func(t *txn) error {
			if cursor == "" {
				queueRows(t, &page, scanUser, qUserFirstPage, scanPage)
			} else {
				queueRows(t, &page, scanUser, qUserPage, at, cursor, scanPage)
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, u := range page {
			if !fn(u) {
				return nil
			}
		}
		if len(page) < scanPage {
			return nil
		}
		last := page[len(page)-1]
		at, cursor = last.CreatedAt, last.ID
	}
}

// nullText is s, or NULL when it is empty.
func nullText(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// nullTime is t, or NULL when it is zero.
func nullTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// deref is *p, or "" when p is nil.
func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}
