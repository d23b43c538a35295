package storetest

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/handoffd/handoff/tokenstore"
)

// Reopener prepares one storage location for a test (a file in
// t.TempDir(), a fresh database schema) and returns a function that opens a
// store on it. Each call of that function opens the same data again; the
// suite closes each store before it opens the next one, and the last one
// when the test ends.
type Reopener func(t *testing.T) func() tokenstore.Store

// Option adds to what Run checks.
type Option func(*suite)

// WithReopen lets Run check what must survive closing and reopening a
// store: the data, the expiry index, the pepper and the signing keys.
// Without it those tests skip.
func WithReopen(r Reopener) Option {
	return func(s *suite) { s.reopen = r }
}

// suite is one backend under test.
type suite struct {
	open   func(t *testing.T) tokenstore.Store
	reopen Reopener
}

// test is one named check.
type test struct {
	name string
	fn   func(t *testing.T, s *suite)
}

// Run runs the conformance suite against the stores open returns. open
// must return a fresh, empty store each time it is called; Run closes it
// when the test ends (a Close the backend registers itself must tolerate a
// second call).
func Run(t *testing.T, open func(t *testing.T) tokenstore.Store, opts ...Option) {
	s := &suite{open: open}
	for _, o := range opts {
		o(s)
	}
	groups := []struct {
		name  string
		tests []test
	}{
		{"Mint", mintTests},
		{"Exchange", exchangeTests},
		{"Sessions", sessionTests},
		{"Users", userTests},
		{"Identities", identityTests},
		{"Text", textTests},
		{"Keys", keyTests},
		{"JWT", jwtTests},
		{"Secrets", secretTests},
		{"KV", kvTests},
		{"Limits", limitTests},
		{"Sweep", sweepTests},
		{"Reopen", reopenTests},
	}
	for _, g := range groups {
		t.Run(g.name, func(t *testing.T) {
			for _, tc := range g.tests {
				t.Run(tc.name, func(t *testing.T) { tc.fn(t, s) })
			}
		})
	}
}

// store opens a fresh store, closed when t ends.
func (s *suite) store(t *testing.T) tokenstore.Store {
	t.Helper()
	st := s.open(t)
	if st == nil {
		t.Fatal("open returned a nil store")
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

// Clock is a fake clock for tokenstore.Options.Now. It is safe for
// concurrent use.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock returns a clock that stands at start until advanced.
func NewClock(start time.Time) *Clock { return &Clock{now: start} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock on by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// startTime is where test clocks start: the present, to the second, so
// whole-second instants survive backends that store microseconds.
func startTime() time.Time { return time.Now().UTC().Truncate(time.Second) }

// env is a core on a fresh store with a fake clock.
type env struct {
	t     *testing.T
	ctx   context.Context
	store tokenstore.Store
	clock *Clock
	core  *tokenstore.Core
}

// env opens a fresh store and a core on it; opts.Now is the fake clock.
func (s *suite) env(t *testing.T, opts tokenstore.Options) *env {
	t.Helper()
	return newEnv(t, s.store(t), opts, nil)
}

// replica returns another core on e's store and clock, as a second daemon
// on a shared store would be.
func (e *env) replica(opts tokenstore.Options) *env {
	e.t.Helper()
	return newEnv(e.t, e.store, opts, e.clock)
}

// newEnv makes a core on st; a nil clock is a new one.
func newEnv(t *testing.T, st tokenstore.Store, opts tokenstore.Options, clock *Clock) *env {
	t.Helper()
	if clock == nil {
		clock = NewClock(startTime())
	}
	e := &env{t: t, ctx: context.Background(), store: st, clock: clock}
	opts.Now = e.clock.Now
	c, err := tokenstore.New(e.ctx, st, opts)
	if err != nil {
		t.Fatalf("tokenstore.New: %v", err)
	}
	e.core = c
	return e
}

// user creates a user with id and the email <id>@example.com.
func (e *env) user(id string) tokenstore.User {
	e.t.Helper()
	u, err := e.core.CreateUser(e.ctx, tokenstore.NewUser{ID: id, Email: id + "@example.com", Name: "User " + id})
	if err != nil {
		e.t.Fatalf("CreateUser(%s): %v", id, err)
	}
	return u
}

// mint mints a default token for userID.
func (e *env) mint(userID string) (tokenstore.Token, string) {
	e.t.Helper()
	return e.mintReq(tokenstore.MintRequest{UserID: userID})
}

func (e *env) mintReq(r tokenstore.MintRequest) (tokenstore.Token, string) {
	e.t.Helper()
	tok, secret, err := e.core.Mint(e.ctx, r)
	if err != nil {
		e.t.Fatalf("Mint(%+v): %v", r, err)
	}
	return tok, secret
}

// session exchanges a fresh token of userID and returns the session and
// its credential.
func (e *env) session(userID string) (tokenstore.Session, string) {
	e.t.Helper()
	_, secret := e.mint(userID)
	s, cred, err := e.core.Exchange(e.ctx, userID, secret, tokenstore.Client{})
	if err != nil {
		e.t.Fatalf("Exchange(%s): %v", userID, err)
	}
	return s, cred
}

// Dumper is what the suites need of a store beyond tokenstore.Store:
// everything it holds, as stored, so they can check what rests in it (no
// secret in clear, nothing left of a deleted user) and how many records
// of a kind remain. Every store under test implements it.
type Dumper interface {
	// Dump returns every record the store holds. Kind names its table
	// or bucket: "users", "tokens", "sessions", "identities", "keys",
	// "kv", "limits" and "meta" for the records of those kinds, anything
	// else for a backend's own (an index, say). Key and Value hold its
	// bytes as stored: a bucket's key and value, or a row's key columns
	// and the rest, each column's value as stored (bytea raw, text as
	// UTF-8, others in their text form) joined by 0 bytes.
	Dump(ctx context.Context) ([]Record, error)
}

// Record is one record a Dumper found.
type Record struct {
	Kind       string
	Key, Value []byte
}

// dump returns every record the store holds.
func (e *env) dump() []Record {
	e.t.Helper()
	return dumpStore(e.t, e.store)
}

func dumpStore(t *testing.T, st tokenstore.Store) []Record {
	t.Helper()
	d, ok := st.(Dumper)
	if !ok {
		t.Fatalf("storetest: the store (%T) must implement storetest.Dumper", st)
	}
	recs, err := d.Dump(context.Background())
	if err != nil {
		t.Fatalf("dump store: %v", err)
	}
	return recs
}

// count returns how many records of kind the store holds.
func (e *env) count(kind string) int {
	e.t.Helper()
	n := 0
	for _, r := range e.dump() {
		if r.Kind == kind {
			n++
		}
	}
	return n
}

// findBytes reports the first record whose key or value contains needle.
func findBytes(recs []Record, needle []byte) (Record, bool) {
	for _, r := range recs {
		if bytes.Contains(r.Key, needle) || bytes.Contains(r.Value, needle) {
			return r, true
		}
	}
	return Record{}, false
}

// wantIs fails t unless errors.Is(err, target).
func wantIs(t testing.TB, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: err = %v, want %v", what, err, target)
	}
}

// must fails t on err.
func must(t testing.TB, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}
