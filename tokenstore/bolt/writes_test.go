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
	tokens  []string // the secrets of the pool
	owner   []int    // tokens[i] is users[owner[i]]'s
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
func (l *exchangeLoad) exchangeAll(tb testing.TB) (w exchangeWrites) {
	tb.Helper()
	ctx := context.Background()
	w0, c0, s0, t0 := writeBytes(), l.store.Stats().Commits, l.store.b.db.Stats(), time.Now()
	l.run(tb, len(l.tokens), func(i int) error {
		_, _, err := l.core.Exchange(ctx, l.users[l.owner[i]], l.tokens[i], tokenstore.Client{})
		return err
	})
	s1 := l.store.b.db.Stats()
	return exchangeWrites{bytes: writeBytes() - w0, commits: l.store.Stats().Commits - c0,
		pages: s1.TxStats.GetPageCount() - s0.TxStats.GetPageCount(), took: time.Since(t0)}
}

// exchangeWrites is what exchanging a pool cost.
type exchangeWrites struct {
	bytes   int64  // written to storage (write_bytes)
	commits uint64 // commits of the writer
	pages   int64  // pages bbolt allocated for dirty nodes
	took    time.Duration
}

// BenchmarkExchangeWrites measures what handoff bench's exchange scenario
// costs the file: bytes written per exchange (write_bytes of
// /proc/self/io, fsync'd commits included), at 10,000 signed-in users.
func BenchmarkExchangeWrites(b *testing.B) {
	l := newExchangeLoad(b, 10000, min(max(b.N, 1000), 40000))
	b.ResetTimer()
	w := l.exchangeAll(b)
	n := float64(len(l.tokens))
	b.ReportMetric(float64(w.bytes)/n, "bytes/exchange")
	b.ReportMetric(float64(w.pages)/n, "pages/exchange")
	b.ReportMetric(n/float64(w.commits), "exchanges/commit")
	b.ReportMetric(n/w.took.Seconds(), "exchanges/s")
}
