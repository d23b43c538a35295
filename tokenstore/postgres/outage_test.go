package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/handoffd/handoff/tokenstore"
)

// proxy is a TCP relay on loopback in front of the test database, which a
// test can cut (every connection closed, new ones refused) and restore: a
// database restart or a network cut, seen from the store.
type proxy struct {
	t      *testing.T
	target string
	mu     sync.Mutex
	ln     net.Listener
	addr   string
	conns  []net.Conn
}

func newProxy(t *testing.T, target string) *proxy {
	p := &proxy{t: t, target: target}
	p.listen("127.0.0.1:0")
	t.Cleanup(p.cut)
	return p
}

func (p *proxy) listen(addr string) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		p.t.Fatal(err)
	}
	p.mu.Lock()
	p.ln, p.addr = ln, ln.Addr().String()
	p.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", p.target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, up)
			p.mu.Unlock()
			go func() { _, _ = io.Copy(up, c); up.Close() }()
			go func() { _, _ = io.Copy(c, up); c.Close() }()
		}
	}()
}

// cut closes the listener and every relayed connection.
func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// restore listens again on the same address.
func (p *proxy) restore() { p.listen(p.addr) }

// TestOutage: while the database is out of reach a transaction fails with
// tokenstore.ErrUnavailable (the daemon answers 503 store_unavailable and
// Retry-After), within the retry budget; once it is back the store serves
// again without being reopened.
func TestOutage(t *testing.T) {
	cfg, err := pgx.ParseConfig(testDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	p := newProxy(t, net.JoinHostPort(cfg.Host, fmt.Sprint(cfg.Port)))
	dsn := fmt.Sprintf("postgres://%s@%s/%s?sslmode=disable", cfg.User, p.addr, cfg.Database)
	ctx := context.Background()
	s, err := Open(ctx, Options{DSN: dsn, Schema: freshSchema(t), MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	put(t, s, "o", map[string]string{"k": "v"})

	p.cut()
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

	p.restore()
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
