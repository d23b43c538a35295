package postgres

import (
	"context"

	"github.com/handoffd/handoff/tokenstore"
)

// Meta implements tokenstore.Store.
func (st *Store) Meta(ctx context.Context, fn func(tokenstore.MetaTx) error) error {
	return errNotImplemented
}

// metaTx is the core's named values inside Meta.
type metaTx struct{}

// Get implements tokenstore.MetaTx.
func (m *metaTx) Get(name string) ([]byte, error) { return nil, errNotImplemented }

// Put implements tokenstore.MetaTx.
func (m *metaTx) Put(name string, value []byte) error { return errNotImplemented }
