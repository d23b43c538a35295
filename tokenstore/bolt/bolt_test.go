package bolt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/handoffd/handoff/tokenstore"
	"github.com/handoffd/handoff/tokenstore/kvstore"
	"github.com/handoffd/handoff/tokenstore/kvstore/kvtest"
	"github.com/handoffd/handoff/tokenstore/storetest"
)

// openTB opens a fresh store in a temporary directory, closed when tb ends.
func openTB(tb testing.TB, opts Options) *Store {
	tb.Helper()
	s, err := Open(filepath.Join(tb.TempDir(), "data", "handoff.db"), opts)
	if err != nil {
		tb.Fatalf("Open: %v", err)
	}
	tb.Cleanup(func() { _ = s.Close() })
	return s
}

// openBTB opens a fresh store as openTB does and returns its buckets, for
// the tests of the backend under kvstore.
func openBTB(tb testing.TB, opts Options) *buckets {
	tb.Helper()
	return openTB(tb, opts).b
}

// dumping is a Store that shows the suites everything in its file.
type dumping struct{ *Store }

var _ storetest.Dumper = dumping{}

// Dump returns every key of every bucket in the file, the internal ones
// (the expiry index) included, with its value as stored (behind its
// expiry header). A bucket's name is the record's kind, except in
// user_data, whose records are "tokens" and "sessions" by the kind byte
// after their user's id.
func (d dumping) Dump(ctx context.Context) ([]storetest.Record, error) {
	var out []storetest.Record
	err := d.b.db.View(func(btx *bbolt.Tx) error {
		out = out[:0]
		return btx.ForEach(func(name []byte, b *bbolt.Bucket) error {
			return b.ForEach(func(k, v []byte) error {
				out = append(out, storetest.Record{Kind: recordKind(string(name), k), Key: bytes.Clone(k), Value: bytes.Clone(v)})
				return nil
			})
		})
	})
	return out, err
}

// recordKind names what key in bucket holds, for Dump.
func recordKind(bucket string, key []byte) string {
	if bucket != "user_data" {
		return bucket
	}
	if i := bytes.IndexByte(key, 0); i >= 0 && i+1 < len(key) {
		switch key[i+1] {
		case 't':
			return "tokens"
		case 's':
			return "sessions"
		}
	}
	return bucket
}

// openStore opens a fresh store for the suites.
func openStore(t *testing.T) tokenstore.Store { return dumping{openTB(t, Options{})} }

// TestBuckets runs kvstore's bucket conformance suite on the backend.
func TestBuckets(t *testing.T) {
	kvtest.Run(t, func(t *testing.T) kvstore.Buckets { return openBTB(t, Options{}) })
}

func TestConformance(t *testing.T) {
	storetest.Run(t, openStore,
		storetest.WithReopen(func(t *testing.T) func() tokenstore.Store {
			path := filepath.Join(t.TempDir(), "handoff.db")
			return func() tokenstore.Store {
				s, err := Open(path, Options{})
				if err != nil {
					t.Fatalf("Open: %v", err)
				}
				return dumping{s}
			}
		}))
}

func TestConcurrency(t *testing.T) {
	storetest.RunConcurrency(t, openStore)
}

func BenchmarkStore(b *testing.B) {
	storetest.Bench(b, func(b *testing.B) tokenstore.Store { return openTB(b, Options{}) })
}

func TestOpenLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "handoff.db")
	first, err := Open(path, Options{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer first.Close()
	for _, tc := range []struct {
		name    string
		timeout time.Duration
		want    time.Duration
	}{
		{"short timeout", 100 * time.Millisecond, 100 * time.Millisecond},
		{"default timeout", 0, DefaultTimeout},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			s, err := Open(path, Options{Timeout: tc.timeout})
			took := time.Since(start)
			if err == nil {
				s.Close()
				t.Fatal("a second Open of a held file succeeded")
			}
			if !errors.Is(err, ErrLocked) {
				t.Fatalf("err = %v, want ErrLocked", err)
			}
			if msg := err.Error(); !strings.Contains(msg, path+" is in use by another handoff process (a running daemon?)") {
				t.Fatalf("message %q does not name the file and the likely cause", msg)
			}
			if took < tc.want-100*time.Millisecond || took > tc.want+2*time.Second { // bbolt stops one 50ms retry early
				t.Fatalf("Open gave up after %s, want about %s", took, tc.want)
			}
		})
	}
	// Once the holder closes, the file opens.
	must(t, first.Close())
	s, err := Open(path, Options{Timeout: 100 * time.Millisecond})
	must(t, err)
	must(t, s.Close())
}

func TestOpenCreates(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b")
	path := filepath.Join(dir, "handoff.db")
	s, err := Open(path, Options{})
	must(t, err)
	defer s.Close()
	if s.Path() != path {
		t.Fatalf("Path = %q", s.Path())
	}
	for _, tc := range []struct {
		path string
		mode os.FileMode
	}{
		{dir, 0o700 | os.ModeDir},
		{filepath.Dir(dir), 0o700 | os.ModeDir},
		{path, 0o600},
	} {
		fi, err := os.Stat(tc.path)
		must(t, err)
		if fi.Mode() != tc.mode {
			t.Errorf("%s has mode %s, want %s", tc.path, fi.Mode(), tc.mode)
		}
	}
	if s.b.db.NoSync {
		t.Error("a store opened with default options does not sync its commits")
	}
	_, err = Open(dir, Options{}) // a directory is no store file
	if err == nil || errors.Is(err, ErrLocked) {
		t.Fatalf("Open of a directory: %v", err)
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// hold parks the writer inside an Update until release is called, and
// returns once the writer is parked. done reports the held Update's result.
func hold(t *testing.T, s *buckets) (release func(), done <-chan error) {
	t.Helper()
	entered := make(chan struct{})
	gate := make(chan struct{})
	errc := make(chan error, 1)
	var once sync.Once
	go func() {
		errc <- s.Update(context.Background(), func(kvstore.Tx) error {
			once.Do(func() { close(entered) })
			<-gate
			return nil
		})
	}()
	<-entered
	var releaseOnce sync.Once
	release = func() { releaseOnce.Do(func() { close(gate) }) }
	t.Cleanup(release)
	return release, errc
}

// waitQueued waits until n calls wait in the writer's queue.
func waitQueued(t *testing.T, s *buckets, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for len(s.queue) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d calls queued after 10s, want %d", len(s.queue), n)
		}
		time.Sleep(time.Millisecond)
	}
}

func put(key string) func(kvstore.Tx) error {
	return func(tx kvstore.Tx) error { return tx.Put("kv", []byte(key), []byte("v"), time.Time{}) }
}

func has(t *testing.T, s *buckets, key string) bool {
	t.Helper()
	err := s.View(context.Background(), func(tx kvstore.Tx) error {
		_, err := tx.Get("kv", []byte(key))
		return err
	})
	if err != nil && !errors.Is(err, tokenstore.ErrNotFound) {
		t.Fatal(err)
	}
	return err == nil
}

func TestGroupCommit(t *testing.T) {
	s := openBTB(t, Options{})
	before := s.stats()
	release, held := hold(t, s)
	const n = 64
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() { errs[i] = s.Update(context.Background(), put(fmt.Sprint(i))) })
	}
	waitQueued(t, s, n)
	release()
	wg.Wait()
	must(t, <-held)
	for i, err := range errs {
		if err != nil {
			t.Fatalf("Update %d: %v", i, err)
		}
		if !has(t, s, fmt.Sprint(i)) {
			t.Fatalf("key of Update %d missing", i)
		}
	}
	got := s.stats()
	if c, u := got.Commits-before.Commits, got.Updates-before.Updates; c != 2 || u != n+1 {
		t.Fatalf("%d Updates queued behind a held one took %d commits for %d updates, want 2 for %d", n, c, u, n+1)
	}
}

func TestGroupCommitUnderLoad(t *testing.T) {
	s := openBTB(t, Options{})
	before := s.stats()
	const workers, each = 64, 10
	var wg sync.WaitGroup
	start := make(chan struct{})
	for w := range workers {
		wg.Go(func() {
			<-start
			for i := range each {
				if err := s.Update(context.Background(), put(fmt.Sprintf("%d-%d", w, i))); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	close(start)
	wg.Wait()
	got := s.stats()
	commits, updates := got.Commits-before.Commits, got.Updates-before.Updates
	t.Logf("%d updates from %d goroutines in %d commits (%.1f per commit)", updates, workers, commits, float64(updates)/float64(commits))
	if updates != workers*each || commits > updates/4 {
		t.Fatalf("%d updates took %d commits; group commit should share most of them", updates, commits)
	}
}

func TestMaxBatch(t *testing.T) {
	s := openBTB(t, Options{MaxBatch: 8})
	before := s.stats()
	release, held := hold(t, s)
	var wg sync.WaitGroup
	for i := range 64 {
		wg.Go(func() {
			if err := s.Update(context.Background(), put(fmt.Sprint(i))); err != nil {
				t.Error(err)
			}
		})
	}
	waitQueued(t, s, 8)
	release()
	wg.Wait()
	must(t, <-held)
	if c := s.stats().Commits - before.Commits; c < 1+64/8 {
		t.Fatalf("64 updates with MaxBatch 8 took %d commits, want at least %d", c, 1+64/8)
	}
}

func TestBatchFailureIsolated(t *testing.T) {
	s := openBTB(t, Options{})
	before := s.stats()
	errBoom := errors.New("boom")
	release, held := hold(t, s)
	const good = 40
	var (
		wg       sync.WaitGroup
		errs     = make([]error, good)
		failErr  error
		failRuns atomic.Int32
		panicked any
	)
	for i := range good {
		wg.Go(func() { errs[i] = s.Update(context.Background(), put(fmt.Sprintf("good%d", i))) })
		if i == good/2 {
			wg.Go(func() {
				failErr = s.Update(context.Background(), func(tx kvstore.Tx) error {
					failRuns.Add(1)
					if err := tx.Put("kv", []byte("bad"), []byte("v"), time.Now().Add(-time.Hour)); err != nil {
						return err
					}
					return fmt.Errorf("wrapped: %w", errBoom)
				})
			})
			wg.Go(func() {
				defer func() { panicked = recover() }()
				_ = s.Update(context.Background(), func(tx kvstore.Tx) error {
					if err := tx.Put("kv", []byte("panic"), []byte("v"), time.Time{}); err != nil {
						return err
					}
					panic("kaboom")
				})
			})
		}
	}
	waitQueued(t, s, good+2)
	release()
	wg.Wait()
	must(t, <-held)
	for i, err := range errs {
		if err != nil {
			t.Fatalf("good Update %d batched with a failing one: %v", i, err)
		}
		if !has(t, s, fmt.Sprintf("good%d", i)) {
			t.Fatalf("good Update %d batched with a failing one was lost", i)
		}
	}
	if !errors.Is(failErr, errBoom) {
		t.Fatalf("failing Update returned %v, want its own error", failErr)
	}
	if n := failRuns.Load(); n != 2 {
		t.Fatalf("failing fn ran %d times, want 2 (in the batch, then alone)", n)
	}
	if panicked == nil || !strings.Contains(fmt.Sprint(panicked), "kaboom") {
		t.Fatalf("the panicking Update's caller recovered %v, want the panic", panicked)
	}
	if has(t, s, "bad") || has(t, s, "panic") {
		t.Fatal("writes of a failed Update were committed")
	}
	if n, err := s.Sweep(context.Background(), time.Now(), 0, nil); err != nil || n != 0 {
		t.Fatalf("Sweep = %d, %v: the failed Update left an expiry entry", n, err)
	}
	if c := s.stats().Commits - before.Commits; c != 1+1+1 { // held, the batch, the sweep
		t.Fatalf("took %d commits, want 3", c)
	}
	// The writer goes on after a panic.
	must(t, s.Update(context.Background(), put("after")))
}

func TestBatchInsertConflict(t *testing.T) {
	s := openBTB(t, Options{})
	release, _ := hold(t, s)
	const n = 16
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			errs[i] = s.Update(context.Background(), func(tx kvstore.Tx) error {
				return tx.Insert("kv", []byte("k"), []byte(fmt.Sprint(i)), time.Time{})
			})
		})
	}
	waitQueued(t, s, n)
	release()
	wg.Wait()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil && winner >= 0:
			t.Fatalf("Inserts %d and %d of one key both succeeded", winner, i)
		case err == nil:
			winner = i
		case !errors.Is(err, tokenstore.ErrExists):
			t.Fatalf("Insert %d: %v", i, err)
		}
	}
	var v string
	must(t, s.View(context.Background(), func(tx kvstore.Tx) error {
		b, err := tx.Get("kv", []byte("k"))
		v = string(b)
		return err
	}))
	if winner < 0 || v != fmt.Sprint(winner) {
		t.Fatalf("winner %d, stored value %q", winner, v)
	}
}

func TestUpdateContext(t *testing.T) {
	t.Run("cancelled before", func(t *testing.T) {
		s := openBTB(t, Options{})
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		ran := false
		err := s.Update(ctx, func(kvstore.Tx) error { ran = true; return nil })
		if !errors.Is(err, context.Canceled) || ran {
			t.Fatalf("Update = %v, ran %v; want context.Canceled without running", err, ran)
		}
	})
	for _, tc := range []struct {
		name string
		ctx  func() (context.Context, context.CancelFunc)
		want error
	}{
		{"cancelled while queued", func() (context.Context, context.CancelFunc) {
			return context.WithCancel(context.Background())
		}, context.Canceled},
		{"deadline while queued", func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 50*time.Millisecond)
		}, context.DeadlineExceeded},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := openBTB(t, Options{})
			release, _ := hold(t, s)
			ctx, cancel := tc.ctx()
			defer cancel()
			var ran atomic.Bool
			errc := make(chan error, 1)
			go func() {
				errc <- s.Update(ctx, func(kvstore.Tx) error { ran.Store(true); return nil })
			}()
			waitQueued(t, s, 1)
			if tc.want == context.Canceled {
				cancel()
			}
			select {
			case err := <-errc:
				if !errors.Is(err, tc.want) {
					t.Fatalf("Update = %v, want %v", err, tc.want)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("Update did not return when its context ended while the writer was busy")
			}
			release()
			must(t, s.Update(context.Background(), put("after")))
			if ran.Load() {
				t.Fatal("the abandoned fn ran")
			}
		})
	}
}

func TestClose(t *testing.T) {
	s := openBTB(t, Options{})
	release, held := hold(t, s)
	const n = 5
	errs := make(chan error, n)
	for i := range n {
		go func() { errs <- s.Update(context.Background(), put(fmt.Sprint(i))) }()
	}
	waitQueued(t, s, n)
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	for !s.closed.Load() {
		time.Sleep(time.Millisecond)
	}
	<-s.stop
	release()
	must(t, <-held) // the batch in progress completes
	for range n {
		if err := <-errs; !errors.Is(err, tokenstore.ErrClosed) {
			t.Fatalf("queued Update = %v, want ErrClosed", err)
		}
	}
	must(t, <-closed)
	must(t, s.Close())
	ctx := context.Background()
	if err := s.Update(ctx, put("x")); !errors.Is(err, tokenstore.ErrClosed) {
		t.Fatalf("Update after Close = %v", err)
	}
	if err := s.View(ctx, func(kvstore.Tx) error { return nil }); !errors.Is(err, tokenstore.ErrClosed) {
		t.Fatalf("View after Close = %v", err)
	}
	if _, err := s.Sweep(ctx, time.Now(), 0, nil); !errors.Is(err, tokenstore.ErrClosed) {
		t.Fatalf("Sweep after Close = %v", err)
	}
}

// indexLen counts the entries of the expiry index.
func indexLen(t *testing.T, s *buckets) int {
	t.Helper()
	n := 0
	must(t, s.db.View(func(btx *bbolt.Tx) error {
		n = btx.Bucket([]byte(indexBucket)).Stats().KeyN
		return nil
	}))
	return n
}

func TestExpiryIndex(t *testing.T) {
	s := openBTB(t, Options{})
	ctx := context.Background()
	now := time.Now()
	step := func(name string, fn func(tx kvstore.Tx) error, want int) {
		t.Helper()
		must(t, s.Update(ctx, fn))
		if n := indexLen(t, s); n != want {
			t.Fatalf("after %s the index holds %d entries, want %d", name, n, want)
		}
	}
	k := []byte("k")
	step("Put without expiry", func(tx kvstore.Tx) error { return tx.Put("kv", k, nil, time.Time{}) }, 0)
	step("Put with expiry", func(tx kvstore.Tx) error { return tx.Put("kv", k, nil, now) }, 1)
	step("Put with the same expiry", func(tx kvstore.Tx) error { return tx.Put("kv", k, nil, now) }, 1)
	step("Put with a new expiry", func(tx kvstore.Tx) error { return tx.Put("kv", k, nil, now.Add(time.Hour)) }, 1)
	step("Put without expiry", func(tx kvstore.Tx) error { return tx.Put("kv", k, nil, time.Time{}) }, 0)
	step("Put with expiry", func(tx kvstore.Tx) error { return tx.Put("kv", k, nil, now) }, 1)
	step("Delete", func(tx kvstore.Tx) error { return tx.Delete("kv", k) }, 0)
	step("Insert with expiry", func(tx kvstore.Tx) error { return tx.Insert("kv", k, nil, now) }, 1)
	step("Take", func(tx kvstore.Tx) error { _, err := tx.Take("kv", k); return err }, 0)
	step("Put in a new bucket", func(tx kvstore.Tx) error { return tx.Put("new", k, nil, now) }, 1)

	// A stale entry (pointing at a key whose header says otherwise) is
	// dropped by Sweep without touching the live key.
	must(t, s.Update(ctx, func(tx kvstore.Tx) error { return tx.Put("kv", []byte("live"), []byte("v"), time.Time{}) }))
	must(t, s.db.Update(func(btx *bbolt.Tx) error {
		return btx.Bucket([]byte(indexBucket)).Put(indexKey(encodeExpire(now.Add(-time.Hour)), "kv", []byte("live")), nil)
	}))
	n, err := s.Sweep(ctx, now.Add(time.Second), 0, nil)
	must(t, err)
	if n != 1 || !has(t, s, "live") || indexLen(t, s) != 0 {
		t.Fatalf("Sweep = %d (want 1: the key in bucket new), live present %v, index %d", n, has(t, s, "live"), indexLen(t, s))
	}
}

func TestSweepChunks(t *testing.T) {
	s := openBTB(t, Options{})
	ctx := context.Background()
	past := time.Now().Add(-time.Hour)
	const n = 2*sweepChunk + 500
	must(t, s.Update(ctx, func(tx kvstore.Tx) error {
		for i := range n {
			if err := tx.Put("kv", fmt.Appendf(nil, "%05d", i), nil, past); err != nil {
				return err
			}
		}
		return nil
	}))
	before := s.stats().Commits
	got, err := s.Sweep(ctx, time.Now(), 0, nil)
	must(t, err)
	if got != n {
		t.Fatalf("Sweep = %d, want %d", got, n)
	}
	if c := s.stats().Commits - before; c != 3 {
		t.Fatalf("Sweep of %d keys took %d transactions, want 3 of at most %d", n, c, sweepChunk)
	}
	if indexLen(t, s) != 0 {
		t.Fatal("index not empty after the sweep")
	}
}

func TestBucketNames(t *testing.T) {
	s := openBTB(t, Options{})
	for _, name := range []string{"", indexBucket, "a\x00b"} {
		err := s.Update(context.Background(), func(tx kvstore.Tx) error { return tx.Put(name, []byte("k"), nil, time.Time{}) })
		if err == nil {
			t.Errorf("Put in bucket %q succeeded", name)
		}
		err = s.View(context.Background(), func(tx kvstore.Tx) error { _, err := tx.Get(name, []byte("k")); return err })
		if err == nil || errors.Is(err, tokenstore.ErrNotFound) {
			t.Errorf("Get in bucket %q = %v, want an invalid-name error", name, err)
		}
	}
}

func TestEncodeExpire(t *testing.T) {
	for _, tc := range []struct {
		name string
		t    time.Time
		want uint64
	}{
		{"zero", time.Time{}, 0},
		{"epoch", time.Unix(0, 0), 1},
		{"before epoch", time.Unix(-10, 0), 1},
		{"just after epoch", time.Unix(0, 5), 5},
		{"now", time.Unix(1700000000, 123), 1700000000_000000123},
		{"beyond int64 nanoseconds", time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC), math.MaxInt64},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := encodeExpire(tc.t); got != tc.want {
				t.Fatalf("encodeExpire(%s) = %d, want %d", tc.t, got, tc.want)
			}
		})
	}
}

func TestReadsAndDeletesCreateNoBucket(t *testing.T) {
	s := openBTB(t, Options{})
	err := s.Update(context.Background(), func(tx kvstore.Tx) error {
		if err := tx.Delete("unseen", []byte("k")); err != nil {
			return err
		}
		if _, err := tx.Take("unseen", []byte("k")); !errors.Is(err, tokenstore.ErrNotFound) {
			return fmt.Errorf("Take = %v, want ErrNotFound", err)
		}
		if _, err := tx.Get("unseen", []byte("k")); !errors.Is(err, tokenstore.ErrNotFound) {
			return fmt.Errorf("Get = %v, want ErrNotFound", err)
		}
		return tx.Scan("unseen", nil, nil, func(_, _ []byte) bool { return true })
	})
	must(t, err)
	must(t, s.db.View(func(btx *bbolt.Tx) error {
		if btx.Bucket([]byte("unseen")) != nil {
			return errors.New("a bucket was created by reads and deletes")
		}
		return nil
	}))
}

// TestSecretsAtRest is the attack of a stolen database file: with the file
// alone, no key file, the pepper and the signing seeds are nowhere in its
// bytes, in any encoding. The control (a core without a Sealer, as before
// sealing) shows the scan finds them when they are there.
func TestSecretsAtRest(t *testing.T) {
	for _, tc := range []struct {
		name   string
		sealed bool
	}{{"sealed", true}, {"plain, the control", false}} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			path := filepath.Join(t.TempDir(), "handoff.db")
			st, err := Open(path, Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			var sealer *tokenstore.Sealer
			if tc.sealed {
				sealer, _ = storetest.NewSealer(t, 1)
			}
			core, err := tokenstore.New(ctx, st, tokenstore.Options{Sealer: sealer})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := core.RotateSigningKey(ctx); err != nil {
				t.Fatal(err)
			}
			needles := storetest.Secrets(t, st, sealer)
			if err := st.Close(); err != nil {
				t.Fatal(err)
			}
			raw, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			found := 0
			for _, n := range needles {
				if bytes.Contains(raw, n) {
					found++
				}
			}
			switch {
			case tc.sealed && found > 0:
				t.Fatalf("%d of %d forms of the pepper and seeds are in the file's bytes", found, len(needles))
			case !tc.sealed && found == 0:
				t.Fatal("the control found no secret in a plain store's file: the scan is blind")
			}
		})
	}
}
