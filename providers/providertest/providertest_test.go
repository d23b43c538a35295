package providertest_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/handoffd/handoff/providers/internal/testverifier"
	"github.com/handoffd/handoff/providers/providertest"
	"github.com/handoffd/handoff/providers/sdk"
)

func TestConformanceEcho(t *testing.T) {
	providertest.Run(t, providertest.Suite{
		New:    testverifier.New,
		Config: map[string]any{"greeting": "hi"},
		Valid: func(t *testing.T, c providertest.Conn) json.RawMessage {
			return json.RawMessage(`{"op":"ok","subject":"s1"}`)
		},
	})
}

func TestConformanceMinimal(t *testing.T) {
	providertest.Run(t, providertest.Suite{New: testverifier.NewMinimal})
}

func TestHarness(t *testing.T) {
	c, kv := providertest.Connect(t, testverifier.New, map[string]any{"greeting": "hey"})
	ctx := context.Background()
	id, err := c.Verify(ctx, sdk.Request{Payload: json.RawMessage(`{"op":"kvput","key":"a","value":"b"}`)})
	if err != nil || id.Name != "hey" {
		t.Fatalf("%+v %v", id, err)
	}
	if v, err := kv.Get(ctx, "a"); err != nil || string(v) != "b" {
		t.Fatalf("kv: %q %v", v, err)
	}
	_, err = c.Verify(ctx, sdk.Request{Payload: json.RawMessage(`{"op":"panic"}`)})
	if !errors.Is(err, sdk.ErrInternal) {
		t.Fatalf("panic: %v", err)
	}
	_, err = c.Verify(ctx, sdk.Request{Payload: json.RawMessage(`{"op":"kvget","key":"nope"}`)})
	if !errors.Is(err, sdk.ErrNotFound) {
		t.Fatalf("kv miss: %v", err)
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	id, err = c.Verify(short, sdk.Request{Payload: json.RawMessage(`{"op":"deadline"}`)})
	if err != nil || id.Claims["deadline_ms"].(float64) > 50 {
		t.Fatalf("deadline did not cross: %+v %v", id.Claims, err)
	}
	if keys := kv.Keys(); len(keys) != 1 || keys[0] != "a" {
		t.Fatalf("keys = %v", keys)
	}
}
