package postgres

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/handoffd/handoff/tokenstore"
	"github.com/handoffd/handoff/tokenstore/postgres/pgproxy"
)

// TestOutage: while the database is out of reach a step fails with
// tokenstore.ErrUnavailable (the daemon answers 503 store_unavailable and
// Retry-After), within seconds; once it is back the store serves again
// without being reopened.
func TestOutage(t *testing.T) {
	cfg, err := pgx.ParseConfig(testDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	p := pgproxy.New(t, net.JoinHostPort(cfg.Host, fmt.Sprint(cfg.Port)))
	defer p.Close()
	dsn := fmt.Sprintf("postgres://%s@%s/%s?sslmode=disable", cfg.User, p.Addr(), cfg.Database)
	ctx := context.Background()
	s, err := Open(ctx, Options{DSN: dsn, Schema: freshSchema(t), MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.CreateUser(ctx, newUser("o")); err != nil {
		t.Fatal(err)
	}
	rename := func(name string) error {
		_, err := s.UpdateUser(ctx, "o", func(u *tokenstore.User) error { u.Name = name; return nil })
		return err
	}

	p.Refuse()
	start := time.Now()
	err = rename("w")
	if !errors.Is(err, tokenstore.ErrUnavailable) {
		t.Fatalf("a write with the database out of reach: %v, want ErrUnavailable", err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("the failed write took %s", took)
	}
	_, err = s.User(ctx, "o")
	if !errors.Is(err, tokenstore.ErrUnavailable) {
		t.Fatalf("a read with the database out of reach: %v, want ErrUnavailable", err)
	}

	p.Accept()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err = rename("back")
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("after the database came back: %v", err)
	}
}
