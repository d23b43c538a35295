package daemon

import (
	"context"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/handoffd/handoff/config"
	"github.com/handoffd/handoff/tokenstore"
	"github.com/handoffd/handoff/tokenstore/postgres"
	"github.com/handoffd/handoff/tokenstore/postgres/pgproxy"
)

// A daemon on PostgreSQL through a loopback proxy that puts faults in
// between: a database out of reach at start, a stall.

// newPostgresServer starts a daemon whose store.dsn points at a proxy in
// front of a fresh schema of the test database. With down the proxy
// refuses connections from the start (New returns with the store not
// open).
func newPostgresServer(t *testing.T, down bool, change func(*config.Config)) (*testServer, *pgproxy.Proxy, *lockedBuffer) {
	t.Helper()
	dsn := os.Getenv("HANDOFF_TEST_POSTGRES_DSN")
	if dsn == "" {
		t.Skip("set HANDOFF_TEST_POSTGRES_DSN (e.g. postgres://postgres@127.0.0.1:5432/test?sslmode=disable) to run the PostgreSQL daemon tests")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, schemaDSN, drop, err := postgres.TempSchema(ctx, dsn, "handoff_daemon_")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = drop() })
	u, err := url.Parse(schemaDSN)
	if err != nil {
		t.Fatal(err)
	}
	p := pgproxy.New(t, u.Host)
	u.Host = p.Addr()
	if down {
		p.Refuse()
	}

	keyFile := filepath.Join(t.TempDir(), "secrets.key")
	if err := os.WriteFile(keyFile, []byte(tokenstore.NewSecretKeyLine()), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.Data = t.TempDir()
	cfg.Store.Driver = "postgres"
	cfg.Store.DSN = u.String()
	cfg.Secrets.KeyFile = keyFile
	if change != nil {
		change(&cfg)
	}
	notice := &lockedBuffer{}
	d, err := New(ctx, Options{Config: cfg, OpenStore: testOpenStore, Notice: notice, Logger: testLogger})
	testLogger = nil
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(d.Handler())
	t.Cleanup(func() {
		srv.Close()
		d.Close()
	})
	return &testServer{Server: srv, d: d, t: t}, p, notice
}

// TestStartWhilePostgresDown is the attack of a database outage during a
// rollout: a replica that starts while PostgreSQL refuses connections
// does not exit (a crash loop), it serves: /healthz 200, /readyz 503, API
// calls 503 store_unavailable with Retry-After. Once the database is
// back it opens the store (migrations, the first API key) and serves.
func TestStartWhilePostgresDown(t *testing.T) {
	s, p, notice := newPostgresServer(t, true, nil)
	if s.d.Core() != nil {
		t.Fatal("a core with the database out of reach")
	}
	if r := s.do(req{method: "GET", path: "/healthz"}); r.status != 200 {
		t.Fatalf("healthz while the store is not open: %d %s", r.status, r.body)
	}
	if r := s.do(req{method: "GET", path: "/readyz"}); r.status != 503 {
		t.Fatalf("readyz while the store is not open: %d %s", r.status, r.body)
	}
	r := s.do(req{method: "POST", path: "/v1/account/sessions/token", body: map[string]any{"userId": "alice", "secret": "123456"}})
	wantError(t, r, 503, "store_unavailable")
	if r.header.Get("Retry-After") == "" {
		t.Fatalf("503 without Retry-After: %v", r.header)
	}
	if r := s.do(req{method: "GET", path: "/.well-known/jwks.json"}); r.status != 503 {
		t.Fatalf("jwks while the store is not open: %d %s", r.status, r.body)
	}

	p.Accept()
	deadline := time.Now().Add(15 * time.Second)
	for s.do(req{method: "GET", path: "/readyz"}).status != 200 {
		if time.Now().After(deadline) {
			t.Fatal("readyz still 503 15s after the database came back")
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.key = keyRE.FindString(notice.String())
	if s.key == "" {
		t.Fatalf("no bootstrap key once the store opened: %q", notice.String())
	}
	s.createUser("alice", "alice@example.com")
	if cred := s.login("alice"); cred == "" {
		t.Fatal("no session")
	}
}

// TestStartBoltUnopenable: bolt is not waited for. A bolt file that
// cannot be opened is a disk or config mistake, and the start fails.
func TestStartBoltUnopenable(t *testing.T) {
	cfg := config.Default()
	cfg.Data = t.TempDir()
	blocker := filepath.Join(cfg.Data, "file")
	if err := os.WriteFile(blocker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.Store.Path = filepath.Join(blocker, "handoff.db") // under a file, not a directory
	d, err := New(context.Background(), Options{Config: cfg, OpenStore: testOpenStore})
	if err == nil {
		d.Close()
		t.Fatal("a daemon on a bolt file that cannot be opened")
	}
}

// TestPostgresStall is the attack of a database that stops answering
// without closing its connections: a request whose client set no
// deadline is answered 503 store_unavailable with Retry-After within
// store.timeout, not after a minute; /readyz says 503 meanwhile.
func TestPostgresStall(t *testing.T) {
	const timeout = time.Second
	s, p, notice := newPostgresServer(t, false, func(c *config.Config) { c.Store.Timeout = timeout })
	s.key = keyRE.FindString(notice.String())
	s.createUser("alice", "alice@example.com")
	secret := s.mint("alice", nil)

	p.Freeze()
	start := time.Now()
	answered := make(chan resp, 1)
	go func() {
		answered <- s.do(req{method: "POST", path: "/v1/account/sessions/token", body: map[string]any{"userId": "alice", "secret": secret}})
	}()
	var r resp
	select {
	case r = <-answered:
	case <-time.After(timeout + 5*time.Second):
		p.Thaw()
		t.Fatalf("the exchange still hangs %s into a stall, store.timeout %s", timeout+5*time.Second, timeout)
	}
	took := time.Since(start)
	wantError(t, r, 503, "store_unavailable")
	if r.header.Get("Retry-After") == "" {
		t.Fatalf("503 without Retry-After: %v", r.header)
	}
	if took > timeout+2*time.Second {
		t.Fatalf("the stalled exchange took %s, store.timeout %s", took, timeout)
	}
	if r := s.do(req{method: "GET", path: "/readyz"}); r.status != 503 {
		t.Fatalf("readyz during a stall: %d %s", r.status, r.body)
	}
	p.Thaw()
	deadline := time.Now().Add(10 * time.Second)
	for {
		r = s.do(req{method: "POST", path: "/v1/account/sessions/token", body: map[string]any{"userId": "alice", "secret": secret}})
		if r.status == 201 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if r.status != 201 {
		t.Fatalf("exchange after the stall: %d %s", r.status, r.body)
	}
}

// TestPostgresCommitCut: an exchange whose connection is cut right after
// its COMMIT reached the server answers 201 with the session it
// committed, not a 503 whose retry gets 401.
func TestPostgresCommitCut(t *testing.T) {
	s, p, notice := newPostgresServer(t, false, nil)
	s.key = keyRE.FindString(notice.String())
	s.createUser("alice", "alice@example.com")
	secret := s.mint("alice", nil)

	p.CutAtCommit(pgproxy.AfterCommit)
	r := s.do(req{method: "POST", path: "/v1/account/sessions/token", key: true, body: map[string]any{"userId": "alice", "secret": secret}})
	if p.Cuts() != 1 {
		t.Fatalf("the proxy cut %d connections at COMMIT, want 1", p.Cuts())
	}
	if r.status != 201 {
		t.Fatalf("exchange cut after its COMMIT: %d %s", r.status, r.body)
	}
	cred := r.json(t)["secret"].(string)
	if r := s.do(req{method: "GET", path: "/v1/account", headers: map[string]string{"X-Appwrite-Session": cred}}); r.status != 200 {
		t.Fatalf("the committed session: %d %s", r.status, r.body)
	}
}
