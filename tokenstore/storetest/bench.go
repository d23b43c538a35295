package storetest

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/handoffd/handoff/tokenstore"
)

// benchUsers is how many users the benchmarks spread their work over.
const benchUsers = 256

// Bench benchmarks the core's hot paths on the stores open returns (fresh
// and empty each time; closed when the benchmark ends), with the real
// clock and durable commits as the backend is configured:
//
//   - Mint, Exchange: one caller at a time (the latency of a lone commit);
//   - Mint64, Exchange64: 64 concurrent callers (what group commit is for);
//   - Authenticate: a session lookup, GOMAXPROCS concurrent callers;
//   - IssueJWT: signing alone.
//
// Each reports ops/s beside ns/op.
func Bench(b *testing.B, open func(b *testing.B) tokenstore.Store) {
	b.Run("Mint", func(b *testing.B) { benchMint(b, open, 1) })
	b.Run("Mint64", func(b *testing.B) { benchMint(b, open, 64) })
	b.Run("Exchange", func(b *testing.B) { benchExchange(b, open, 1) })
	b.Run("Exchange64", func(b *testing.B) { benchExchange(b, open, 64) })
	b.Run("Authenticate", func(b *testing.B) { benchAuthenticate(b, open) })
	b.Run("IssueJWT", func(b *testing.B) { benchIssueJWT(b, open) })
}

// benchEnv opens a store and a core on it with benchUsers users.
func benchEnv(b *testing.B, open func(b *testing.B) tokenstore.Store) (*tokenstore.Core, []string) {
	b.Helper()
	st := open(b)
	b.Cleanup(func() { _ = st.Close() })
	core, err := tokenstore.New(context.Background(), st, tokenstore.Options{})
	if err != nil {
		b.Fatalf("tokenstore.New: %v", err)
	}
	users := make([]string, benchUsers)
	parallel(b, benchUsers, 64, func(i int) error {
		users[i] = fmt.Sprintf("bench%04d", i)
		_, err := core.CreateUser(context.Background(), tokenstore.NewUser{ID: users[i], Email: users[i] + "@example.com"})
		return err
	})
	return core, users
}

// run calls op(0..b.N-1) with the timer on, from one goroutine or from
// about concurrency goroutines, and reports ops/s.
func run(b *testing.B, concurrency int, op func(i int) error) {
	b.Helper()
	b.ReportAllocs()
	b.ResetTimer()
	if concurrency <= 1 {
		for i := range b.N {
			if err := op(i); err != nil {
				b.Fatal(err)
			}
		}
	} else {
		b.SetParallelism((concurrency + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
		var next atomic.Int64
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := op(int(next.Add(1)) - 1); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
}

func benchMint(b *testing.B, open func(b *testing.B) tokenstore.Store, concurrency int) {
	core, users := benchEnv(b, open)
	ctx := context.Background()
	run(b, concurrency, func(i int) error {
		_, _, err := core.Mint(ctx, tokenstore.MintRequest{UserID: users[i%len(users)]})
		return err
	})
}

func benchExchange(b *testing.B, open func(b *testing.B) tokenstore.Store, concurrency int) {
	core, users := benchEnv(b, open)
	ctx := context.Background()
	secrets := make([]string, b.N)
	parallel(b, b.N, 64, func(i int) error {
		_, secret, err := core.Mint(ctx, tokenstore.MintRequest{UserID: users[i%len(users)], Length: 16})
		secrets[i] = secret
		return err
	})
	run(b, concurrency, func(i int) error {
		_, _, err := core.Exchange(ctx, users[i%len(users)], secrets[i], tokenstore.Client{})
		return err
	})
}

func benchAuthenticate(b *testing.B, open func(b *testing.B) tokenstore.Store) {
	core, users := benchEnv(b, open)
	ctx := context.Background()
	creds := make([]string, len(users))
	parallel(b, len(users), 64, func(i int) error {
		_, cred, err := core.CreateSession(ctx, users[i], "bench", tokenstore.Client{})
		creds[i] = cred
		return err
	})
	run(b, runtime.GOMAXPROCS(0), func(i int) error {
		_, _, err := core.Authenticate(ctx, creds[i%len(creds)])
		return err
	})
}

func benchIssueJWT(b *testing.B, open func(b *testing.B) tokenstore.Store) {
	core, users := benchEnv(b, open)
	s, _, err := core.CreateSession(context.Background(), users[0], "bench", tokenstore.Client{})
	if err != nil {
		b.Fatal(err)
	}
	run(b, 1, func(int) error {
		_, err := core.IssueJWT(s, 0)
		return err
	})
}
