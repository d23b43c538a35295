package storetest

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/handoffd/handoff/tokenstore"
)

var limitTests = []test{
	{"Window", testLimitWindow},
	{"SharedByReplicas", testLimitShared},
	{"Swept", testLimitSwept},
	{"InExchange", testLimitInExchange},
	{"InExchangeResets", testLimitInExchangeResets},
	{"InExchangeUnknownUser", testLimitInExchangeUnknownUser},
	{"InExchangeBurst", testLimitInExchangeBurst},
}

// hit counts one hit on key and checks the count and the window's end.
func (e *env) hit(key string, period time.Duration, want int) {
	e.t.Helper()
	now := e.clock.Now()
	n, end, err := e.core.Hit(e.ctx, key, period, now)
	must(e.t, "Hit", err)
	if n != want {
		e.t.Fatalf("Hit(%s) at %s = %d, want %d", key, now.Format(time.RFC3339), n, want)
	}
	if wantEnd := now.Truncate(period).Add(period); !end.Equal(wantEnd) {
		e.t.Fatalf("Hit(%s) window ends %s, want %s", key, end, wantEnd)
	}
}

func testLimitWindow(t *testing.T, s *suite) {
	e := s.env(t, tokenstore.Options{})
	e.clock.Advance(e.clock.Now().Truncate(time.Hour).Add(time.Hour).Sub(e.clock.Now())) // the top of an hour
	e.hit("a", time.Hour, 1)
	e.hit("a", time.Hour, 2)
	e.hit("b", time.Hour, 1) // keys count apart
	e.clock.Advance(59 * time.Minute)
	e.hit("a", time.Hour, 3) // the same window
	e.clock.Advance(time.Minute)
	e.hit("a", time.Hour, 1) // a new one
	must(t, "ResetHits", e.core.ResetHits(e.ctx, "a"))
	e.hit("a", time.Hour, 1)
	must(t, "ResetHits of an unknown key", e.core.ResetHits(e.ctx, "nobody"))
}

// testLimitShared: two cores on one store (two daemons on one database)
// count the same hits, also when they hit at once.
func testLimitShared(t *testing.T, s *suite) {
	a := s.env(t, tokenstore.Options{})
	b := a.replica(tokenstore.Options{})
	const each = 25
	var wg sync.WaitGroup
	for _, e := range []*env{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				if _, _, err := e.core.Hit(e.ctx, "k", time.Hour, e.clock.Now()); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	a.hit("k", time.Hour, 2*each+1)
	b.hit("k", time.Hour, 2*each+2)
}

// testLimitSwept: a window's counter goes with the sweep once it has ended.
func testLimitSwept(t *testing.T, s *suite) {
	e := s.env(t, tokenstore.Options{})
	e.hit("k", time.Minute, 1)
	e.wantCounts(map[string]int{"limits": 1})
	e.clock.Advance(2 * time.Minute)
	coreSweep(t, e, 100, 1)
	e.wantCounts(map[string]int{"limits": 0})
	e.hit("k", time.Minute, 1)
}

// exchangeLimited runs one exchange under the route limit {key, an hour,
// max} and checks the count it reports; it returns the exchange's error.
func (e *env) exchangeLimited(user, secret, key string, max, wantHits int) error {
	e.t.Helper()
	now := e.clock.Now()
	_, cred, count, err := e.core.ExchangeLimited(e.ctx, user, secret, tokenstore.Client{},
		tokenstore.RouteLimit{Key: key, Period: time.Hour, Max: max})
	if err == nil && cred == "" {
		e.t.Fatal("ExchangeLimited succeeded without a credential")
	}
	if count.Hits != wantHits {
		e.t.Fatalf("ExchangeLimited(%s) counts %d hits, want %d (err %v)", user, count.Hits, wantHits, err)
	}
	if wantReset := now.Truncate(time.Hour).Add(time.Hour); !count.Reset.Equal(wantReset) {
		e.t.Fatalf("ExchangeLimited(%s) window ends %s, want %s", user, count.Reset, wantReset)
	}
	return err
}

// testLimitInExchange: the limit counted in the exchange's own step
// refuses past its maximum before the token is touched, writes nothing
// when it refuses, and lets the next window through.
func testLimitInExchange(t *testing.T, s *suite) {
	e := s.env(t, tokenstore.Options{})
	e.clock.Advance(e.clock.Now().Truncate(time.Hour).Add(time.Hour).Sub(e.clock.Now())) // the top of an hour
	e.user("u1")
	_, secret := e.mint("u1")
	for hits := 1; hits <= 3; hits++ {
		wantIs(t, "a wrong guess", e.exchangeLimited("u1", "0000000", "k", 3, hits), tokenstore.ErrInvalidToken)
	}
	e.wantCounts(map[string]int{"limits": 1, "tokens": 1})
	for range 2 { // the right secret past the limit: refused, and nothing written
		wantIs(t, "the right secret past the limit", e.exchangeLimited("u1", secret, "k", 3, 4), tokenstore.ErrRateLimited)
	}
	toks, err := e.core.ListTokens(e.ctx, "u1")
	must(t, "ListTokens", err)
	if len(toks) != 1 || toks[0].Attempts != 3 {
		t.Fatalf("after the refusals the user has %d tokens (%+v), want the one token with its 3 attempts", len(toks), toks)
	}
	wantIs(t, "a guess under another key", e.exchangeLimited("u1", "0000000", "other", 3, 1), tokenstore.ErrInvalidToken)
	e.clock.Advance(time.Hour) // a new window
	_, secret = e.mint("u1")
	must(t, "the right secret in the next window", e.exchangeLimited("u1", secret, "k", 3, 1))
	e.wantCounts(map[string]int{"limits": 1}) // "other"'s counter only
	// Without a limit, nothing is counted.
	_, secret = e.mint("u1")
	_, _, count, err := e.core.ExchangeLimited(e.ctx, "u1", "1111111", tokenstore.Client{}, tokenstore.RouteLimit{Key: "k", Period: time.Hour, Max: 0})
	wantIs(t, "a limit of 0", err, tokenstore.ErrRateLimited)
	if count.Hits != 1 {
		t.Fatalf("a limit of 0 counts %d hits, want 1", count.Hits)
	}
	_, _, err = e.core.Exchange(e.ctx, "u1", secret, tokenstore.Client{})
	must(t, "Exchange without a limit", err)
}

// testLimitInExchangeResets: a success forgets the failures before it.
func testLimitInExchangeResets(t *testing.T, s *suite) {
	e := s.env(t, tokenstore.Options{})
	e.user("u1")
	_, secret := e.mint("u1")
	wantIs(t, "a wrong guess", e.exchangeLimited("u1", "0000000", "k", 3, 1), tokenstore.ErrInvalidToken)
	wantIs(t, "a wrong guess", e.exchangeLimited("u1", "0000000", "k", 3, 2), tokenstore.ErrInvalidToken)
	must(t, "the right secret", e.exchangeLimited("u1", secret, "k", 3, 3))
	e.wantCounts(map[string]int{"limits": 0})
	wantIs(t, "a wrong guess after the success", e.exchangeLimited("u1", "0000000", "k", 3, 1), tokenstore.ErrInvalidToken)
	e.hit("k", time.Hour, 2) // the same counter Hit keeps
}

// testLimitInExchangeUnknownUser: guesses at a user that does not exist
// count like any others.
func testLimitInExchangeUnknownUser(t *testing.T, s *suite) {
	e := s.env(t, tokenstore.Options{})
	for hits := 1; hits <= 2; hits++ {
		wantIs(t, "a guess at nobody", e.exchangeLimited("nobody", "0000000", "k", 2, hits), tokenstore.ErrInvalidToken)
	}
	wantIs(t, "a guess at nobody past the limit", e.exchangeLimited("nobody", "0000000", "k", 2, 3), tokenstore.ErrRateLimited)
}

// testLimitInExchangeBurst: a parallel burst of wrong guesses at one user
// gets exactly the limit's maximum of them to the token; the rest are
// refused, and the user's token has faced exactly that many guesses.
func testLimitInExchangeBurst(t *testing.T, s *suite) {
	const burst, max = 32, 5
	e := s.env(t, tokenstore.Options{MaxAttempts: 100})
	e.user("u1")
	_, secret := e.mint("u1")
	errs := make([]error, burst)
	race(burst, func(i int) {
		_, _, _, errs[i] = e.core.ExchangeLimited(e.ctx, "u1", "0000000", tokenstore.Client{},
			tokenstore.RouteLimit{Key: "k", Period: time.Hour, Max: max})
	})
	var guessed, limited int
	for i, err := range errs {
		switch {
		case errors.Is(err, tokenstore.ErrRateLimited):
			limited++
		case errors.Is(err, tokenstore.ErrInvalidToken):
			guessed++
		default:
			t.Fatalf("guess %d: %v", i, err)
		}
	}
	if guessed != max || limited != burst-max {
		t.Fatalf("of %d parallel guesses %d reached the token and %d were limited, want %d and %d", burst, guessed, limited, max, burst-max)
	}
	toks, err := e.core.ListTokens(e.ctx, "u1")
	must(t, "ListTokens", err)
	if len(toks) != 1 || toks[0].Attempts != max {
		t.Fatalf("the token faced %+v guesses, want %d", toks, max)
	}
	wantIs(t, "the right secret", e.exchangeLimited("u1", secret, "k", max, max+1), tokenstore.ErrRateLimited)
}
