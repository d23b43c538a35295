package postgres

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/handoffd/handoff/tokenstore"
)

// The token core on this store: what its hot paths cost in round trips,
// the exchange race across replicas, and throughput figures.

func newCore(tb testing.TB, s *Store) *tokenstore.Core {
	tb.Helper()
	c, err := tokenstore.New(context.Background(), s, tokenstore.Options{})
	if err != nil {
		tb.Fatalf("tokenstore.New: %v", err)
	}
	return c
}

func createUsers(tb testing.TB, c *tokenstore.Core, n int) []string {
	tb.Helper()
	ids := make([]string, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				u, err := c.CreateUser(context.Background(), tokenstore.NewUser{ID: fmt.Sprintf("user%05d", i), Email: fmt.Sprintf("u%d@example.com", i)})
				if err != nil {
					tb.Errorf("CreateUser: %v", err)
					return
				}
				ids[i] = u.ID
			}
		})
	}
	wg.Wait()
	if tb.Failed() {
		tb.FailNow()
	}
	return ids
}

// TestCoreRoundTrips pins what the core's hot steps cost on PostgreSQL:
// one round trip each, counted twice: by the store (Stats.RoundTrips, the
// batches it sends) and on the wire (pgproxy's Flights: the times the
// client spoke after the server had, on the store's one connection). The
// first round warms the connection's statement cache (pgx describes a
// statement new to a connection in a round trip of its own, once); the
// second is measured.
func TestCoreRoundTrips(t *testing.T) {
	p, s := proxiedStore(t, Options{MaxConns: 1, MinConns: 1})
	c := newCore(t, s)
	ctx := context.Background()
	uid := createUsers(t, c, 1)[0]
	for round := range 2 {
		measured := round == 1
		cost := func(name string, f func() error) {
			t.Helper()
			before, flights := s.Stats(), p.Flights()
			if err := f(); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			rt, wire := s.Stats().RoundTrips-before.RoundTrips, p.Flights()-flights
			if !measured {
				return
			}
			t.Logf("%s: %d round trip(s) counted by the store, %d on the wire", name, rt, wire)
			if rt != 1 || wire != 1 {
				t.Errorf("%s: %d round trips counted by the store, %d on the wire; want 1", name, rt, wire)
			}
		}
		var secret, cred string
		var sess tokenstore.Session
		cost("mint", func() (err error) {
			_, secret, err = c.Mint(ctx, tokenstore.MintRequest{UserID: uid})
			return err
		})
		cost("exchange", func() (err error) {
			sess, cred, err = c.Exchange(ctx, uid, secret, tokenstore.Client{})
			return err
		})
		cost("exchange of a used secret (a failure)", func() error {
			_, _, err := c.Exchange(ctx, uid, secret, tokenstore.Client{})
			if !errors.Is(err, tokenstore.ErrInvalidToken) {
				return fmt.Errorf("second exchange = %v", err)
			}
			return nil
		})
		cost("authenticate (SessionByHash)", func() error {
			_, got, err := c.Authenticate(ctx, cred)
			if err == nil && got.ID != sess.ID {
				err = fmt.Errorf("authenticated session %s, want %s", got.ID, sess.ID)
			}
			return err
		})
		cost("session", func() error {
			_, err := c.SessionByID(ctx, uid, sess.ID)
			return err
		})
		cost("sign-in of a known identity, with a token", func() error {
			// The first round's sign-in links the identity (more round
			// trips, not measured); the second finds it.
			id := tokenstore.Identity{Provider: "oidc", Subject: "subject-1", Email: "rt@example.com", EmailVerified: true}
			res, _, _, err := c.SignIn(ctx, id, tokenstore.LinkPolicy{Create: true}, &tokenstore.MintRequest{})
			if err == nil && (!res.Minted || res.Created == measured) {
				err = fmt.Errorf("sign-in: minted %v, created %v", res.Minted, res.Created)
			}
			return err
		})
		cost("create session", func() error {
			_, _, err := c.CreateSession(ctx, uid, "test", tokenstore.Client{})
			return err
		})
		for range tokenstore.DefaultMaxSessions {
			if _, _, err := c.CreateSession(ctx, uid, "test", tokenstore.Client{}); err != nil {
				t.Fatal(err)
			}
		}
		_, secret, err := c.Mint(ctx, tokenstore.MintRequest{UserID: uid})
		if err != nil {
			t.Fatal(err)
		}
		cost("exchange evicting the oldest session", func() error {
			_, _, err := c.Exchange(ctx, uid, secret, tokenstore.Client{})
			return err
		})
		ss, err := c.ListSessions(ctx, uid)
		if err != nil || len(ss) != tokenstore.DefaultMaxSessions {
			t.Fatalf("sessions after the cap = %d, %v", len(ss), err)
		}
	}
}

// TestCoreExchangeOnce races exchanges of one secret through two stores
// (two daemons on one database): exactly one wins, the others get
// ErrInvalidToken and nothing else, every round.
func TestCoreExchangeOnce(t *testing.T) {
	schema := freshSchema(t)
	a, b := openSchema(t, schema, Options{}), openSchema(t, schema, Options{})
	ca, cb := newCore(t, a), newCore(t, b)
	ctx := context.Background()
	users := createUsers(t, ca, 4)
	const racers, rounds = 32, 8
	for r := range rounds {
		uid := users[r%len(users)]
		_, secret, err := ca.Mint(ctx, tokenstore.MintRequest{UserID: uid})
		if err != nil {
			t.Fatal(err)
		}
		var wins atomic.Int32
		var wg sync.WaitGroup
		for i := range racers {
			c := ca
			if i%2 == 1 {
				c = cb
			}
			wg.Go(func() {
				_, _, err := c.Exchange(ctx, uid, secret, tokenstore.Client{})
				switch {
				case err == nil:
					wins.Add(1)
				case !errors.Is(err, tokenstore.ErrInvalidToken):
					t.Errorf("exchange: %v", err)
				}
			})
		}
		wg.Wait()
		if w := wins.Load(); w != 1 {
			t.Fatalf("round %d: %d winners", r, w)
		}
	}
	t.Logf("stats a: %+v", a.Stats())
	t.Logf("stats b: %+v", b.Stats())
}

// benchParallelism gives 64 goroutines on 2 CPUs (RunParallel runs
// parallelism*GOMAXPROCS of them).
func benchParallelism(b *testing.B) {
	b.SetParallelism(max(1, 64/max(1, testingProcs())))
}

func BenchmarkCoreMint(b *testing.B) {
	s := openTest(b)
	c := newCore(b, s)
	users := createUsers(b, c, 1000)
	ctx := context.Background()
	var next atomic.Int64
	benchParallelism(b)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			uid := users[next.Add(1)%int64(len(users))]
			if _, _, err := c.Mint(ctx, tokenstore.MintRequest{UserID: uid}); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	reportStats(b, s)
}

func BenchmarkCoreExchange(b *testing.B) {
	s := openTest(b)
	// Mints land on users at random, some more than the default cap of
	// live tokens: a cap of 100 keeps every secret exchangeable.
	c, err := tokenstore.New(context.Background(), s, tokenstore.Options{MaxOutstanding: tokenstore.MaxMaxOutstanding})
	if err != nil {
		b.Fatal(err)
	}
	users := createUsers(b, c, 1000)
	ctx := context.Background()
	type pair struct{ uid, secret string }
	pairs := make([]pair, b.N)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(b.N) {
					return
				}
				uid := users[rand.IntN(len(users))] // logins come in no particular order
				_, secret, err := c.Mint(ctx, tokenstore.MintRequest{UserID: uid})
				if err != nil {
					b.Error(err)
					return
				}
				pairs[i] = pair{uid, secret}
			}
		})
	}
	wg.Wait()
	next.Store(0)
	before := s.Stats()
	benchParallelism(b)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := next.Add(1) - 1
			p := pairs[i]
			if _, _, err := c.Exchange(ctx, p.uid, p.secret, tokenstore.Client{}); err != nil {
				b.Errorf("exchange %d of %d (%s): %v", i, b.N, p.uid, err)
				return
			}
		}
	})
	b.StopTimer()
	after := s.Stats()
	b.ReportMetric(float64(after.Retries-before.Retries)/float64(b.N), "retries/op")
	b.ReportMetric(float64(after.RoundTrips-before.RoundTrips)/float64(b.N), "roundtrips/op")
	b.ReportMetric(float64(after.Grouped-before.Grouped)/float64(b.N), "grouped/op")
}

func reportStats(b *testing.B, s *Store) {
	st := s.Stats()
	b.ReportMetric(float64(st.Retries)/float64(b.N), "retries/op")
}

func testingProcs() int { return runtime.GOMAXPROCS(0) }
