package daemon

import (
	"context"
	"time"

	"github.com/handoffd/handoff/tokenstore"
)

// timedStore times each store operation into
// handoff_store_operation_duration_seconds. It keeps the store's optional
// capabilities: countingStore adds tokenstore.Counter for a store that
// has it, and Ping passes through.
type timedStore struct {
	tokenstore.Store
	m *metrics
}

// countingStore is a timedStore over a store that counts limits itself
// (PostgreSQL).
type countingStore struct {
	timedStore
	ctr tokenstore.Counter
}

// Interface guards.
var (
	_ tokenstore.Store   = timedStore{}
	_ tokenstore.Counter = countingStore{}
)

// instrumentStore wraps st so its operations are timed; a nil m leaves it
// as it is.
func instrumentStore(st tokenstore.Store, m *metrics) tokenstore.Store {
	if m == nil {
		return st
	}
	t := timedStore{Store: st, m: m}
	if ctr, ok := st.(tokenstore.Counter); ok {
		return countingStore{timedStore: t, ctr: ctr}
	}
	return t
}

func (s timedStore) observe(op string, start time.Time, err error) {
	s.m.storeOps.WithLabelValues(op, result(err)).Observe(time.Since(start).Seconds())
}

func (s timedStore) View(ctx context.Context, fn func(tokenstore.Tx) error) error {
	start := time.Now()
	err := s.Store.View(ctx, fn)
	s.observe("view", start, err)
	return err
}

func (s timedStore) Update(ctx context.Context, fn func(tokenstore.Tx) error) error {
	start := time.Now()
	err := s.Store.Update(ctx, fn)
	s.observe("update", start, err)
	return err
}

func (s timedStore) Sweep(ctx context.Context, now time.Time, limit int) (int, error) {
	start := time.Now()
	n, err := s.Store.Sweep(ctx, now, limit)
	s.observe("sweep", start, err)
	return n, err
}

// Ping asks the store whether it answers, when it can be asked; else it
// runs an empty read.
func (s timedStore) Ping(ctx context.Context) error {
	if p, ok := s.Store.(interface{ Ping(context.Context) error }); ok {
		return p.Ping(ctx)
	}
	return s.Store.View(ctx, func(tokenstore.Tx) error { return nil })
}

// Unwrap returns the store underneath (the bench reads bolt's statistics).
func (s timedStore) Unwrap() tokenstore.Store { return s.Store }

func (s countingStore) Count(ctx context.Context, bucket string, key []byte, start, expire time.Time) (int, error) {
	t := time.Now()
	n, err := s.ctr.Count(ctx, bucket, key, start, expire)
	s.observe("count", t, err)
	return n, err
}

func (s countingStore) Forget(ctx context.Context, bucket string, key []byte) error {
	t := time.Now()
	err := s.ctr.Forget(ctx, bucket, key)
	s.observe("forget", t, err)
	return err
}
