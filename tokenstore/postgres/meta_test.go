package postgres

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"sync"
	"testing"

	"github.com/handoffd/handoff/tokenstore"
)

// TestMetaOneCreator: replicas that start at once on an empty database
// each run Meta's "read the pepper, or make one" together; exactly one
// makes it and every replica ends with that one.
func TestMetaOneCreator(t *testing.T) {
	schema := freshSchema(t)
	const replicas = 6
	stores := make([]*Store, replicas)
	for i := range stores {
		stores[i] = openSchema(t, schema, Options{MaxConns: 2})
	}
	for round := range 3 {
		name := "pepper" + string(rune('a'+round))
		got := make([][]byte, replicas)
		var (
			made int
			mu   sync.Mutex
			wg   sync.WaitGroup
		)
		for i, s := range stores {
			wg.Go(func() {
				err := s.Meta(context.Background(), func(m tokenstore.MetaTx) error {
					v, err := m.Get(name)
					if errors.Is(err, tokenstore.ErrNotFound) {
						v = make([]byte, 32)
						_, _ = rand.Read(v)
						if err := m.Put(name, v); err != nil {
							return err
						}
						mu.Lock()
						made++
						mu.Unlock()
						err = nil
					}
					got[i] = v
					return err
				})
				if err != nil {
					t.Errorf("Meta: %v", err)
				}
			})
		}
		wg.Wait()
		if made != 1 {
			t.Fatalf("round %d: %d replicas made the value, want 1", round, made)
		}
		for i := range got {
			if !bytes.Equal(got[i], got[0]) {
				t.Fatalf("round %d: replica %d holds another value", round, i)
			}
		}
	}
}
