package tokenstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
)

// The meta values that are secrets: sealed when the core has a Sealer.
const metaPepper = "pepper"

// metaSealed marks a store whose secrets have been sealed: from then on a
// plain secret in it is a forgery, not a value from before sealing.
const metaSealed = "sealed"

var metaSecrets = []string{metaPepper, metaSigningKeys}

// meta runs fn on the store's named values, under the core's deadline.
func (c *Core) meta(ctx context.Context, fn func(MetaTx) error) error {
	return c.call(ctx, "meta", func(ctx context.Context) error { return c.store.Meta(ctx, fn) })
}

// secretsOnce returns the secret meta values named in makers, creating
// each absent one with its maker, in one transaction. A value written in
// plain text before sealing existed is sealed in place by the same
// transaction, so of several replicas that start at once one migrates and
// the others read its result. Every value comes back in plain text.
func (c *Core) secretsOnce(ctx context.Context, makers map[string]func() ([]byte, error)) (map[string][]byte, error) {
	fresh := make(map[string][]byte, len(makers))
	for name, make := range makers {
		v, err := make()
		if err != nil {
			return nil, err
		}
		fresh[name] = v
	}
	var out map[string][]byte
	err := c.meta(ctx, func(tx MetaTx) error {
		out = make(map[string][]byte, len(makers))
		migrating, err := c.markSealed(tx)
		if err != nil {
			return err
		}
		for name := range makers {
			v, err := tx.Get(name)
			switch {
			case errors.Is(err, ErrNotFound):
				out[name] = fresh[name]
				if err := c.putSecret(tx, name, fresh[name]); err != nil {
					return err
				}
				continue
			case err != nil:
				return err
			}
			plain, err := c.openSecret(name, v, migrating)
			if err != nil {
				return err
			}
			out[name] = plain
			if c.opts.Sealer != nil && !isSealed(v) {
				if err := c.putSecret(tx, name, plain); err != nil {
					return err
				}
			}
		}
		return nil
	})
	return out, err
}

// markSealed reports whether the store's secrets were never sealed (so
// plain ones are from before sealing and may be migrated), and marks the
// store sealed when the core seals. A core without a Sealer on a sealed
// store gets ErrSealed.
func (c *Core) markSealed(tx MetaTx) (never bool, err error) {
	_, err = tx.Get(metaSealed)
	switch {
	case err == nil && c.opts.Sealer == nil:
		return false, fmt.Errorf("meta %s: %w", metaSealed, ErrSealed)
	case err == nil:
		return false, nil
	case !errors.Is(err, ErrNotFound):
		return false, err
	case c.opts.Sealer == nil:
		return true, nil
	}
	return true, tx.Put(metaSealed, []byte("1"))
}

// getSecret reads the secret meta value name in plain text.
func (c *Core) getSecret(tx MetaTx, name string) ([]byte, error) {
	v, err := tx.Get(name)
	if err != nil {
		return nil, err
	}
	return c.openSecret(name, v, false)
}

// openSecret opens the stored form v of the secret name. A plain v is
// taken as it is only without a Sealer, or while migrating: once a store
// is sealed, a plain secret in it was put there by someone else.
func (c *Core) openSecret(name string, v []byte, migrating bool) ([]byte, error) {
	switch {
	case !isSealed(v) && (c.opts.Sealer == nil || migrating):
		return bytes.Clone(v), nil
	case !isSealed(v):
		return nil, fmt.Errorf("meta %s: %w", name, ErrSealBroken)
	case c.opts.Sealer == nil:
		return nil, fmt.Errorf("meta %s: %w", name, ErrSealed)
	}
	plain, _, err := c.opts.Sealer.Open(placeMeta, []byte(name), v)
	if err != nil {
		return nil, fmt.Errorf("meta %s: %w", name, err)
	}
	return plain, nil
}

// putSecret stores the secret meta value name, sealed when the core has a
// Sealer.
func (c *Core) putSecret(tx MetaTx, name string, plain []byte) error {
	v := plain
	if c.opts.Sealer != nil {
		v = c.opts.Sealer.Seal(placeMeta, []byte(name), plain)
	}
	return tx.Put(name, v)
}

// ResealSecrets seals every secret the store holds under the Sealer's
// first key, in one transaction, so that the keys after it can leave the
// key file. It reports how many values were sealed again (those already
// under the first key are left as they are).
func (c *Core) ResealSecrets(ctx context.Context) (int, error) {
	if c.opts.Sealer == nil {
		return 0, errors.New("reseal: the core has no secrets key")
	}
	var n int
	err := c.meta(ctx, func(tx MetaTx) error {
		n = 0
		for _, name := range metaSecrets {
			v, err := tx.Get(name)
			switch {
			case errors.Is(err, ErrNotFound):
				continue
			case err != nil:
				return err
			}
			if !isSealed(v) {
				// New sealed every plain secret: this one came later.
				return fmt.Errorf("meta %s: %w", name, ErrSealBroken)
			}
			plain, current, err := c.opts.Sealer.Open(placeMeta, []byte(name), v)
			if err != nil {
				return fmt.Errorf("meta %s: %w", name, err)
			}
			if current {
				continue
			}
			if err := c.putSecret(tx, name, plain); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	return n, err
}

// HasSealedSecrets reports whether store holds a sealed secret: a store
// that does must never be opened with a new key, or every secret is lost.
func HasSealedSecrets(ctx context.Context, store Store) (bool, error) {
	found := false
	err := store.Meta(ctx, func(tx MetaTx) error {
		found = false
		for _, name := range metaSecrets {
			v, err := tx.Get(name)
			switch {
			case errors.Is(err, ErrNotFound):
				continue
			case err != nil:
				return err
			}
			found = found || isSealed(v)
		}
		_, err := tx.Get(metaSealed)
		found = found || err == nil
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		return err
	})
	return found, err
}
