package postgres

import (
	"context"

	"github.com/handoffd/handoff/tokenstore"
)

// CreateUser implements tokenstore.Store.
func (st *Store) CreateUser(ctx context.Context, u tokenstore.User) error {
	return errNotImplemented
}

// User implements tokenstore.Store.
func (st *Store) User(ctx context.Context, id string) (tokenstore.User, error) {
	return tokenstore.User{}, errNotImplemented
}

// UserByEmail implements tokenstore.Store.
func (st *Store) UserByEmail(ctx context.Context, email string) (tokenstore.User, error) {
	return tokenstore.User{}, errNotImplemented
}

// UpdateUser implements tokenstore.Store.
func (st *Store) UpdateUser(ctx context.Context, id string, change func(*tokenstore.User) error) (tokenstore.User, error) {
	return tokenstore.User{}, errNotImplemented
}

// DeleteUser implements tokenstore.Store.
func (st *Store) DeleteUser(ctx context.Context, id string) error {
	return errNotImplemented
}

// ScanUsers implements tokenstore.Store.
func (st *Store) ScanUsers(ctx context.Context, after string, fn func(tokenstore.User) bool) error {
	return errNotImplemented
}
