package postgres

import (
	"context"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/handoffd/handoff/tokenstore"
)

// Interface guards of the optional capabilities.
var _ tokenstore.Loader = (*Store)(nil)

// Load implements tokenstore.Loader: the users, then their sessions and
// tokens, each copied in with COPY, in one transaction.
func (s *Store) Load(ctx context.Context, users []tokenstore.User, sessions []tokenstore.Session, tokens []tokenstore.Token) error {
	copies := []struct {
		table, columns string
		n              int
		row            func(i int) []any
	}{
		{"handoff_users", userColumns, len(users), func(i int) []any { return userArgs(users[i]) }},
		{"handoff_sessions", sessionColumns, len(sessions), func(i int) []any { return sessionArgs(sessions[i]) }},
		{"handoff_tokens", tokenColumns, len(tokens), func(i int) []any { return tokenArgs(tokens[i]) }},
	}
	return s.write(ctx, "load", func(t *txn) error {
		// COPY needs the transaction open before it: BEGIN goes now.
		t.queue("SELECT 1")
		if err := t.send(); err != nil {
			return err
		}
		for _, c := range copies {
			if c.n == 0 {
				continue
			}
			t.s.roundTrips.Add(1)
			_, err := t.conn.CopyFrom(t.ctx, pgx.Identifier{c.table}, strings.Split(c.columns, ", "), pgx.CopyFromSlice(c.n, func(i int) ([]any, error) {
				return c.row(i), nil
			}))
			if err != nil {
				t.err = err
				return err
			}
		}
		return nil
	})
}
