package postgres

import (
	"context"
	"errors"

	"github.com/handoffd/handoff/tokenstore"
)

// errNotImplemented is the answer of the steps pg2b fills in its own
// files (identities.go, keys.go, kv.go, limits.go, sweep.go); this file
// goes when they do.
var errNotImplemented = errors.New("postgres: not implemented yet")

// Identity implements tokenstore.Store.
func (s *Store) Identity(ctx context.Context, provider, subject string) (tokenstore.Identity, error) {
	return tokenstore.Identity{}, errNotImplemented
}

// LinkIdentity implements tokenstore.Store.
func (s *Store) LinkIdentity(ctx context.Context, id tokenstore.Identity) (tokenstore.Identity, error) {
	return tokenstore.Identity{}, errNotImplemented
}

// SignIn implements tokenstore.Store.
func (s *Store) SignIn(ctx context.Context, in tokenstore.SignIn) (tokenstore.SignInResult, error) {
	return tokenstore.SignInResult{}, errNotImplemented
}

// Identities implements tokenstore.Store.
func (s *Store) Identities(ctx context.Context, userID string) ([]tokenstore.Identity, error) {
	return nil, errNotImplemented
}

