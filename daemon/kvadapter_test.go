package daemon

import (
	"context"
	"errors"
	"testing"

	"github.com/handoffd/handoff/providers/sdk"
)

// TestKVAdapterAdd: a plugin's counter lives in the store, and a key that
// holds no counter answers the SDK's invalid request, not a 500.
func TestKVAdapterAdd(t *testing.T) {
	s := newTestServer(t)
	ctx := context.Background()
	kv := kvAdapter{s.d.core.KV("provider/test")}
	for want := int64(1); want <= 3; want++ {
		if n, err := kv.Add(ctx, "c", 1, 0); err != nil || n != want {
			t.Fatalf("Add = %d, %v; want %d", n, err, want)
		}
	}
	if v, err := kv.Get(ctx, "c"); err != nil || string(v) != string(sdk.EncodeCounter(3)) {
		t.Fatalf("Get of the counter = %x, %v", v, err)
	}
	if err := kv.Put(ctx, "text", []byte("3"), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Add(ctx, "text", 1, 0); !errors.Is(err, sdk.ErrInvalidRequest) {
		t.Fatalf("Add to a text value: %v, want invalid request", err)
	}
}
