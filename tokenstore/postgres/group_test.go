package postgres

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/handoffd/handoff/tokenstore"
	"github.com/handoffd/handoff/tokenstore/postgres/pgproxy"
)

// Group commit (group.go): hot steps that wait for a connection share one
// transaction. The tests force groups by holding the pool's only
// connection while the steps queue, or by a pool far smaller than the
// steps in flight.

// groupStore opens a store of one connection on a fresh schema, with the
// users ids.
func groupStore(t *testing.T, ids ...string) *Store {
	t.Helper()
	s := openSchema(t, freshSchema(t), Options{MaxConns: 1, MinConns: 1})
	for _, id := range ids {
		if err := s.CreateUser(context.Background(), newUser(id)); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// hold takes the pool's only connection until the returned func is
// called, so that the steps started meanwhile queue in a group.
func hold(t *testing.T, s *Store) (release func()) {
	t.Helper()
	c, err := s.pool.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	release = func() { once.Do(c.Release) }
	t.Cleanup(release)
	return release
}

// waitQueued waits until the open group holds n steps, and returns it.
func waitQueued(t *testing.T, s *Store, n int) *group {
	t.Helper()
	return waitGroup(t, s, nil, n)
}

// waitGroup waits until an open group other than not holds n steps, and
// returns it.
func waitGroup(t *testing.T, s *Store, not *group, n int) *group {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; {
		s.groups.mu.Lock()
		g, got := s.groups.open, 0
		if g != nil && g != not {
			got = len(g.members)
		}
		s.groups.mu.Unlock()
		if got == n {
			return g
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d steps queued in the open group, want %d", got, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// testToken is token i of user, live for an hour from now.
func testToken(user string, i int, now time.Time) tokenstore.Token {
	return tokenstore.Token{ID: fmt.Sprintf("t%04d", i), UserID: user, Hash: []byte(fmt.Sprintf("tok%04d", i)),
		CreatedAt: now.Add(time.Duration(i) * time.Microsecond), Expire: now.Add(time.Hour)}
}

// testExchange exchanges token i of user for session j.
func testExchange(user string, i, j int, now time.Time, maxSessions int) tokenstore.Exchange {
	return tokenstore.Exchange{UserID: user, Hash: []byte(fmt.Sprintf("tok%04d", i)), Now: now, MaxAttempts: 1000,
		Session: testSession(user, j, now.Add(time.Duration(j)*time.Microsecond)), MaxSessions: maxSessions}
}

// TestGroupExchangeOnce: exchanges of the same tokens in one group, and
// in groups that race, give exactly one winner per token; the losers
// see the token gone (wrong secret) and count it on the user's others.
func TestGroupExchangeOnce(t *testing.T) {
	users := []string{"ua", "ub", "uc", "ud"}
	s := groupStore(t, users...)
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Microsecond)
	const tokens, tries = 4, 4 // per user: 16 tokens, 64 exchanges
	for _, u := range users {
		for i := range tokens {
			if err := s.Mint(ctx, testToken(u, i, now), 100, now); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, held := range []bool{true, false} {
		t.Run(fmt.Sprintf("held=%v", held), func(t *testing.T) {
			if !held {
				for _, u := range users {
					for i := range tokens {
						if err := s.Mint(ctx, testToken(u, i, now), 100, now); err != nil {
							t.Fatal(err)
						}
					}
				}
			}
			release := func() {}
			if held {
				release = hold(t, s)
			}
			before := s.Stats()
			var (
				mu   sync.Mutex
				wins = map[string]int{}
				wg   sync.WaitGroup
			)
			n := 0
			var first *group
			for try := range tries {
				for _, u := range users {
					for i := range tokens {
						x := testExchange(u, i, 1000*try+i, now, -1)
						x.Session.ID = fmt.Sprintf("%s-%d-%d-%v", u, i, try, held)
						x.Session.Hash = []byte(x.Session.ID)
						n++
						wg.Go(func() {
							res, err := s.Exchange(ctx, x)
							switch {
							case err != nil:
								t.Errorf("Exchange: %v", err)
							case res.OK:
								mu.Lock()
								wins[fmt.Sprintf("%s/%d", u, i)]++
								mu.Unlock()
							case res.Reason != tokenstore.ExchangeWrongSecret:
								t.Errorf("a losing exchange: %s, want %s", res.Reason, tokenstore.ExchangeWrongSecret)
							}
						})
					}
				}
				if held && try == 1 {
					first = waitQueued(t, s, groupCap) // full: the next step opens a group
				}
			}
			if held {
				waitGroup(t, s, first, n-groupCap)
				release()
			}
			wg.Wait()
			for _, u := range users {
				for i := range tokens {
					if w := wins[fmt.Sprintf("%s/%d", u, i)]; w != 1 {
						t.Errorf("token %d of %s exchanged %d times, want once", i, u, w)
					}
				}
			}
			st := s.Stats()
			if st.Grouped == before.Grouped {
				t.Errorf("no step shared a group")
			}
			if held && st.Grouped-before.Grouped != uint64(n) {
				t.Errorf("%d steps shared a group, want all %d", st.Grouped-before.Grouped, n)
			}
			t.Logf("%d exchanges, %d grouped, %d round trips", n, st.Grouped-before.Grouped, st.RoundTrips-before.RoundTrips)
		})
	}
}

// TestGroupCaps: the session cap and the mint cap hold exactly when one
// user's steps share groups, and the newest stay.
func TestGroupCaps(t *testing.T) {
	s := groupStore(t, "capped")
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Microsecond)
	const n, keep, maxSessions = 64, 3, 5
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			if err := s.Mint(ctx, testToken("capped", i, now), keep, now); err != nil {
				t.Errorf("Mint: %v", err)
			}
		})
	}
	wg.Wait()
	toks, err := s.Tokens(ctx, "capped")
	if err != nil {
		t.Fatal(err)
	}
	if len(toks) != keep+1 {
		t.Errorf("%d tokens after %d mints, want keep+1 = %d", len(toks), n, keep+1)
	}

	for i := range n {
		if err := s.Mint(ctx, testToken("capped", i, now), n, now); err != nil {
			t.Fatal(err)
		}
	}
	before := s.Stats()
	for i := range n {
		wg.Go(func() {
			res, err := s.Exchange(ctx, testExchange("capped", i, i, now, maxSessions))
			if err != nil || !res.OK {
				t.Errorf("Exchange: %+v, %v", res, err)
			}
		})
	}
	wg.Wait()
	wantNewestSessions(t, s, "capped", n, maxSessions)
	if s.Stats().Grouped == before.Grouped {
		t.Errorf("no step shared a group")
	}
}

// TestGroupOneUserInOrder: steps of one user in one group run in their
// order of arrival and see each other: a mint, then the exchange of that
// token, then a second exchange of it, which finds it gone.
func TestGroupOneUserInOrder(t *testing.T) {
	s := groupStore(t, "u1", "u0")
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Microsecond)
	release := hold(t, s)
	results := make([]tokenstore.ExchangeResult, 2)
	errs := make([]error, 3)
	var wg sync.WaitGroup
	wg.Go(func() { errs[0] = s.Mint(ctx, testToken("u1", 7, now), 10, now) })
	waitQueued(t, s, 1)
	for i := range 2 {
		wg.Go(func() { results[i], errs[1+i] = s.Exchange(ctx, testExchange("u1", 7, i, now, -1)) })
		waitQueued(t, s, 2+i)
	}
	// Another user, sorted before u1, in the same group.
	wg.Go(func() { _ = s.Mint(ctx, testToken("u0", 1, now), 10, now) })
	waitQueued(t, s, 4)
	release()
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if !results[0].OK {
		t.Errorf("the exchange after the mint: %+v, want OK", results[0])
	}
	if results[1].OK || results[1].Reason != tokenstore.ExchangeWrongSecret {
		t.Errorf("the second exchange of the token: %+v, want %s", results[1], tokenstore.ExchangeWrongSecret)
	}
	if g := s.Stats().Grouped; g != 4 {
		t.Errorf("%d steps grouped, want 4", g)
	}
}

// TestGroupFailureIsolated: a step that fails in its group (an exchange
// whose session hash another session holds) rolls the group back; each
// step then runs alone, the failing one to its own error, the others to
// success.
func TestGroupFailureIsolated(t *testing.T) {
	users := []string{"ua", "ub", "uc", "ud"}
	s := groupStore(t, users...)
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Microsecond)
	taken := testSession("ua", 999, now)
	if err := s.CreateSession(ctx, taken, -1); err != nil {
		t.Fatal(err)
	}
	const n = 16
	for i := range n {
		if err := s.Mint(ctx, testToken(users[i%len(users)], i, now), n, now); err != nil {
			t.Fatal(err)
		}
	}
	release := hold(t, s)
	errs := make([]error, n)
	results := make([]tokenstore.ExchangeResult, n)
	var wg sync.WaitGroup
	const bad = 5
	for i := range n {
		x := testExchange(users[i%len(users)], i, i, now, -1)
		if i == bad {
			x.Session.Hash = taken.Hash
		}
		wg.Go(func() { results[i], errs[i] = s.Exchange(ctx, x) })
	}
	// A mint of an unknown user in the group too: no failure of the
	// group, its own answer.
	var unknownErr error
	wg.Go(func() { unknownErr = s.Mint(ctx, testToken("nobody", 1, now), 1, now) })
	waitQueued(t, s, n+1)
	release()
	wg.Wait()
	for i := range n {
		switch {
		case i == bad && (errs[i] == nil || !violates(errs[i], "")):
			t.Errorf("the failing exchange: %+v, %v; want its unique violation", results[i], errs[i])
		case i != bad && (errs[i] != nil || !results[i].OK):
			t.Errorf("exchange %d: %+v, %v; want OK", i, results[i], errs[i])
		}
	}
	if !errors.Is(unknownErr, tokenstore.ErrUserNotFound) {
		t.Errorf("mint of an unknown user: %v, want ErrUserNotFound", unknownErr)
	}
	st := s.Stats()
	if st.GroupAlone != n+1 {
		t.Errorf("%d steps ran again alone, want all %d of the group", st.GroupAlone, n+1)
	}
}

// TestGroupCancelQueued: a step whose ctx ends while it waits in a group
// answers at once with its ctx's error, and never runs.
func TestGroupCancelQueued(t *testing.T) {
	s := groupStore(t, "u")
	now := time.Now().UTC().Truncate(time.Microsecond)
	release := hold(t, s)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Mint(ctx, testToken("u", 1, now), 10, now) }()
	// One more step, not cancelled, in the same group.
	other := make(chan error, 1)
	go func() { other <- s.Mint(context.Background(), testToken("u", 2, now), 10, now) }()
	waitQueued(t, s, 2)
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("cancelled mint: %v, want context.Canceled", err)
		}
	case <-time.After(time.Second):
		t.Fatal("a step cancelled while queued did not answer")
	}
	deadlineCtx, cancel2 := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel2()
	start := time.Now()
	err := s.Mint(deadlineCtx, testToken("u", 3, now), 10, now)
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, tokenstore.ErrUnavailable) {
		t.Errorf("mint past its deadline while queued: %v, want DeadlineExceeded and ErrUnavailable", err)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("a step whose deadline passed while queued answered after %s", took)
	}
	release()
	if err := <-other; err != nil {
		t.Fatal(err)
	}
	toks, err := s.Tokens(context.Background(), "u")
	if err != nil {
		t.Fatal(err)
	}
	if len(toks) != 1 || toks[0].ID != "t0002" {
		t.Errorf("tokens %+v, want only t0002 (the queued steps that gave up never ran)", toks)
	}
}

// TestGroupWriters: with connections free, the steps that come while
// Options.Writers groups run wait in a group too.
func TestGroupWriters(t *testing.T) {
	s := openSchema(t, freshSchema(t), Options{MaxConns: 4, MinConns: 4, Writers: 1})
	ctx := context.Background()
	if err := s.CreateUser(ctx, newUser("u")); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Microsecond)
	before := s.Stats()
	s.writers <- struct{}{} // the one writer is busy
	const n = 8
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			if err := s.Mint(ctx, testToken("u", i, now), n, now); err != nil {
				t.Errorf("Mint: %v", err)
			}
		})
	}
	waitQueued(t, s, n)
	if idle := s.pool.Stat().IdleConns(); idle == 0 {
		t.Errorf("no idle connection while the steps queued")
	}
	<-s.writers
	wg.Wait()
	if st := s.Stats(); st.Grouped != n || st.RoundTrips-before.RoundTrips != 1 {
		t.Errorf("%d steps grouped in %d round trips, want %d in 1", st.Grouped, st.RoundTrips-before.RoundTrips, n)
	}
	if toks, err := s.Tokens(ctx, "u"); err != nil || len(toks) != n {
		t.Errorf("%d tokens, %v; want %d", len(toks), err, n)
	}
}

// TestGroupCommitCut: a group whose connection is lost at its COMMIT
// gives each of its steps the outcome a lone step gets: cut after the
// COMMIT reached the server, every exchange committed and the core reads
// each session back; cut before, none did, each gets ErrUnavailable and
// each secret still exchanges.
func TestGroupCommitCut(t *testing.T) {
	for _, tc := range []struct {
		name      string
		cut       pgproxy.Cut
		committed bool
	}{
		{"after the commit", pgproxy.AfterCommit, true},
		{"before the commit", pgproxy.BeforeCommit, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, s := proxiedStore(t, Options{MaxConns: 1, MinConns: 1, Timeout: 2 * time.Second})
			ctx := context.Background()
			c, err := tokenstore.New(ctx, s, tokenstore.Options{StoreTimeout: 2 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			const n = 4
			secrets := make([]string, n)
			users := make([]string, n)
			for i := range n {
				u, err := c.CreateUser(ctx, tokenstore.NewUser{ID: fmt.Sprintf("cut%d", i)})
				if err != nil {
					t.Fatal(err)
				}
				users[i] = u.ID
				if _, secrets[i], err = c.Mint(ctx, tokenstore.MintRequest{UserID: u.ID}); err != nil {
					t.Fatal(err)
				}
			}
			release := hold(t, s)
			errs := make([]error, n)
			var wg sync.WaitGroup
			for i := range n {
				wg.Go(func() { _, _, errs[i] = c.Exchange(ctx, users[i], secrets[i], tokenstore.Client{}) })
			}
			waitQueued(t, s, n)
			p.CutAtCommit(tc.cut)
			release()
			wg.Wait()
			if p.Cuts() != 1 {
				t.Fatalf("the proxy cut %d connections at COMMIT, want 1", p.Cuts())
			}
			if st := s.Stats(); st.CommitUnknowns != n || st.Grouped != n {
				t.Errorf("%d commit outcomes unknown, %d steps grouped; want %d, %d", st.CommitUnknowns, st.Grouped, n, n)
			}
			for i := range n {
				switch {
				case tc.committed && errs[i] != nil:
					t.Errorf("exchange %d cut after its group's COMMIT: %v, want the session it committed", i, errs[i])
				case !tc.committed && !errors.Is(errs[i], tokenstore.ErrUnavailable):
					t.Errorf("exchange %d cut before its group's COMMIT: %v, want ErrUnavailable", i, errs[i])
				}
				_, _, err := c.Exchange(ctx, users[i], secrets[i], tokenstore.Client{})
				if tc.committed != errors.Is(err, tokenstore.ErrInvalidToken) || !tc.committed && err != nil {
					t.Errorf("the secret %d again: %v (committed before: %v)", i, err, tc.committed)
				}
			}
		})
	}
}

// TestGroupSharedLimitKeys: exchanges of several users counting one
// limit key, and keys of their own, in groups that race: no deadlock
// (no group aborted by PostgreSQL's detector and run again step by step)
// and every failure counted once.
func TestGroupSharedLimitKeys(t *testing.T) {
	users := []string{"ua", "ub", "uc", "ud"}
	s := openSchema(t, freshSchema(t), Options{MaxConns: 4, MinConns: 4, Writers: 4})
	ctx := context.Background()
	for _, u := range users {
		if err := s.CreateUser(ctx, newUser(u)); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now().UTC().Truncate(time.Microsecond)
	start := now.Truncate(time.Hour)
	const n = 256
	var wg sync.WaitGroup
	for i := range n {
		u := users[i%len(users)]
		key := "shared"
		if i%3 == 0 {
			key = "own:" + u
		}
		wg.Go(func() {
			x := testExchange(u, 9999, i, now, -1) // no such token: a failure
			x.Limit = &tokenstore.Limit{Key: key, Start: start, Expire: start.Add(time.Hour), Max: 1 << 30}
			res, err := s.Exchange(ctx, x)
			if err != nil || res.OK || res.Limited {
				t.Errorf("Exchange: %+v, %v; want a counted failure", res, err)
			}
		})
	}
	wg.Wait()
	if st := s.Stats(); st.GroupAlone != 0 {
		t.Errorf("%d steps ran again alone: a group was aborted (a deadlock?)", st.GroupAlone)
	}
	shared := 0
	for i := range n {
		if i%3 != 0 {
			shared++
		}
	}
	if got, err := s.Hit(ctx, "shared", start, start.Add(time.Hour)); err != nil || got != shared+1 {
		t.Errorf("the shared key counts %d (%v), want %d failures and this hit", got, err, shared+1)
	}
	if s.Stats().Grouped == 0 {
		t.Errorf("no step shared a group")
	}
}
