package bolt

import (
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/handoffd/handoff/tokenstore"
)

// writeBytes is what this process has sent to storage so far
// (/proc/self/io write_bytes), or -1 where that is not known.
func writeBytes() int64 {
	raw, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, "write_bytes: "); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err == nil {
				return n
			}
		}
	}
	return -1
}

// exchangeLoad is a store with signed-in users and a pool of tokens
// minted ahead, to be exchanged as handoff bench's exchange scenario
// does: 64 clients, tokens of random users in the order minted.
type exchangeLoad struct {
	store   *Store
	core    *tokenstore.Core
	users   []string
	tokens  []string // secrets, users[i%len] ... see owner
	owner   []int
	clients int
}

// newExchangeLoad preloads users signed-in users (each with a session and
// a token) and mints pool tokens ahead.
func newExchangeLoad(tb testing.TB, users, pool int) *exchangeLoad {
	tb.Helper()
	ctx := context.Background()
	st, err := Open(filepath.Join(tb.TempDir(), "handoff.db"), Options{})
	must(tb, err)
	tb.Cleanup(func() { _ = st.Close() })
	core, err := tokenstore.New(ctx, st, tokenstore.Options{})
	must(tb, err)
	l := &exchangeLoad{store: st, core: core, clients: 64, users: make([]string, users)}
	must(tb, core.LoadSignedIn(ctx, users, "bench", tokenstore.Client{}, func(i int, s tokenstore.SignedIn) { l.users[i] = s.UserID }))
	l.tokens, l.owner = make([]string, pool), make([]int, pool)
	perm := rand.Perm(pool)
	l.run(tb, pool, func(i int) error {
		u := perm[i] % users
		_, secret, err := core.Mint(ctx, tokenstore.MintRequest{UserID: l.users[u]})
		l.tokens[i], l.owner[i] = secret, u
		return err
	})
	return l
}

// run calls op(0..n-1) from l.clients goroutines.
func (l *exchangeLoad) run(tb testing.TB, n int, op func(i int) error) {
	tb.Helper()
	var (
		next atomic.Int64
		wg   sync.WaitGroup
		fail atomic.Value
	)
	for range l.clients {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				if err := op(i); err != nil {
					fail.CompareAndSwap(nil, err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err, _ := fail.Load().(error); err != nil {
		tb.Fatal(err)
	}
}

// exchangeAll exchanges the pool and reports the bytes written, the
// commits and the time it took.
func (l *exchangeLoad) exchangeAll(tb testing.TB) (bytes int64, commits uint64, took time.Duration) {
	tb.Helper()
	ctx := context.Background()
	w0, c0, t0 := writeBytes(), l.store.Stats().Commits, time.Now()
	l.run(tb, len(l.tokens), func(i int) error {
		_, _, err := l.core.Exchange(ctx, l.users[l.owner[i]], l.tokens[i], tokenstore.Client{})
		return err
	})
	return writeBytes() - w0, l.store.Stats().Commits - c0, time.Since(t0)
}

// BenchmarkExchangeWrites measures what handoff bench's exchange scenario
// costs the file: bytes written per exchange (write_bytes of
// /proc/self/io, fsync'd commits included), at 10,000 signed-in users.
func BenchmarkExchangeWrites(b *testing.B) {
	l := newExchangeLoad(b, 10000, min(max(b.N, 1000), 40000))
	b.ResetTimer()
	written, commits, took := l.exchangeAll(b)
	n := float64(len(l.tokens))
	b.ReportMetric(float64(written)/n, "bytes/exchange")
	b.ReportMetric(n/float64(commits), "exchanges/commit")
	b.ReportMetric(n/took.Seconds(), "exchanges/s")
}
