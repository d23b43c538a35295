package postgres

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/handoffd/handoff/tokenstore"
)

// groupCap is the most steps one group carries in its transaction.
const groupCap = 32

// qLockUsers locks the rows of a group's users, in id order (the ids are
// COLLATE "C": Go's byte order), before any of its steps runs.
const qLockUsers = "SELECT 1 FROM handoff_users WHERE id = ANY($1::text[]) ORDER BY id FOR NO KEY UPDATE"

// The states of a member. A member moves from queued to taken (its group
// runs it) or to abandoned (its caller's ctx ended first), never both.
const (
	memberQueued int32 = iota
	memberTaken
	memberAbandoned
)

// member is a step waiting in a group: fn queues its statements, as it
// would alone, and fills its caller's result from their callbacks.
type member struct {
	ctx   context.Context
	user  string // the user whose row the step locks
	limit string // the route limit's key it counts, if any
	fn    func(*txn) error
	state atomic.Int32
	done  chan groupAnswer // buffered: the group never blocks on an answer
}

// groupAnswer is what became of a member's step in its group.
type groupAnswer struct {
	err   error
	again bool // the connection broke before anything could commit
	alone bool // the group committed nothing: run the step by itself
}

// group is the steps that will share one transaction.
type group struct{ members []*member }

// groups is the group open to new steps, if any: the one whose
// connection is still awaited.
type groups struct {
	mu   sync.Mutex
	open *group
}

// writeStep is write for a hot step (Mint, Exchange) that locks only
// user's rows, and the limit counter under limit ("" for none): it may
// share its transaction, round trip and COMMIT with other such steps
// (group commit; see doc.go). fn must only queue statements (no send),
// and set its results from their callbacks after resetting them.
func (s *Store) writeStep(ctx context.Context, op, user, limit string, fn func(*txn) error) error {
	return s.retry(ctx, op, true, fn, func() (error, bool) { return s.joinGroup(ctx, user, limit, fn) })
}

// joinGroup runs fn in the open group, or opens one: it waits for its
// group's outcome and says, as attempt does, whether to run fn again.
//
// A group is open while it waits for its turn (Options.Writers groups
// run at once) and for a connection of the pool: a step that finds both
// free runs at once, in a group of its own, so only steps that would
// have waited anyway wait for a group. The group's turn and connection
// are awaited by a goroutine of its own, so a caller whose ctx ends
// while queued answers at once.
func (s *Store) joinGroup(ctx context.Context, user, limit string, fn func(*txn) error) (error, bool) {
	m := &member{ctx: ctx, user: user, limit: limit, fn: fn, done: make(chan groupAnswer, 1)}
	s.groups.mu.Lock()
	g := s.groups.open
	opens := g == nil || len(g.members) >= groupCap
	if opens {
		g = &group{}
		s.groups.open = g
	}
	g.members = append(g.members, m)
	s.groups.mu.Unlock()
	if opens {
		go s.runGroup(g)
	}
	var a groupAnswer
	select {
	case a = <-m.done:
	case <-ctx.Done():
		if m.state.CompareAndSwap(memberQueued, memberAbandoned) {
			return deadline(ctx, fmt.Errorf("acquire connection: %w", ctx.Err())), false
		}
		a = <-m.done // taken: the outcome is on its way
	}
	if a.alone {
		s.groupAlone.Add(1)
		return s.attempt(ctx, true, fn)
	}
	return a.err, a.again
}

// runGroup waits for g's turn and a connection, closes g to new steps,
// and runs its steps that are still wanted in one transaction, one round
// trip: BEGIN, the lock of their users' rows, each step's statements, COMMIT.
//
// Deadlock freedom: a group first locks all its users' rows, in id order
// (qLockUsers), and then runs its steps in the order of their limit keys,
// so every group takes the user locks in one global order and, holding
// all of them, the limit counters in one global order. The other rows a
// step writes (its user's tokens and sessions) belong to a user whose
// row the group already holds, so only a step that holds that user's
// lock could want them. A step running alone locks one user, then that
// user's rows and at most one counter; Hit holds one counter. No chain of
// waits can then close into a cycle. (Were one to, through a lock this
// reasoning missed, PostgreSQL's deadlock detector would abort a
// transaction, and an aborted group runs step by step.)
//
// Two steps of one user run one after the other, in their order of
// arrival when they count the same limit (or none), and see each
// other's writes, as statements of one READ COMMITTED transaction: a
// token taken by the first is gone for the second, a session stored by
// the first counts against the cap of the second.
func (s *Store) runGroup(g *group) {
	actx, cancel := context.WithTimeout(context.Background(), s.timeout)
	var (
		c    *pgxpool.Conn
		aerr error
	)
	select {
	case s.writers <- struct{}{}:
		defer func() { <-s.writers }()
		c, aerr = s.pool.Acquire(actx)
	case <-actx.Done():
		aerr = actx.Err()
	}
	cancel()
	s.groups.mu.Lock()
	if s.groups.open == g {
		s.groups.open = nil
	}
	s.groups.mu.Unlock()
	live := g.members[:0]
	for _, m := range g.members {
		if m.state.CompareAndSwap(memberQueued, memberTaken) {
			live = append(live, m)
		}
	}
	switch {
	case aerr != nil:
		// Each step tries alone, under its own deadline.
		a := groupAnswer{alone: true}
		if s.closed.Load() {
			a = groupAnswer{err: tokenstore.ErrClosed}
		}
		for _, m := range live {
			m.done <- a
		}
		return
	case len(live) == 0:
		c.Release()
		return
	case len(live) == 1:
		// A step alone, as it ran before there were groups.
		m := live[0]
		s.steps.Add(1)
		err, end := s.exec(m.ctx, c, true, m.fn)
		m.done <- groupAnswer{err: err, again: end == endBroken}
		return
	}
	slices.SortStableFunc(live, func(a, b *member) int {
		return cmp.Or(strings.Compare(a.limit, b.limit), strings.Compare(a.user, b.user))
	})
	users := make([]string, 0, len(live))
	for _, m := range live {
		users = append(users, m.user)
	}
	slices.Sort(users)
	users = slices.Compact(users)

	ctx, cancel := context.WithDeadline(context.Background(), groupDeadline(live, s.timeout))
	defer cancel()
	s.steps.Add(uint64(len(live)))
	s.grouped.Add(uint64(len(live)))
	err, end := s.exec(ctx, c, true, func(t *txn) error {
		t.queue(qLockUsers, users)
		for _, m := range live {
			if err := m.fn(t); err != nil {
				return err
			}
		}
		return nil
	})
	var a groupAnswer
	switch {
	case err == nil:
	case end == endUnknown:
		// Every step of the group has the outcome of its COMMIT.
		s.unknowns.Add(uint64(len(live) - 1))
		a.err = err
	case end == endBroken:
		a.err, a.again = err, true
	default:
		// A statement failed, or nothing was sent in time: the whole
		// transaction rolled back, and each step runs again alone, to
		// its own outcome.
		a.alone = true
	}
	for _, m := range live {
		m.done <- a
	}
}

// groupDeadline is when a group that is sent now must be done: the
// latest of its steps' deadlines, and at most timeout from now. Once
// sent, the group runs to its end even for a step whose caller has gone.
func groupDeadline(live []*member, timeout time.Duration) time.Time {
	limit := time.Now().Add(timeout)
	var last time.Time
	for _, m := range live {
		d, ok := m.ctx.Deadline()
		if !ok || d.After(limit) {
			return limit
		}
		if d.After(last) {
			last = d
		}
	}
	return last
}
