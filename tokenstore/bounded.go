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

// call runs one store step under the core's deadline and tells Observe
// of it. A step cut off by that deadline, and not by its caller, is the
// store being unavailable: ErrUnavailable, which the daemon answers with
// 503 and Retry-After. Every store call the core makes goes through here,
// so a request whose context has no deadline still ends when the store
// stops answering (a stalled database, a silent network partition).
func (c *Core) call(ctx context.Context, step string, fn func(context.Context) error) error {
	start := time.Now()
	bctx, cancel := context.WithTimeout(ctx, c.opts.StoreTimeout)
	defer cancel()
	err := fn(bctx)
	if err != nil && ctx.Err() == nil && errors.Is(bctx.Err(), context.DeadlineExceeded) &&
		!errors.Is(err, ErrUnavailable) &&
		(errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded)) {
		err = fmt.Errorf("%w: no answer within %s: %w", ErrUnavailable, c.opts.StoreTimeout, err)
	}
	if c.opts.Observe != nil {
		c.opts.Observe(step, time.Since(start), err)
	}
	return err
}
