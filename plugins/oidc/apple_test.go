package oidc

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/handoffd/handoff/plugins/oidc/oidctest"
	"github.com/handoffd/handoff/providers/providertest"
	"github.com/handoffd/handoff/providers/sdk"
)

const (
	appleTeam    = "TEAM123456"
	appleKeyID   = "KEY7654321"
	appleService = "com.example.web"
)

// writeP8 writes a P-256 key as Apple's .p8 file (PKCS #8 PEM).
func writeP8(t *testing.T, key *ecdsa.PrivateKey) string {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "AuthKey_"+appleKeyID+".p8")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func p256(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// appleSignIn runs the redirect flow against an Apple-mode Mini: the
// authorize endpoint answers a form_post page, whose fields the browser
// posts to the callback.
func appleSignIn(t *testing.T, c providertest.Conn, m *oidctest.Mini) (url.Values, sdk.Identity, error) {
	t.Helper()
	res, err := c.Begin(ctxT(t), sdk.BeginRequest{CallbackURL: callbackURL})
	if err != nil {
		t.Fatalf("Begin: %v", err)
	}
	resp, err := http.Get(res.AuthURL)
	if err != nil {
		t.Fatal(err)
	}
	action, fields := oidctest.FormPost(t, resp)
	if action != callbackURL {
		t.Fatalf("the form posts to %q, want the callback", action)
	}
	id, err := c.Complete(ctxT(t), sdk.CompleteRequest{Query: fields, State: res.State, CallbackURL: callbackURL})
	return fields, id, err
}

// TestApplePreset: Sign in with Apple asks for response_mode=form_post
// and Apple's scopes (name, not profile); the code exchange sends a
// client secret the fake token endpoint verifies as Apple does (an ES256
// JWT from the .p8 key: kid, iss the team, sub the services id, aud
// Apple, at most six months); the name comes from the first callback's
// user field only; a secret signed with another key is refused.
func TestApplePreset(t *testing.T) {
	key := p256(t)
	m := oidctest.NewMini(t, oidctest.MiniOptions{ClientID: appleService, Apple: &oidctest.AppleOptions{
		TeamID: appleTeam, KeyID: appleKeyID, Key: &key.PublicKey,
		User: `{"name":{"firstName":"Ada","lastName":"Lovelace"},"email":"ada@privaterelay.appleid.com"}`,
	}})
	m.SetClaims(map[string]any{"sub": "001234.apple", "email": "ada@privaterelay.appleid.com", "email_verified": "true", "is_private_email": "true"})
	cfg := func(p8 string) map[string]any {
		return map[string]any{"preset": "apple", "issuer": m.Issuer, "client_id": appleService,
			"team_id": appleTeam, "key_id": appleKeyID, "private_key_file": p8}
	}
	c := connect(t, "grpc", cfg(writeP8(t, key)))

	res, err := c.Begin(ctxT(t), sdk.BeginRequest{CallbackURL: callbackURL})
	if err != nil {
		t.Fatal(err)
	}
	auth, _ := url.Parse(res.AuthURL)
	if q := auth.Query(); q.Get("response_mode") != "form_post" || q.Get("scope") != "openid email name" {
		t.Fatalf("authorize URL %s: want response_mode=form_post and scope openid email name", res.AuthURL)
	}

	fields, id, err := appleSignIn(t, c, m)
	if err != nil {
		t.Fatalf("first sign-in: %v", err)
	}
	if fields.Get("user") == "" || id.Subject != "001234.apple" || id.Name != "Ada Lovelace" || !id.EmailVerified || id.Email != "ada@privaterelay.appleid.com" {
		t.Fatalf("first sign-in: identity %+v (user field %q)", id, fields.Get("user"))
	}
	fields, id, err = appleSignIn(t, c, m)
	if err != nil {
		t.Fatalf("second sign-in: %v", err)
	}
	if fields.Get("user") != "" || id.Name != "" || id.Subject != "001234.apple" {
		t.Fatalf("second sign-in: identity %+v, user field %q: Apple sends the name only once", id, fields.Get("user"))
	}
	secrets := m.ClientSecrets()
	if len(secrets) != 2 || secrets[0] == secrets[1] {
		t.Fatalf("the token endpoint saw %d client secrets, want 2", len(secrets))
	}

	// A .p8 of another key signs a secret Apple refuses (invalid_client).
	other := connect(t, "direct", cfg(writeP8(t, p256(t))))
	_, _, err = appleSignIn(t, other, m)
	wantErr(t, "a secret signed with another key", err, sdk.ErrMisconfigured, "invalid_client")
}

// TestAppleConfig: the keys Sign in with Apple needs are required, a
// client_secret is refused (the plugin signs its own), and a file that is
// not a P-256 .p8 key is refused naming private_key_file.
func TestAppleConfig(t *testing.T) {
	base := func(kv ...string) map[string]any {
		cfg := map[string]any{"preset": "apple", "client_id": appleService, "team_id": appleTeam, "key_id": appleKeyID, "private_key_file": "/x.p8"}
		for i := 0; i+1 < len(kv); i += 2 {
			if kv[i+1] == "" {
				delete(cfg, kv[i])
			} else {
				cfg[kv[i]] = kv[i+1]
			}
		}
		return cfg
	}
	for _, tc := range []struct {
		name string
		cfg  map[string]any
		key  string
	}{
		{"no team_id", base("team_id", ""), "team_id"},
		{"no key_id", base("key_id", ""), "key_id"},
		{"bad key_id", base("key_id", "KEY/../1"), "key_id"},
		{"no private_key_file", base("private_key_file", ""), "private_key_file"},
		{"client_secret", base("client_secret", "s"), "client_secret"},
		{"team_id elsewhere", map[string]any{"preset": "google", "client_id": "c", "team_id": appleTeam}, "team_id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig(providertest.RawConfig(t, tc.cfg))
			if err == nil || !strings.Contains(err.Error(), "config: "+tc.key+":") {
				t.Fatalf("error %v, want one naming %s", err, tc.key)
			}
		})
	}
	notKey := filepath.Join(t.TempDir(), "k.p8")
	_ = os.WriteFile(notKey, []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), 0o600)
	err := providertest.Direct(factory).Configure(ctxT(t), providertest.RawConfig(t, base("private_key_file", notKey)))
	if err == nil || !strings.Contains(err.Error(), "private_key_file") {
		t.Fatalf("Configure with a bad .p8: %v", err)
	}
}
