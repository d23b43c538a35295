package storetest

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/handoffd/handoff/tokenstore"
)

// The size of the exchange race: rounds, each with this many concurrent
// exchangers of one secret.
const (
	raceRounds  = 200
	raceWorkers = 64
)

var concurrencyTests = []test{
	{"ExchangeOnce", testRaceExchangeOnce},
	{"ManyUsers", testRaceManyUsers},
	{"CreateUserOnce", testRaceCreateUser},
	{"KVUpdate", testRaceKVUpdate},
	{"MintCap", testRaceMintCap},
}

// RunConcurrency races concurrent callers against the stores open returns
// (fresh and empty each time; closed when the test ends): of 64 concurrent
// exchanges of one secret exactly one wins, in each of 200 rounds;
// concurrent mints and exchanges of different users all succeed; of
// concurrent creations of one email or id exactly one succeeds; concurrent
// KV updates lose nothing.
func RunConcurrency(t *testing.T, open func(t *testing.T) tokenstore.Store) {
	s := &suite{open: open}
	for _, tc := range concurrencyTests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, s) })
	}
}

// parallel runs fn(0..n-1) on workers goroutines and fails tb with the
// first error.
func parallel(tb testing.TB, n, workers int, fn func(i int) error) {
	tb.Helper()
	var (
		next  atomic.Int64
		wg    sync.WaitGroup
		once  sync.Once
		first error
	)
	for range min(workers, n) {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				if err := fn(i); err != nil {
					once.Do(func() { first = err })
					return
				}
			}
		})
	}
	wg.Wait()
	if first != nil {
		tb.Fatal(first)
	}
}

// race runs fn(0..n-1) on n goroutines released at once.
func race(n int, fn func(i int)) {
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			fn(i)
		})
	}
	close(start)
	wg.Wait()
}

func testRaceExchangeOnce(t *testing.T, s *suite) {
	e := s.env(t, tokenstore.Options{})
	users := make([]string, raceRounds)
	secrets := make([]string, raceRounds)
	parallel(t, raceRounds, 16, func(i int) error {
		users[i] = fmt.Sprintf("race%03d", i)
		if _, err := e.core.CreateUser(e.ctx, tokenstore.NewUser{ID: users[i]}); err != nil {
			return err
		}
		_, secret, err := e.core.Mint(e.ctx, tokenstore.MintRequest{UserID: users[i]})
		secrets[i] = secret
		return err
	})
	var (
		winners, rejected, badRounds int
		creds                        []string
	)
	errs := make([]error, raceWorkers)
	roundCreds := make([]string, raceWorkers)
	for round := range raceRounds {
		race(raceWorkers, func(w int) {
			_, roundCreds[w], errs[w] = e.core.Exchange(e.ctx, users[round], secrets[round], tokenstore.Client{})
		})
		won := 0
		for w, err := range errs {
			switch {
			case err == nil:
				won++
				creds = append(creds, roundCreds[w])
			case errors.Is(err, tokenstore.ErrInvalidToken):
				rejected++
			default:
				t.Errorf("round %d, exchanger %d: %v", round, w, err)
			}
		}
		winners += won
		if won != 1 {
			badRounds++
			t.Errorf("round %d: %d of %d exchanges of one secret succeeded, want exactly 1", round, won, raceWorkers)
			if badRounds >= 10 {
				t.Fatalf("stopping after %d bad rounds", badRounds)
			}
		}
	}
	t.Logf("%d rounds of %d concurrent exchanges of one secret: %d won, %d rejected, %d rounds without exactly one winner",
		raceRounds, raceWorkers, winners, rejected, badRounds)
	for i, cred := range creds {
		if _, _, err := e.core.Authenticate(e.ctx, cred); err != nil {
			t.Fatalf("the session of winner %d does not authenticate: %v", i, err)
		}
	}
}

// testRaceMintCap: concurrent mints for one user all succeed and leave
// exactly MaxOutstanding live tokens, never more.
func testRaceMintCap(t *testing.T, s *suite) {
	e := s.env(t, tokenstore.Options{})
	e.user("u1")
	errs := make([]error, raceWorkers)
	race(raceWorkers, func(i int) {
		_, _, errs[i] = e.core.Mint(e.ctx, tokenstore.MintRequest{UserID: "u1", Length: 32})
	})
	for i, err := range errs {
		must(t, fmt.Sprintf("Mint %d", i), err)
	}
	list, err := e.core.ListTokens(e.ctx, "u1")
	must(t, "ListTokens", err)
	if len(list) != tokenstore.DefaultMaxOutstanding {
		t.Fatalf("%d concurrent mints left %d live tokens, want %d", raceWorkers, len(list), tokenstore.DefaultMaxOutstanding)
	}
}

func testRaceManyUsers(t *testing.T, s *suite) {
	e := s.env(t, tokenstore.Options{MaxSessions: -1, MaxOutstanding: raceWorkers / 4})
	const perWorker = 4
	e.user("shared")
	users := make([]string, raceWorkers)
	for w := range users {
		users[w] = fmt.Sprintf("w%02d", w)
		e.user(users[w])
	}
	var failed atomic.Int64
	run := func(user string, length int) error {
		for range perWorker {
			_, secret, err := e.core.Mint(e.ctx, tokenstore.MintRequest{UserID: user, Length: length})
			if err != nil {
				return fmt.Errorf("Mint(%s): %w", user, err)
			}
			_, cred, err := e.core.Exchange(e.ctx, user, secret, tokenstore.Client{})
			if err != nil {
				return fmt.Errorf("Exchange(%s): %w", user, err)
			}
			if _, _, err := e.core.Authenticate(e.ctx, cred); err != nil {
				return fmt.Errorf("Authenticate(%s): %w", user, err)
			}
		}
		return nil
	}
	// Every worker has a user of its own; every fourth one also mints and
	// exchanges for one shared user at the same time.
	race(raceWorkers, func(w int) {
		if err := run(users[w], 0); err != nil {
			failed.Add(1)
			t.Error(err)
		}
		if w%4 == 0 {
			if err := run("shared", 16); err != nil {
				failed.Add(1)
				t.Error(err)
			}
		}
	})
	if n := failed.Load(); n > 0 {
		t.Fatalf("%d workers failed", n)
	}
	sessions, err := e.core.ListSessions(e.ctx, "shared")
	must(t, "ListSessions", err)
	if want := raceWorkers / 4 * perWorker; len(sessions) != want {
		t.Fatalf("shared user has %d sessions, want %d", len(sessions), want)
	}
}

func testRaceCreateUser(t *testing.T, s *suite) {
	e := s.env(t, tokenstore.Options{})
	const rounds = 20
	for round := range rounds {
		sameEmail := round%2 == 0
		ids := make([]string, raceWorkers)
		errs := make([]error, raceWorkers)
		race(raceWorkers, func(w int) {
			nu := tokenstore.NewUser{ID: fmt.Sprintf("r%02dw%02d", round, w), Email: fmt.Sprintf("r%02d@example.com", round)}
			if !sameEmail {
				nu = tokenstore.NewUser{ID: fmt.Sprintf("r%02d", round), Email: fmt.Sprintf("r%02dw%02d@example.com", round, w)}
			}
			ids[w] = nu.ID
			_, errs[w] = e.core.CreateUser(e.ctx, nu)
		})
		winner := -1
		for w, err := range errs {
			switch {
			case err == nil && winner >= 0:
				t.Fatalf("round %d: workers %d and %d both created a user", round, winner, w)
			case err == nil:
				winner = w
			case !errors.Is(err, tokenstore.ErrUserExists):
				t.Fatalf("round %d, worker %d: %v, want ErrUserExists", round, w, err)
			}
		}
		if winner < 0 {
			t.Fatalf("round %d: no worker created the user", round)
		}
		if sameEmail {
			u, err := e.core.FindUserByEmail(e.ctx, fmt.Sprintf("r%02d@example.com", round))
			must(t, "FindUserByEmail", err)
			if u.ID != ids[winner] {
				t.Fatalf("round %d: the email belongs to %q, want the winner %q", round, u.ID, ids[winner])
			}
		}
	}
	if _, total, err := e.core.ListUsers(e.ctx, tokenstore.UserQuery{}); err != nil || total != rounds {
		t.Fatalf("ListUsers total = %d, %v; want %d", total, err, rounds)
	}
	// No loser left an index entry behind.
	e.wantCounts(map[string]int{"users": rounds})
}

func testRaceKVUpdate(t *testing.T, s *suite) {
	e := s.env(t, tokenstore.Options{})
	kv := e.core.KV("counter")
	const each = 10
	var failed atomic.Int64
	race(raceWorkers, func(int) {
		for range each {
			err := kv.Update(context.Background(), "n", 0, func(old []byte) ([]byte, error) {
				n, _ := strconv.Atoi(string(old))
				return []byte(strconv.Itoa(n + 1)), nil
			})
			if err != nil {
				failed.Add(1)
				t.Error(err)
				return
			}
		}
	})
	if failed.Load() > 0 {
		t.FailNow()
	}
	wantKV(t, e, kv, "n", strconv.Itoa(raceWorkers*each))
}
