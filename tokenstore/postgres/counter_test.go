package postgres

import (
	"context"
	"sync"
	"testing"
	"time"
)

// TestCount: of 64 hits at once on one counter each counts exactly once,
// in one statement and no transaction; a new window starts again at one.
func TestCount(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	start := time.Now().Truncate(time.Hour)
	before := s.Stats()
	var wg sync.WaitGroup
	seen := make([]bool, 65)
	var mu sync.Mutex
	for range 64 {
		wg.Go(func() {
			n, err := s.Count(ctx, "limits", []byte("k"), start, start.Add(time.Hour))
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if n < 1 || n > 64 || seen[n] {
				t.Errorf("count %d twice or out of range", n)
				return
			}
			seen[n] = true
		})
	}
	wg.Wait()
	after := s.Stats()
	if after.Transactions != before.Transactions || after.Retries != before.Retries {
		t.Fatalf("counting ran transactions: %+v -> %+v", before, after)
	}
	if n, err := s.Count(ctx, "limits", []byte("k"), start.Add(time.Hour), start.Add(2*time.Hour)); err != nil || n != 1 {
		t.Fatalf("the next window: %d, %v; want 1", n, err)
	}
	if err := s.Forget(ctx, "limits", []byte("k")); err != nil {
		t.Fatal(err)
	}
	if err := s.Forget(ctx, "limits", []byte("never")); err != nil {
		t.Fatalf("forget an absent key: %v", err)
	}
	if n, err := s.Count(ctx, "limits", []byte("k"), start.Add(time.Hour), start.Add(2*time.Hour)); err != nil || n != 1 {
		t.Fatalf("after Forget: %d, %v; want 1", n, err)
	}
	if s.Stats().Transactions != before.Transactions {
		t.Fatal("Forget ran a transaction")
	}
}
