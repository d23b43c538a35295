package postgres

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/handoffd/handoff/tokenstore"
	"github.com/handoffd/handoff/tokenstore/postgres/pgproxy"
)

// Faults between the store and its server, put there by a loopback proxy:
// a stall, and a connection cut at the COMMIT of an exchange.

// proxiedStore opens a store with opts on a fresh schema, through a
// pgproxy in front of the test database.
func proxiedStore(t *testing.T, opts Options) (*pgproxy.Proxy, *Store) {
	t.Helper()
	cfg, err := pgx.ParseConfig(testDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	p := pgproxy.New(t, net.JoinHostPort(cfg.Host, fmt.Sprint(cfg.Port)))
	opts.DSN = fmt.Sprintf("postgres://%s@%s/%s?sslmode=disable", cfg.User, p.Addr(), cfg.Database)
	opts.Schema = freshSchema(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := Open(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return p, s
}

// proxied opens a store through a pgproxy in front of the test database,
// and the token core on it with the store deadline timeout.
func proxied(t *testing.T, timeout time.Duration) (*pgproxy.Proxy, *Store, *tokenstore.Core) {
	t.Helper()
	p, s := proxiedStore(t, Options{MaxConns: 4, Timeout: timeout})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := tokenstore.New(ctx, s, tokenstore.Options{StoreTimeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	return p, s, c
}

// mintFor creates a user and mints a token for it.
func mintFor(t *testing.T, c *tokenstore.Core) (userID, secret string) {
	t.Helper()
	ctx := context.Background()
	u, err := c.CreateUser(ctx, tokenstore.NewUser{ID: "stalled"})
	if err != nil {
		t.Fatal(err)
	}
	_, secret, err = c.Mint(ctx, tokenstore.MintRequest{UserID: u.ID})
	if err != nil {
		t.Fatal(err)
	}
	return u.ID, secret
}

// within runs f and fails the test if it has not returned after limit.
func within(t *testing.T, limit time.Duration, what string, f func() error) (error, time.Duration) {
	t.Helper()
	start := time.Now()
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		return err, time.Since(start)
	case <-time.After(limit):
		t.Fatalf("%s still waiting after %s: a stalled database hangs the caller", what, limit)
		return nil, 0
	}
}

// TestStallBounded is the attack of a database that stops answering
// without closing anything (a stalled server, a silent partition): every
// store call, with a caller's context that has no deadline, ends within
// the store's deadline with ErrUnavailable, the daemon's 503
// store_unavailable; once the server answers again, so does the store.
func TestStallBounded(t *testing.T) {
	const timeout = time.Second
	p, s, c := proxied(t, timeout)
	userID, secret := mintFor(t, c)
	ctx := context.Background() // no deadline of its own

	p.Freeze()
	calls := []struct {
		name string
		call func() error
	}{
		{"exchange", func() error { _, _, err := c.Exchange(ctx, userID, secret, tokenstore.Client{}); return err }},
		{"get user", func() error { _, err := c.GetUser(ctx, userID); return err }},
		{"count a hit", func() error { _, _, err := c.Hit(ctx, "k", time.Minute, time.Now()); return err }},
		{"ping", func() error { return s.Ping(ctx) }},
	}
	for _, tc := range calls {
		err, took := within(t, timeout+4*time.Second, tc.name, tc.call)
		if !errors.Is(err, tokenstore.ErrUnavailable) {
			t.Errorf("%s during a stall: %v, want ErrUnavailable", tc.name, err)
		}
		if took > timeout+2*time.Second {
			t.Errorf("%s during a stall took %s, deadline %s", tc.name, took, timeout)
		}
		t.Logf("%s during a stall: %s: %v", tc.name, took.Round(time.Millisecond), err)
	}

	p.Thaw()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, _, err := c.Exchange(ctx, userID, secret, tokenstore.Client{})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("exchange after the stall: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestCommitCut is the attack of a connection lost at an exchange's
// COMMIT. Cut after the COMMIT reached the server, the exchange committed:
// the client gets its session (not a 503 that sends it to retry a spent
// secret, and a 401), and the secret is spent. Cut before, nothing
// committed: a 503, and the secret still exchanges.
func TestCommitCut(t *testing.T) {
	for _, tc := range []struct {
		name      string
		cut       pgproxy.Cut
		committed bool
	}{
		{"after the commit", pgproxy.AfterCommit, true},
		{"before the commit", pgproxy.BeforeCommit, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, _, c := proxied(t, 2*time.Second)
			ctx := context.Background()
			userID, secret := mintFor(t, c)

			p.CutAtCommit(tc.cut)
			s, cred, err := c.Exchange(ctx, userID, secret, tokenstore.Client{})
			if p.Cuts() != 1 {
				t.Fatalf("the proxy cut %d connections at COMMIT, want 1", p.Cuts())
			}
			if !tc.committed {
				if !errors.Is(err, tokenstore.ErrUnavailable) {
					t.Fatalf("exchange cut before its COMMIT: %v, want ErrUnavailable", err)
				}
				s, cred, err = c.Exchange(ctx, userID, secret, tokenstore.Client{})
				if err != nil {
					t.Fatalf("the secret after an exchange that did not commit: %v, want a session", err)
				}
			}
			if err != nil {
				t.Fatalf("exchange cut after its COMMIT: %v, want the session it committed", err)
			}
			if _, got, err := c.Authenticate(ctx, cred); err != nil || got.ID != s.ID {
				t.Fatalf("the session's credential: %v (session %q, want %q)", err, got.ID, s.ID)
			}
			if _, _, err := c.Exchange(ctx, userID, secret, tokenstore.Client{}); !errors.Is(err, tokenstore.ErrInvalidToken) {
				t.Fatalf("the secret once exchanged: %v, want ErrInvalidToken", err)
			}
		})
	}
}

// TestPingReadOnly: a server that takes no writes (a standby, or a
// database set read-only) is not ready, though it answers.
func TestPingReadOnly(t *testing.T) {
	s := openSchema(t, freshSchema(t), Options{MaxConns: 1, MinConns: 1})
	ctx := context.Background()
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("ping: %v", err)
	}
	if _, err := s.pool.Exec(ctx, "SET default_transaction_read_only = on"); err != nil {
		t.Fatal(err)
	}
	err := s.Ping(ctx)
	if !errors.Is(err, tokenstore.ErrUnavailable) || !errors.Is(err, errReadOnlyServer) {
		t.Fatalf("ping of a read-only server: %v, want ErrUnavailable and errReadOnlyServer", err)
	}
}

// TestConnectErrorNotNow: a server that refuses a connection for now
// (starting up, out of slots) is unreachable, so a daemon starting
// during a database restart waits for it instead of exiting; one that
// refuses for good (a wrong password, no such database) is not.
func TestConnectErrorNotNow(t *testing.T) {
	for _, tc := range []struct {
		code        string
		unreachable bool
	}{
		{"57P03", true},  // the database system is starting up
		{"57P01", true},  // admin shutdown
		{"53300", true},  // too many connections
		{"08006", true},  // connection failure
		{"28P01", false}, // password authentication failed
		{"3D000", false}, // database does not exist
	} {
		t.Run(tc.code, func(t *testing.T) {
			err := connectError("db:5432", "handoff", "hunter2", &pgconn.PgError{Code: tc.code, Message: "m"})
			if errors.Is(err, ErrUnreachable) != tc.unreachable {
				t.Fatalf("%v: matches ErrUnreachable %v, want %v", err, !tc.unreachable, tc.unreachable)
			}
			var pgErr *pgconn.PgError
			if !errors.As(err, &pgErr) || pgErr.Code != tc.code {
				t.Fatalf("%v: the PgError is lost", err)
			}
		})
	}
}

// TestCommitCutRace cuts an exchange's connection as its COMMIT leaves,
// while the server may still be running the step (and pgx's own cancel
// request, sent when a connection breaks, races it): the outcome may go
// either way, but the answer must match it for good. A session means the
// secret is spent; ErrUnavailable means nothing committed, and nothing
// does later either: the secret still exchanges.
func TestCommitCutRace(t *testing.T) {
	p, s, c := proxied(t, 2*time.Second)
	ctx := context.Background()
	userID, _ := mintFor(t, c)
	outcomes := map[bool]int{}
	for range 12 {
		_, secret, err := c.Mint(ctx, tokenstore.MintRequest{UserID: userID})
		if err != nil {
			t.Fatal(err)
		}
		p.CutAtCommit(pgproxy.WithCommit)
		_, _, err = c.Exchange(ctx, userID, secret, tokenstore.Client{})
		switch {
		case err == nil:
		case errors.Is(err, tokenstore.ErrUnavailable):
			time.Sleep(50 * time.Millisecond) // a late COMMIT would land by now
			if _, _, err := c.Exchange(ctx, userID, secret, tokenstore.Client{}); err != nil {
				t.Fatalf("the secret of an exchange answered as not committed: %v", err)
			}
		default:
			t.Fatalf("exchange cut with its COMMIT: %v", err)
		}
		outcomes[err == nil]++
	}
	t.Logf("committed %d, not committed %d; stats %+v", outcomes[true], outcomes[false], s.Stats())
}
