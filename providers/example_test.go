package providers

import (
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base32"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/handoffd/handoff/providers/sdk"
)

// TestExampleTOTPPlugin runs examples/plugin as handoff would: a pinned
// third-party binary, enrolled and verified through the host.
func TestExampleTOTPPlugin(t *testing.T) {
	spec := external(t, "totp", "plugin")
	spec.Config = json.RawMessage(`{"issuer":"MyApp"}`)
	h, err := newHost(t, Options{}, spec)
	if err != nil {
		t.Fatal(err)
	}
	p := mustProvider(t, h, "totp")
	if info := p.Info(); info.Name != "totp" || !info.ProvesIdentity || len(info.Capabilities) != 1 || info.Capabilities[0] != sdk.CapEnroller {
		t.Fatalf("info = %+v", info)
	}
	ctx := context.Background()
	res, err := p.Enroll(ctx, sdk.EnrollRequest{UserID: "u1", Payload: json.RawMessage(`{}`)})
	if err != nil || res.Subject != "u1" {
		t.Fatalf("enroll: %+v %v", res, err)
	}
	var data struct{ Secret string }
	if err := json.Unmarshal(res.Data, &data); err != nil {
		t.Fatal(err)
	}
	secret, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(data.Secret)
	if err != nil {
		t.Fatal(err)
	}
	mac := hmac.New(sha1.New, secret)
	_ = binary.Write(mac, binary.BigEndian, uint64(time.Now().Unix()/30))
	sum := mac.Sum(nil)
	off := sum[len(sum)-1] & 0x0f
	code := fmt.Sprintf("%06d", (binary.BigEndian.Uint32(sum[off:])&0x7fffffff)%1_000_000)

	req := sdk.Request{Payload: json.RawMessage(fmt.Sprintf(`{"userId":"u1","code":%q}`, code))}
	id, err := p.Verify(ctx, req)
	if err != nil || id.Subject != "u1" {
		t.Fatalf("verify: %+v %v", id, err)
	}
	if _, err := p.Verify(ctx, req); !errors.Is(err, sdk.ErrInvalidCredentials) {
		t.Fatalf("replayed code: %v", err)
	}
	if _, err := p.Begin(ctx, sdk.BeginRequest{}); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("Begin: %v", err)
	}
}
