package postgres

import (
	"context"
	"time"

	"github.com/handoffd/handoff/tokenstore"
)

// Mint implements tokenstore.Store.
func (st *Store) Mint(ctx context.Context, t tokenstore.Token, keep int, now time.Time) error {
	return errNotImplemented
}

// Exchange implements tokenstore.Store.
func (st *Store) Exchange(ctx context.Context, x tokenstore.Exchange) (tokenstore.ExchangeResult, error) {
	return tokenstore.ExchangeResult{}, errNotImplemented
}

// Tokens implements tokenstore.Store.
func (st *Store) Tokens(ctx context.Context, userID string) ([]tokenstore.Token, error) {
	return nil, errNotImplemented
}
