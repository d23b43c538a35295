package postgres

import (
	"context"

	"github.com/handoffd/handoff/tokenstore"
)

// CreateSession implements tokenstore.Store.
func (st *Store) CreateSession(ctx context.Context, s tokenstore.Session, maxSessions int) error {
	return errNotImplemented
}

// SessionByHash implements tokenstore.Store.
func (st *Store) SessionByHash(ctx context.Context, hash []byte) (tokenstore.User, tokenstore.Session, error) {
	return tokenstore.User{}, tokenstore.Session{}, errNotImplemented
}

// Session implements tokenstore.Store.
func (st *Store) Session(ctx context.Context, userID, id string) (tokenstore.Session, error) {
	return tokenstore.Session{}, errNotImplemented
}

// Sessions implements tokenstore.Store.
func (st *Store) Sessions(ctx context.Context, userID string) ([]tokenstore.Session, error) {
	return nil, errNotImplemented
}

// UpdateSession implements tokenstore.Store.
func (st *Store) UpdateSession(ctx context.Context, userID, id string, change func(*tokenstore.Session) error) (tokenstore.Session, error) {
	return tokenstore.Session{}, errNotImplemented
}

// DeleteSession implements tokenstore.Store.
func (st *Store) DeleteSession(ctx context.Context, userID, id string) error {
	return errNotImplemented
}

// DeleteSessions implements tokenstore.Store.
func (st *Store) DeleteSessions(ctx context.Context, userID string) (int, error) {
	return 0, errNotImplemented
}
