package providertest_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/url"
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

// TestRequestFactsCrossAsUTF8 is the attack of a User-Agent (or a
// callback's query, or a scope) holding the byte 0xff: protobuf strings
// must be valid UTF-8, so sent as it is the call fails to marshal and the
// sign-in answers 500. The host mends each bad sequence to U+FFFD before
// the gRPC boundary, and the call goes through.
func TestRequestFactsCrossAsUTF8(t *testing.T) {
	c, _ := providertest.Connect(t, testverifier.New, nil)
	ctx := context.Background()
	const bad, mended = "curl/8\xff\xfe ok", "curl/8\uFFFD ok"

	id, err := c.Verify(ctx, sdk.Request{Payload: json.RawMessage(`{"subject":"s"}`), UserAgent: bad, ClientIP: "192.0.2.1\xff", RequestID: "r\xff"})
	if err != nil {
		t.Fatalf("verify with a 0xff User-Agent: %v", err)
	}
	if id.Claims["user_agent"] != mended || id.Claims["client_ip"] != "192.0.2.1\uFFFD" || id.Claims["request_id"] != "r\uFFFD" {
		t.Fatalf("the plugin got %q", id.Claims)
	}
	if err := c.Check(ctx, sdk.Request{Payload: json.RawMessage(`{"pass":true}`), UserAgent: bad}); err != nil {
		t.Fatalf("check with a 0xff User-Agent: %v", err)
	}
	res, err := c.Begin(ctx, sdk.BeginRequest{CallbackURL: "https://h/cb", Scopes: []string{"openid", "x\xff"}, RequestID: "r"})
	if err != nil || res.AuthURL == "" {
		t.Fatalf("begin with a 0xff scope: %+v %v", res, err)
	}
	id, err = c.Complete(ctx, sdk.CompleteRequest{Query: url.Values{"code": {bad}, "k\xff": {"v"}}, State: []byte("st")})
	if err != nil || id.Subject != mended {
		t.Fatalf("complete with a 0xff query: %+v %v", id, err)
	}
	en, err := c.Enroll(ctx, sdk.EnrollRequest{UserID: "u\xff", Payload: json.RawMessage(`{}`)})
	if err != nil || en.Subject != "u\uFFFD" {
		t.Fatalf("enroll with a 0xff user id: %+v %v", en, err)
	}
}
