package bolt

import (
	"context"
	"fmt"
	"runtime/debug"
	"sync/atomic"

	"go.etcd.io/bbolt"

	"github.com/handoffd/handoff/tokenstore"
)

// The states of a call. A call moves from queued to taken (the writer runs
// it) or to abandoned (its caller's ctx ended first), never both.
const (
	callQueued int32 = iota
	callTaken
	callAbandoned
)

// call is one Update waiting for the writer.
type call struct {
	ctx   context.Context
	fn    func(*bbolt.Tx) error
	state atomic.Int32
	done  chan error // buffered: the writer never blocks on an answer
}

// panicError carries a panic out of the writer to the caller's goroutine.
type panicError struct {
	value any
	stack []byte
}

func (p *panicError) Error() string {
	return fmt.Sprintf("bolt: update function panicked: %v\n%s", p.value, p.stack)
}

// submit queues fn for the writer and waits for its outcome.
func (s *buckets) submit(ctx context.Context, fn func(*bbolt.Tx) error) error {
	if s.closed.Load() {
		return tokenstore.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	c := &call{ctx: ctx, fn: fn, done: make(chan error, 1)}
	select {
	case s.queue <- c:
	case <-ctx.Done():
		return ctx.Err()
	case <-s.stop:
		return tokenstore.ErrClosed
	}
	var err error
	select {
	case err = <-c.done:
	case <-ctx.Done():
		if c.state.CompareAndSwap(callQueued, callAbandoned) {
			return ctx.Err()
		}
		err = <-c.done // taken: the outcome is on its way
	case <-s.loopDone:
		// The writer answers every call it took before it exits; one it
		// never took was left in the queue by a concurrent Close.
		select {
		case err = <-c.done:
		default:
			return tokenstore.ErrClosed
		}
	}
	if p, ok := err.(*panicError); ok {
		panic(p)
	}
	return err
}

// writer is the one goroutine that writes: it takes the first waiting
// call, drains whatever queued behind it, and commits them together.
func (s *buckets) writer() {
	defer close(s.loopDone)
	batch := make([]*call, 0, s.maxBatch)
	for {
		// Close wins over queued work, so it is never kept waiting
		// behind a busy queue.
		select {
		case <-s.stop:
			s.drainClosed()
			return
		default:
		}
		select {
		case <-s.stop:
			s.drainClosed()
			return
		case c := <-s.queue:
			batch = s.take(batch[:0], c)
		}
	drain:
		for len(batch) < s.maxBatch {
			select {
			case c := <-s.queue:
				batch = s.take(batch, c)
			default:
				break drain
			}
		}
		if len(batch) > 0 {
			s.run(batch)
		}
		clear(batch) // drop references to finished calls
	}
}

// take appends c to batch unless its caller has gone or its ctx has ended.
func (s *buckets) take(batch []*call, c *call) []*call {
	if !c.state.CompareAndSwap(callQueued, callTaken) {
		return batch // abandoned by its caller
	}
	if err := c.ctx.Err(); err != nil {
		c.done <- err
		return batch
	}
	return append(batch, c)
}

// drainClosed answers every queued call with ErrClosed.
func (s *buckets) drainClosed() {
	for {
		select {
		case c := <-s.queue:
			if c.state.CompareAndSwap(callQueued, callTaken) {
				c.done <- tokenstore.ErrClosed
			}
		default:
			return
		}
	}
}

// run commits batch in one transaction. A call whose fn fails is taken out
// and the rest run again; after they commit, each failed fn runs alone, so
// its own error (and only its) reaches its caller with its writes undone.
// A commit that fails (a full or failing disk) fails every call of its
// batch with ErrUnavailable and leaves the writer ready for the next one:
// bbolt has rolled it back, so nothing of it was written.
func (s *buckets) run(batch []*call) {
	var failed []*call
	for len(batch) > 0 {
		failIdx := -1
		fnErr, err := s.update(func(btx *bbolt.Tx) error {
			for i, c := range batch {
				if err := safeCall(c.fn, btx); err != nil {
					failIdx = i
					return err
				}
			}
			return nil
		})
		if fnErr != nil {
			c := batch[failIdx]
			if _, ok := fnErr.(*panicError); ok {
				c.done <- fnErr // its writes are rolled back; never run it again
			} else {
				failed = append(failed, c)
			}
			batch = append(batch[:failIdx], batch[failIdx+1:]...)
			continue
		}
		if err == nil {
			s.commits.Add(1)
			s.updates.Add(uint64(len(batch)))
		}
		for _, c := range batch {
			c.done <- err
		}
		break
	}
	for _, c := range failed {
		fnErr, err := s.update(func(btx *bbolt.Tx) error { return safeCall(c.fn, btx) })
		if fnErr != nil {
			err = fnErr
		} else if err == nil {
			s.commits.Add(1)
			s.updates.Add(1)
		}
		c.done <- err
	}
}

// update runs fn in a write transaction of its own and commits it. fnErr
// is fn's error (the transaction is rolled back); err is a failed begin or
// commit, as writeFailed returns it.
func (s *buckets) update(fn func(*bbolt.Tx) error) (fnErr, err error) {
	btx, err := s.db.Begin(true)
	if err != nil {
		return nil, s.writeFailed("begin", err)
	}
	if fnErr := fn(btx); fnErr != nil {
		_ = btx.Rollback()
		return fnErr, nil
	}
	if err := btx.Commit(); err != nil {
		return nil, s.writeFailed("commit", err)
	}
	s.wroteOK()
	return nil, nil
}

// safeCall runs fn, turning a panic into a *panicError.
func safeCall(fn func(*bbolt.Tx) error, btx *bbolt.Tx) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = &panicError{value: v, stack: debug.Stack()}
		}
	}()
	return fn(btx)
}
