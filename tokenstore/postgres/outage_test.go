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

// TestOutage: while the database is out of reach a transaction fails with
// tokenstore.ErrUnavailable (the daemon answers 503 store_unavailable and
// Retry-After), within the retry budget; once it is back the store serves
// again without being reopened.
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
	put(t, s, "o", map[string]string{"k": "v"})

	p.Refuse()
	start := time.Now()
	err = s.Update(ctx, func(tx tokenstore.Tx) error { return tx.Put("o", []byte("k"), []byte("w"), time.Time{}) })
	if !errors.Is(err, tokenstore.ErrUnavailable) {
		t.Fatalf("update with the database out of reach: %v, want ErrUnavailable", err)
	}
	if took := time.Since(start); took > retryBudget+5*time.Second {
		t.Fatalf("the failed update took %s", took)
	}
	err = s.View(ctx, func(tx tokenstore.Tx) error { _, err := tx.Get("o", []byte("k")); return err })
	if !errors.Is(err, tokenstore.ErrUnavailable) {
		t.Fatalf("view with the database out of reach: %v, want ErrUnavailable", err)
	}

	p.Accept()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err = s.Update(ctx, func(tx tokenstore.Tx) error { return tx.Put("o", []byte("k"), []byte("back"), time.Time{}) })
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("after the database came back: %v", err)
	}
}
