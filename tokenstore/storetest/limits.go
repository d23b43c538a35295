package storetest

import (
	"sync"
	"testing"
	"time"

	"github.com/handoffd/handoff/tokenstore"
)

var limitTests = []test{
	{"Window", testLimitWindow},
	{"SharedByReplicas", testLimitShared},
	{"Swept", testLimitSwept},
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
