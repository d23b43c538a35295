package tokenstore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"
)

// DefaultStoreTimeout is the deadline of one store call when
// Options.StoreTimeout is zero.
const DefaultStoreTimeout = 5 * time.Second

// bounded is the store as the core calls it: every call gets a deadline
// of its own, so a request whose context has none still ends when the
// store stops answering (a stalled database, a silent network partition).
// A call cut off by that deadline, and not by its caller, is the store
// being unavailable: ErrUnavailable, which the daemon answers with 503
// and Retry-After.
type bounded struct {
	Store
	timeout time.Duration
}

func (b bounded) View(ctx context.Context, fn func(Tx) error) error {
	return b.call(ctx, func(ctx context.Context) error { return b.Store.View(ctx, fn) })
}

func (b bounded) Update(ctx context.Context, fn func(Tx) error) error {
	return b.call(ctx, func(ctx context.Context) error { return b.Store.Update(ctx, fn) })
}

func (b bounded) Sweep(ctx context.Context, now time.Time, limit int) (int, error) {
	var n int
	err := b.call(ctx, func(ctx context.Context) (err error) { n, err = b.Store.Sweep(ctx, now, limit); return err })
	return n, err
}

// call runs fn under the deadline.
func (b bounded) call(ctx context.Context, fn func(context.Context) error) error {
	bctx, cancel := context.WithTimeout(ctx, b.timeout)
	defer cancel()
	err := fn(bctx)
	if err != nil && ctx.Err() == nil && errors.Is(bctx.Err(), context.DeadlineExceeded) &&
		!errors.Is(err, ErrUnavailable) &&
		(errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded)) {
		return fmt.Errorf("%w: no answer within %s: %w", ErrUnavailable, b.timeout, err)
	}
	return err
}

// bound is the deadline of a store call the core makes outside View and
// Update (a Counter's), with the same meaning of its expiry.
func (c *Core) bound(ctx context.Context, fn func(context.Context) error) error {
	return c.store.(bounded).call(ctx, fn)
}
