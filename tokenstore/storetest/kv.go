package storetest

import (
	"context"
	"encoding/binary"
	"errors"
	"math"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/handoffd/handoff/tokenstore"
)

var kvTests = []test{
	{"Basic", testKVBasic},
	{"TTL", testKVTTL},
	{"List", testKVList},
	{"Update", testKVUpdate},
	{"Add", testKVAdd},
	{"AddTTL", testKVAddTTL},
	{"AddParallel", testKVAddParallel},
}

var sweepTests = []test{
	{"TokensSessions", testSweepCore},
	{"Limit", testSweepCoreLimit},
	{"KV", testSweepKV},
	{"RunSweeper", testRunSweeper},
}

var reopenTests = []test{
	{"Data", testReopenData},
	{"PepperAndKeys", testReopenPepper},
}

func wantKV(t *testing.T, e *env, kv tokenstore.KV, key, want string) {
	t.Helper()
	v, err := kv.Get(e.ctx, key)
	must(t, "KV.Get("+key+")", err)
	if string(v) != want {
		t.Fatalf("KV.Get(%s) = %q, want %q", key, v, want)
	}
}

func wantNoKV(t *testing.T, e *env, kv tokenstore.KV, key string) {
	t.Helper()
	v, err := kv.Get(e.ctx, key)
	if !errors.Is(err, tokenstore.ErrNotFound) {
		t.Fatalf("KV.Get(%s) = %q, %v; want ErrNotFound", key, v, err)
	}
}

func testKVBasic(t *testing.T, s *suite) {
	e := s.env(t, tokenstore.Options{})
	a, b := e.core.KV("password"), e.core.KV("biometric")
	wantNoKV(t, e, a, "k")
	must(t, "Put", a.Put(e.ctx, "k", []byte("v1"), 0))
	must(t, "Put", b.Put(e.ctx, "k", []byte("other"), 0))
	wantKV(t, e, a, "k", "v1")
	wantKV(t, e, b, "k", "other")
	must(t, "Put", a.Put(e.ctx, "k", []byte("v2"), 0))
	wantKV(t, e, a, "k", "v2")
	must(t, "Put", a.Put(e.ctx, "empty", nil, 0))
	wantKV(t, e, a, "empty", "")
	must(t, "Delete", a.Delete(e.ctx, "k"))
	wantNoKV(t, e, a, "k")
	wantKV(t, e, b, "k", "other")
	must(t, "Delete of an absent key", a.Delete(e.ctx, "k"))
	// A namespace that is a prefix of another sees nothing of it.
	must(t, "Put", e.core.KV("pass").Put(e.ctx, "word", []byte("x"), 0))
	wantNoKV(t, e, a, "word")
	if l, _ := e.core.KV("pass").List(e.ctx, "", "", 0); len(l) != 1 {
		t.Fatalf("List of namespace pass = %+v", l)
	}
}

func testKVTTL(t *testing.T, s *suite) {
	e := s.env(t, tokenstore.Options{})
	kv := e.core.KV("captcha")
	must(t, "Put", kv.Put(e.ctx, "short", []byte("s"), time.Minute))
	must(t, "Put", kv.Put(e.ctx, "long", []byte("l"), time.Hour))
	must(t, "Put", kv.Put(e.ctx, "forever", []byte("f"), 0))
	e.clock.Advance(time.Minute)
	wantKV(t, e, kv, "short", "s")    // at its expiry it still reads
	e.clock.Advance(time.Microsecond) // the stores' precision
	wantNoKV(t, e, kv, "short")
	l, err := kv.List(e.ctx, "", "", 0)
	must(t, "List", err)
	if got := kvKeys(l); !slices.Equal(got, []string{"forever", "long"}) {
		t.Fatalf("List after expiry = %q", got)
	}
	var seen []byte
	must(t, "Update", kv.Update(e.ctx, "short", 0, func(old []byte) ([]byte, error) {
		seen = old
		return []byte("renewed"), nil
	}))
	if seen != nil {
		t.Fatalf("Update of an expired key saw %q, want nil", seen)
	}
	wantKV(t, e, kv, "short", "renewed")
	e.clock.Advance(24 * time.Hour)
	wantKV(t, e, kv, "short", "renewed") // the update stored it without a TTL
	wantKV(t, e, kv, "forever", "f")
	wantNoKV(t, e, kv, "long")
}

func kvKeys(l []tokenstore.KVEntry) []string {
	out := make([]string, len(l))
	for i, x := range l {
		out[i] = x.Key
	}
	return out
}

func testKVList(t *testing.T, s *suite) {
	e := s.env(t, tokenstore.Options{})
	kv := e.core.KV("password")
	for _, k := range []string{"user:3", "user:1", "other", "user:2", "user:10", "user"} {
		must(t, "Put", kv.Put(e.ctx, k, []byte("v-"+k), 0))
	}
	must(t, "Put", e.core.KV("passwordx").Put(e.ctx, "user:0", []byte("x"), 0))
	for _, tc := range []struct {
		name, prefix, after string
		limit               int
		want                []string
	}{
		{"all", "", "", 0, []string{"other", "user", "user:1", "user:10", "user:2", "user:3"}},
		{"prefix", "user:", "", 0, []string{"user:1", "user:10", "user:2", "user:3"}},
		{"limit", "user:", "", 2, []string{"user:1", "user:10"}},
		{"after", "user:", "user:10", 0, []string{"user:2", "user:3"}},
		{"after and limit", "user:", "user:1", 1, []string{"user:10"}},
		{"after the last", "user:", "user:3", 0, []string{}},
		{"no match", "nope", "", 0, []string{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, err := kv.List(e.ctx, tc.prefix, tc.after, tc.limit)
			must(t, "List", err)
			if got := kvKeys(l); !slices.Equal(got, tc.want) {
				t.Fatalf("List(%q, %q, %d) = %q, want %q", tc.prefix, tc.after, tc.limit, got, tc.want)
			}
			for _, x := range l {
				if string(x.Value) != "v-"+x.Key {
					t.Fatalf("List value of %s = %q", x.Key, x.Value)
				}
			}
		})
	}
}

func testKVUpdate(t *testing.T, s *suite) {
	e := s.env(t, tokenstore.Options{})
	kv := e.core.KV("ratelimit")
	incr := func(old []byte) ([]byte, error) {
		n, _ := strconv.Atoi(string(old))
		return []byte(strconv.Itoa(n + 1)), nil
	}
	for range 3 {
		must(t, "Update", kv.Update(e.ctx, "n", time.Minute, incr))
	}
	wantKV(t, e, kv, "n", "3")
	errNo := errors.New("no")
	err := kv.Update(e.ctx, "n", 0, func(old []byte) ([]byte, error) { return []byte("99"), errNo })
	wantIs(t, "Update whose change fails", err, errNo)
	wantKV(t, e, kv, "n", "3")
	e.clock.Advance(time.Minute + time.Second) // the TTL of the last update runs out
	wantNoKV(t, e, kv, "n")
	must(t, "Update", kv.Update(e.ctx, "n", 0, incr))
	wantKV(t, e, kv, "n", "1")
	must(t, "Update to nil", kv.Update(e.ctx, "n", 0, func([]byte) ([]byte, error) { return nil, nil }))
	wantNoKV(t, e, kv, "n")
}

// coreSweep sweeps through the core and checks the count.
func coreSweep(t *testing.T, e *env, limit, want int) {
	t.Helper()
	n, err := e.core.Sweep(e.ctx, limit)
	must(t, "Sweep", err)
	if n != want {
		t.Fatalf("Sweep(limit %d) at %s = %d, want %d", limit, e.clock.Now().Format(time.RFC3339), n, want)
	}
}

func (e *env) wantCounts(want map[string]int) {
	e.t.Helper()
	for b, n := range want {
		if got := e.count(b); got != n {
			e.t.Fatalf("bucket %s holds %d keys, want %d", b, got, n)
		}
	}
}

func testSweepCore(t *testing.T, s *suite) {
	e := s.env(t, tokenstore.Options{SessionDuration: 2 * time.Hour})
	e.user("u1")
	e.user("u2")
	e.mintReq(tokenstore.MintRequest{UserID: "u1", Expire: time.Minute})
	e.mintReq(tokenstore.MintRequest{UserID: "u1", Expire: time.Hour})
	_, _, err := e.core.CreateSession(e.ctx, "u1", "test", tokenstore.Client{})
	must(t, "CreateSession", err)
	e.wantCounts(map[string]int{"tokens": 2, "sessions": 1})

	coreSweep(t, e, 100, 0)
	e.clock.Advance(time.Minute)
	coreSweep(t, e, 100, 0) // expiry is inclusive
	e.clock.Advance(time.Second)
	coreSweep(t, e, 100, 1)
	e.wantCounts(map[string]int{"tokens": 1})
	e.clock.Advance(time.Hour)
	coreSweep(t, e, 100, 1)
	e.wantCounts(map[string]int{"tokens": 0, "sessions": 1})
	e.clock.Advance(time.Hour)
	coreSweep(t, e, 100, 1) // the session (its index entries are not counted)
	e.wantCounts(map[string]int{"sessions": 0, "users": 2})
	if _, err := e.core.GetUser(e.ctx, "u1"); err != nil {
		t.Fatalf("GetUser after the sweeps: %v", err)
	}
}

func testSweepCoreLimit(t *testing.T, s *suite) {
	e := s.env(t, tokenstore.Options{MaxOutstanding: 6})
	e.user("u1")
	for range 5 {
		e.mintReq(tokenstore.MintRequest{UserID: "u1", Expire: time.Minute})
	}
	_, live := e.mintReq(tokenstore.MintRequest{UserID: "u1", Expire: time.Hour})
	e.clock.Advance(2 * time.Minute)
	coreSweep(t, e, 2, 2)
	coreSweep(t, e, 10, 3)
	coreSweep(t, e, 10, 0)
	_, _, err := e.core.Exchange(e.ctx, "u1", live, tokenstore.Client{})
	must(t, "Exchange of the unexpired token", err)
}

func testSweepKV(t *testing.T, s *suite) {
	e := s.env(t, tokenstore.Options{})
	kv := e.core.KV("captcha")
	must(t, "Put", kv.Put(e.ctx, "ttl", []byte("x"), time.Minute))
	must(t, "Put", kv.Put(e.ctx, "keep", []byte("y"), 0))
	must(t, "Update", kv.Update(e.ctx, "ttl2", time.Minute, func([]byte) ([]byte, error) { return []byte("z"), nil }))
	must(t, "Put", kv.Put(e.ctx, "ttl-then-forever", []byte("x"), time.Minute))
	must(t, "Put", kv.Put(e.ctx, "ttl-then-forever", []byte("x"), 0))
	e.clock.Advance(2 * time.Minute)
	coreSweep(t, e, 100, 2)
	e.wantCounts(map[string]int{"kv": 2})
	wantKV(t, e, kv, "keep", "y")
	wantKV(t, e, kv, "ttl-then-forever", "x")
}

func testRunSweeper(t *testing.T, s *suite) {
	e := s.env(t, tokenstore.Options{})
	e.user("u1")
	e.mintReq(tokenstore.MintRequest{UserID: "u1", Expire: time.Minute})
	e.clock.Advance(2 * time.Minute)
	ctx, cancel := context.WithCancel(e.ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		e.core.RunSweeper(ctx, 5*time.Millisecond, func(err error) { t.Errorf("sweeper: %v", err) })
	}()
	defer func() {
		cancel()
		<-done
	}()
	deadline := time.Now().Add(5 * time.Second)
	for e.count("tokens") != 0 {
		if time.Now().After(deadline) {
			t.Fatal("RunSweeper did not remove the expired token within 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// reopener returns the backend's reopen function or skips t.
func (s *suite) reopener(t *testing.T) func() tokenstore.Store {
	t.Helper()
	if s.reopen == nil {
		t.Skip("the backend gave no Reopener (storetest.WithReopen)")
	}
	open := s.reopen(t)
	var last tokenstore.Store // the test closes the others itself
	t.Cleanup(func() {
		if last != nil {
			_ = last.Close()
		}
	})
	return func() tokenstore.Store {
		t.Helper()
		st := open()
		if st == nil {
			t.Fatal("reopen returned a nil store")
		}
		last = st
		return st
	}
}

func testReopenData(t *testing.T, s *suite) {
	open := s.reopener(t)
	clock := NewClock(startTime())
	e := newEnv(t, open(), tokenstore.Options{}, clock)
	e.user("u1")
	kv := e.core.KV("ns")
	must(t, "Put forever", kv.Put(e.ctx, "forever", []byte("v:forever"), 0))
	must(t, "Put expiring", kv.Put(e.ctx, "expiring", []byte("v:expiring"), time.Minute))
	must(t, "Put gone", kv.Put(e.ctx, "gone", []byte("x"), 0))
	must(t, "Delete gone", kv.Delete(e.ctx, "gone"))
	must(t, "Close", e.store.Close())

	e = newEnv(t, open(), tokenstore.Options{}, clock)
	kv = e.core.KV("ns")
	for k, want := range map[string]string{"forever": "v:forever", "expiring": "v:expiring"} {
		if v, err := kv.Get(e.ctx, k); err != nil || string(v) != want {
			t.Fatalf("Get %s after reopening = %q, %v; want %q", k, v, err, want)
		}
	}
	if _, err := kv.Get(e.ctx, "gone"); !errors.Is(err, tokenstore.ErrNotFound) {
		t.Fatalf("Get gone after reopening: %v, want ErrNotFound", err)
	}
	if _, err := e.core.GetUser(e.ctx, "u1"); err != nil {
		t.Fatalf("GetUser after reopening: %v", err)
	}
	clock.Advance(2 * time.Minute)
	coreSweep(t, e, 1000, 1) // the expiry index survived too
	if n := e.count("kv"); n != 1 {
		t.Fatalf("after the sweep the store holds %d plugin values, want 1", n)
	}
}

func testReopenPepper(t *testing.T, s *suite) {
	open := s.reopener(t)
	clock := NewClock(startTime())
	e := newEnv(t, open(), tokenstore.Options{}, clock)
	e.user("u1")
	_, secret := e.mint("u1")
	sess, cred := e.session("u1")
	jwt, err := e.core.IssueJWT(sess, 0)
	must(t, "IssueJWT", err)
	jwks := e.core.JWKS()
	must(t, "Close", e.store.Close())

	e = newEnv(t, open(), tokenstore.Options{}, clock)
	_, _, err = e.core.Exchange(e.ctx, "u1", secret, tokenstore.Client{})
	must(t, "Exchange after reopening (the pepper must persist)", err)
	e.wantAuth(cred, true)
	_, _, err = e.core.VerifyJWT(e.ctx, jwt)
	must(t, "VerifyJWT after reopening (the signing key must persist)", err)
	if string(e.core.JWKS()) != string(jwks) {
		t.Fatalf("JWKS changed across a reopen:\n%s\n%s", jwks, e.core.JWKS())
	}
}

// wantAdd adds delta to the counter under key and checks the sum, and that
// Get returns it as 8 bytes big-endian.
func wantAdd(t *testing.T, e *env, kv tokenstore.KV, key string, delta int64, ttl time.Duration, want int64) {
	t.Helper()
	n, err := kv.Add(e.ctx, key, delta, ttl)
	must(t, "Add("+key+")", err)
	if n != want {
		t.Fatalf("Add(%s, %d) = %d, want %d", key, delta, n, want)
	}
	wantKV(t, e, kv, key, string(binary.BigEndian.AppendUint64(nil, uint64(want))))
}

func testKVAdd(t *testing.T, s *suite) {
	e := s.env(t, tokenstore.Options{})
	kv := e.core.KV("password")
	wantAdd(t, e, kv, "n", 1, 0, 1) // absent counts as 0
	wantAdd(t, e, kv, "n", 4, 0, 5)
	wantAdd(t, e, kv, "n", -2, 0, 3) // a negative delta
	wantAdd(t, e, kv, "n", -10, 0, -7)
	wantAdd(t, e, kv, "n", 0, 0, -7)
	wantAdd(t, e, e.core.KV("other"), "n", 1, 0, 1) // namespaces apart
	wantKV(t, e, kv, "n", string(binary.BigEndian.AppendUint64(nil, uint64(math.MaxUint64-6))))

	for _, tc := range []struct{ name, value string }{
		{"text", "12"},
		{"empty", ""},
		{"nine bytes", "123456789"},
	} {
		t.Run("not a counter/"+tc.name, func(t *testing.T) {
			must(t, "Put", kv.Put(e.ctx, tc.name, []byte(tc.value), 0))
			_, err := kv.Add(e.ctx, tc.name, 1, 0)
			wantIs(t, "Add to "+tc.name, err, tokenstore.ErrInvalidArgument)
			wantKV(t, e, kv, tc.name, tc.value)
		})
	}
	t.Run("overflow", func(t *testing.T) {
		wantAdd(t, e, kv, "big", math.MaxInt64, 0, math.MaxInt64)
		_, err := kv.Add(e.ctx, "big", 1, 0)
		wantIs(t, "Add past MaxInt64", err, tokenstore.ErrInvalidArgument)
		wantAdd(t, e, kv, "big", 0, 0, math.MaxInt64)
		wantAdd(t, e, kv, "small", math.MinInt64, 0, math.MinInt64)
		_, err = kv.Add(e.ctx, "small", -1, 0)
		wantIs(t, "Add below MinInt64", err, tokenstore.ErrInvalidArgument)
	})
	must(t, "Delete", kv.Delete(e.ctx, "n"))
	wantAdd(t, e, kv, "n", 1, 0, 1) // a deleted counter starts again at 0
}

// testKVAddTTL: a ttl expires the counter ttl after the last Add (each Add
// restarts the clock); an expired counter counts from 0; ttl 0 keeps it.
func testKVAddTTL(t *testing.T, s *suite) {
	e := s.env(t, tokenstore.Options{})
	kv := e.core.KV("password")
	wantAdd(t, e, kv, "n", 1, time.Minute, 1)
	e.clock.Advance(50 * time.Second)
	wantAdd(t, e, kv, "n", 1, time.Minute, 2)
	e.clock.Advance(50 * time.Second) // 100s after the first, 50s after the last
	wantAdd(t, e, kv, "n", 1, time.Minute, 3)
	e.clock.Advance(time.Minute + time.Microsecond)
	wantNoKV(t, e, kv, "n")
	if l, err := kv.List(e.ctx, "", "", 0); err != nil || len(l) != 0 {
		t.Fatalf("List after expiry = %+v, %v", l, err)
	}
	wantAdd(t, e, kv, "n", 5, time.Minute, 5) // counts from 0 again
	wantAdd(t, e, kv, "n", -1, 0, 4)          // ttl 0: no expiry from now on
	e.clock.Advance(24 * time.Hour)
	wantAdd(t, e, kv, "n", 1, 0, 5)
}

// testKVAddParallel: Adds from many goroutines, half of them through a
// second core on the store (another daemon replica), each see a distinct
// count and sum exactly.
func testKVAddParallel(t *testing.T, s *suite) {
	const workers, each = 16, 10
	e := s.env(t, tokenstore.Options{})
	r := e.replica(tokenstore.Options{})
	kvs := []tokenstore.KV{e.core.KV("password"), r.core.KV("password")}
	var (
		mu   sync.Mutex
		seen = map[int64]bool{}
		wg   sync.WaitGroup
	)
	errs := make(chan error, workers*each)
	for w := range workers {
		wg.Go(func() {
			for range each {
				n, err := kvs[w%2].Add(e.ctx, "n", 1, time.Hour)
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				if seen[n] {
					errs <- errors.New("two Adds returned " + strconv.FormatInt(n, 10))
				}
				seen[n] = true
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	wantAdd(t, e, kvs[0], "n", 0, time.Hour, workers*each)
	for i := int64(1); i <= workers*each; i++ {
		if !seen[i] {
			t.Fatalf("no Add returned %d", i)
		}
	}
}
