package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/handoffd/handoff/tokenstore"
)

// The statements every step shares. Table names are unqualified: the
// pool's search_path (Options.Schema) says where they live. Each statement
// is prepared once per connection by pgx's statement cache.
const (
	// READ COMMITTED: every statement of a step sees what committed
	// before it began, and the row locks (FOR UPDATE, DELETE, ON
	// CONFLICT) order the steps that touch one row; see doc.go.
	qBegin  = "BEGIN ISOLATION LEVEL READ COMMITTED"
	qCommit = "COMMIT"
	// qReadOnly is Ping's statement: on for a standby and for a server
	// or database set read-only.
	qReadOnly = "SELECT current_setting('transaction_read_only')"
)

// txn is one step on one pooled connection. The statements it queues go
// out together, in one round trip, when it sends them: a write step's
// BEGIN goes with its first statement and its COMMIT with its last, so a
// step that needs no answer in between costs one round trip.
type txn struct {
	s     *Store
	ctx   context.Context
	conn  *pgx.Conn
	write bool

	batch      *pgx.Batch
	begun      bool  // BEGIN queued or sent
	committing bool  // COMMIT is in the batch sent last
	err        error // the first send that failed: the step is dead
}

// queue adds a statement to the next round trip, behind BEGIN in a write
// step when it is the first. Its results are read by the callback set on
// the returned QueuedQuery (QueryRow, Query, Exec).
func (t *txn) queue(sql string, args ...any) *pgx.QueuedQuery {
	if t.batch == nil {
		t.batch = &pgx.Batch{}
	}
	if t.write && !t.begun {
		t.batch.Queue(qBegin)
		t.begun = true
	}
	return t.batch.Queue(sql, args...)
}

// queueRows queues a statement whose rows become the records in *out,
// each scanned by scan.
func queueRows[T any](t *txn, out *[]T, scan func(pgx.Row) (T, error), sql string, args ...any) {
	t.queue(sql, args...).Query(func(rows pgx.Rows) error {
		*out = (*out)[:0]
		for rows.Next() {
			r, err := scan(rows)
			if err != nil {
				return err
			}
			*out = append(*out, r)
		}
		return rows.Err()
	})
}

// queueOne queues a statement that reads at most one record into *out,
// scanned by scan, and reports in *found whether there was one.
func queueOne[T any](t *txn, out *T, found *bool, scan func(pgx.Row) (T, error), sql string, args ...any) {
	t.queue(sql, args...).QueryRow(func(row pgx.Row) error {
		r, err := scan(row)
		if errors.Is(err, pgx.ErrNoRows) {
			*found = false
			return nil
		}
		*out, *found = r, err == nil
		return err
	})
}

// send runs what is queued in one round trip and calls the statements'
// callbacks. Once a send failed the step is dead and every later send
// returns that error.
func (t *txn) send() error {
	if t.err != nil {
		return t.err
	}
	b := t.batch
	t.batch = nil
	if b == nil || b.Len() == 0 {
		return nil
	}
	t.s.roundTrips.Add(1)
	if err := t.conn.SendBatch(t.ctx, b).Close(); err != nil {
		t.err = err
		return err
	}
	return nil
}

// commit sends what is queued with COMMIT, in one round trip.
func (t *txn) commit() error {
	if t.err != nil {
		return t.err
	}
	if !t.write || !t.begun || t.committing {
		return t.send()
	}
	if t.batch == nil {
		t.batch = &pgx.Batch{}
	}
	t.batch.Queue(qCommit)
	t.committing = true
	return t.send()
}

// read runs fn, which queues statements on a connection of the pool and
// sends them, outside any transaction: each statement is atomic by
// itself. What fn leaves queued is sent when it returns. A read whose
// connection broke runs again on another.
func (s *Store) read(ctx context.Context, op string, fn func(*txn) error) error {
	return s.run(ctx, op, false, fn)
}

// write runs fn in a READ COMMITTED transaction and commits it; what fn
// leaves queued goes with the COMMIT. A step that fn builds by queueing
// alone (no send of its own) is one round trip. fn may run more than once:
// when the connection broke before COMMIT was sent, the step runs again
// on another.
func (s *Store) write(ctx context.Context, op string, fn func(*txn) error) error {
	return s.run(ctx, op, true, fn)
}

func (s *Store) run(ctx context.Context, op string, write bool, fn func(*txn) error) error {
	return s.retry(ctx, op, write, fn, nil)
}

// retry runs fn until it did not lose its connection before it could
// commit, up to connRetries times. The first attempt is first when it is
// not nil (a step that may share a group, see group.go), the others run
// fn alone.
func (s *Store) retry(ctx context.Context, op string, write bool, fn func(*txn) error, first func() (error, bool)) error {
	if s.closed.Load() {
		return tokenstore.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	for lost := 1; ; lost++ {
		var (
			err   error
			again bool
		)
		if first != nil {
			err, again = first()
			first = nil
		} else {
			err, again = s.attempt(ctx, write, fn)
		}
		if !again || err == nil {
			if err != nil && !isOurs(err) {
				err = fmt.Errorf("postgres: %s: %w", op, err)
			}
			return err
		}
		// The connection broke before the step could commit: the pool's
		// other connections are suspect too (a restart breaks them all).
		s.suspect.Store(time.Now().Add(suspectWindow).UnixNano())
		if lost >= connRetries {
			return fmt.Errorf("postgres: %s: %w", op, unavailable(err))
		}
		s.connRetries.Add(1)
		t := time.NewTimer(time.Duration(lost) * 20 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("postgres: %s: %w", op, unavailable(err))
		case <-t.C:
		}
	}
}

// isOurs reports an error that is already the answer: a sentinel of the
// contract, or one already wrapped by this store.
func isOurs(err error) bool {
	for _, e := range []error{tokenstore.ErrUnavailable, tokenstore.ErrClosed, tokenstore.ErrNotFound,
		tokenstore.ErrExists, tokenstore.ErrUserNotFound, tokenstore.ErrUserExists, tokenstore.ErrSessionNotFound,
		tokenstore.ErrEmailExists, tokenstore.ErrKeyInvalid, tokenstore.ErrCursorNotFound,
		tokenstore.ErrIdentityUnlinked, tokenstore.ErrInvalidArgument} {
		if errors.Is(err, e) {
			return true
		}
	}
	return strings.HasPrefix(err.Error(), "postgres: ")
}

// attempt runs fn once on a connection of its own and says whether to run
// it again: only when the connection broke before anything could commit.
func (s *Store) attempt(ctx context.Context, write bool, fn func(*txn) error) (err error, again bool) {
	c, err := s.pool.Acquire(ctx)
	if err != nil {
		return s.acquireFailed(ctx, err)
	}
	s.steps.Add(1)
	err, end := s.exec(ctx, c, write, fn)
	return err, end == endBroken
}

// acquireFailed is the outcome of a step that got no connection (err), and
// whether to try again.
func (s *Store) acquireFailed(ctx context.Context, err error) (error, bool) {
	switch {
	case s.closed.Load():
		return tokenstore.ErrClosed, false
	case ctx.Err() == nil:
		return fmt.Errorf("acquire connection: %w", err), true
	}
	return deadline(ctx, fmt.Errorf("acquire connection: %w", err)), false
}

// How a transaction ended, beyond its error.
type txnEnd int

const (
	endDone    txnEnd = iota // committed, or err is the answer (nothing committed)
	endRefused               // the server refused a statement: it rolled back
	endBroken                // the connection broke before anything could commit
	endUnknown               // the COMMIT was sent and never answered: see commitUnknown
)

// exec runs fn on c, commits, and gives the connection back to the pool.
func (s *Store) exec(ctx context.Context, c *pgxpool.Conn, write bool, fn func(*txn) error) (error, txnEnd) {
	pid := c.Conn().PgConn().PID()
	t := &txn{s: s, ctx: ctx, conn: c.Conn(), write: write}
	err := fn(t)
	if err == nil {
		err = t.commit()
	}
	ended := false
	defer func() {
		if !ended {
			t.end(c)
		}
	}()
	if err == nil {
		return nil, endDone
	}
	terr := t.err
	var pgErr *pgconn.PgError
	switch {
	case terr == nil, !errors.Is(err, terr) && !serverDown(terr) && ctx.Err() == nil:
		// fn's own answer, or what it made of a statement's error.
		return err, endDone
	case errors.As(terr, &pgErr) && !serverDown(terr):
		// The server refused a statement: the transaction rolled back.
		return err, endRefused
	case t.committing && !pgconn.SafeToRetry(terr):
		// The COMMIT may have reached the server and its answer never
		// came back (the connection broke, or the deadline passed).
		s.unknowns.Add(1)
		// Settling takes a connection of the pool: this one goes back
		// first (it may be the only one).
		ended = true
		t.end(c)
		return s.commitUnknown(ctx, pid, terr), endUnknown
	case ctx.Err() == nil && c.Conn().IsClosed():
		// The connection broke before anything could commit.
		return terr, endBroken
	}
	return deadline(ctx, terr), endDone
}

// deadline is err of a step whose context ended: a deadline that passed
// while the database did not answer is an outage, not the caller giving
// up.
func deadline(ctx context.Context, err error) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) || serverDown(err) {
		return unavailable(err)
	}
	return err
}

// end returns the connection to the pool after rolling back what the step
// left open on the server (a failed statement leaves its transaction
// open; the pool closes a connection handed back inside a transaction).
// The outcome is decided by then, so the ROLLBACK runs in the background,
// off the caller's path, even when ctx has ended; Close waits for it.
func (t *txn) end(c *pgxpool.Conn) {
	t.batch = nil
	pc := t.conn.PgConn()
	if t.conn.IsClosed() || pc.TxStatus() == 'I' {
		c.Release()
		return
	}
	t.s.roundTrips.Add(1)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(t.ctx), 5*time.Second)
	go func() {
		defer cancel()
		if _, err := pc.Exec(ctx, "ROLLBACK").ReadAll(); err != nil {
			_ = pc.Close(ctx)
		}
		c.Release()
	}()
}

// Unique violations, and the constraint that raised them.
const codeUnique = "23505"

// violates reports whether err is a unique violation of constraint (any
// constraint when it is empty).
func violates(err error, constraint string) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == codeUnique && (constraint == "" || pgErr.ConstraintName == constraint)
}

// Ping checks, for readiness probes, that the server answers within the
// store's timeout and takes writes: a standby that a failover left behind
// a stale address, or a server set read-only (as some managed services
// do when their disk fills), answers a plain ping while every sign-in
// fails.
func (s *Store) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	var readOnly string
	err := s.read(ctx, "ping "+s.addr, func(t *txn) error {
		t.queue(qReadOnly).QueryRow(func(row pgx.Row) error { return row.Scan(&readOnly) })
		return nil
	})
	switch {
	case errors.Is(err, tokenstore.ErrClosed):
		return err
	case err != nil:
		return unavailable(err)
	}
	if readOnly != "off" {
		return fmt.Errorf("postgres: ping %s: %w: %w", s.addr, tokenstore.ErrUnavailable, errReadOnlyServer)
	}
	return nil
}

// errReadOnlyServer is the error of Ping on a server that takes no
// writes.
var errReadOnlyServer = errors.New("the server takes no writes (a hot standby, or default_transaction_read_only is on)")
