package daemon

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/handoffd/handoff/config"
	"github.com/handoffd/handoff/providers"
)

// ready fetches /readyz and decodes its body.
func (s *testServer) ready(t *testing.T) (int, readiness) {
	t.Helper()
	r := s.do(req{method: "GET", path: "/readyz"})
	var body readiness
	if err := json.Unmarshal(r.body, &body); err != nil {
		t.Fatalf("readyz body %q: %v", r.body, err)
	}
	return r.status, body
}

func findProvider(body readiness, name string) providerReady {
	for _, p := range body.Components.Providers {
		if p.Name == name {
			return p
		}
	}
	return providerReady{}
}

func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
	}
}

// TestReadyzRequiredProviderDown: /readyz answers 503 while a provider
// that is not optional is down (it crashed and its restarts fail), names
// it with its state, attempts and last error, and 200 again once it is
// back. Before, /readyz checked the store alone and answered 200.
func TestReadyzRequiredProviderDown(t *testing.T) {
	flag := filepath.Join(t.TempDir(), "fail")
	s := newTestServer(t, func(c *config.Config) {
		c.Providers = []config.Provider{echoProvider(t, "req", func(p *config.Provider) {
			p.Config = map[string]any{"fail_configure_if_exists": flag}
		})}
	})
	if code, body := s.ready(t); code != 200 || body.Status != "pass" || findProvider(body, "req").State != providers.HealthUp {
		t.Fatalf("readyz at start = %d %+v", code, body)
	}
	if err := os.WriteFile(flag, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	s.verify("req", map[string]any{"op": "crash"}, nil)
	waitUntil(t, 5*time.Second, "a failed restart", func() bool {
		_, body := s.ready(t)
		return findProvider(body, "req").Attempts >= 2
	})
	code, body := s.ready(t)
	p := findProvider(body, "req")
	if code != 503 || body.Status != "fail" || body.Components.Store.State != storeUp ||
		p.State != providers.HealthRestarting || p.Optional || !strings.Contains(p.Error, "configure asked to fail") {
		t.Fatalf("readyz with the provider down = %d %+v", code, body)
	}
	if r := s.do(req{method: "GET", path: "/healthz"}); r.status != 200 {
		t.Fatalf("healthz while a provider is down = %d: liveness must not follow readiness", r.status)
	}
	if err := os.Remove(flag); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 10*time.Second, "the provider back", func() bool { code, _ := s.ready(t); return code == 200 })
	if _, body := s.ready(t); findProvider(body, "req").Restarts != 1 || findProvider(body, "req").Attempts != 0 {
		t.Fatalf("readyz once back = %+v", body)
	}
}

// TestOptionalProviderServesAndComesUp: an optional provider whose binary
// is missing does not stop the daemon: /readyz answers 200 and lists it
// as restarting with its error, its sign-ins answer 503, and once the
// binary appears at its path it comes up and signs in.
func TestOptionalProviderServesAndComesUp(t *testing.T) {
	src, _ := echoPlugin(t)
	path := filepath.Join(t.TempDir(), "echo")
	s := newTestServer(t, func(c *config.Config) {
		// Alone: the host reuses a verified copy of a binary with the
		// same pin, which another echo provider would have made.
		c.Providers = []config.Provider{echoProvider(t, "later", func(p *config.Provider) { p.Plugin.Path, p.Optional = path, true })}
	})
	code, body := s.ready(t)
	p := findProvider(body, "later")
	if code != 200 || body.Status != "pass" || p.State != providers.HealthRestarting || !p.Optional || !strings.Contains(p.Error, "no such file") {
		t.Fatalf("readyz with an optional provider down = %d %+v", code, body)
	}
	if r := s.verify("later", map[string]any{"subject": "s"}, nil); r.status != 503 {
		t.Fatalf("sign-in through the down provider = %d %s", r.status, r.body)
	}
	raw, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, raw, 0o755); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 10*time.Second, "the optional provider up", func() bool {
		_, body := s.ready(t)
		return findProvider(body, "later").State == providers.HealthUp
	})
	if r := s.verify("later", map[string]any{"subject": "s"}, nil); r.status != 201 {
		t.Fatalf("sign-in once up = %d %s", r.status, r.body)
	}
}

// TestNewFailsOnRequiredProvider: New (serve) refuses to start when a
// provider that is not optional cannot start, and says how to serve
// without it.
func TestNewFailsOnRequiredProvider(t *testing.T) {
	cfg := config.Default()
	cfg.Data = t.TempDir()
	cfg.Providers = []config.Provider{echoProvider(t, "needed", func(p *config.Provider) { p.Plugin.Path = filepath.Join(t.TempDir(), "gone") })}
	d, err := New(context.Background(), Options{Config: cfg, OpenStore: testOpenStore})
	if err == nil {
		d.Close()
		t.Fatal("New served without a required provider")
	}
	if !strings.Contains(err.Error(), `provider "needed"`) || !strings.Contains(err.Error(), "optional: true") {
		t.Fatalf("New = %v", err)
	}
}

// TestReadyzStoreDown: a store that does not answer makes /readyz 503 with
// the store down and its error.
func TestReadyzStoreDown(t *testing.T) {
	s := newTestServer(t)
	if code, body := s.ready(t); code != 200 || body.Components.Store.State != storeUp {
		t.Fatalf("readyz = %d %+v", code, body)
	}
	s.d.core.Store().Close()
	code, body := s.ready(t)
	if code != 503 || body.Status != "fail" || body.Components.Store.State != storeDown || body.Components.Store.Error == "" {
		t.Fatalf("readyz with the store closed = %d %+v", code, body)
	}
}

// TestScrubRemovesSecrets: what /readyz shows of an error carries none of
// the config's secrets.
func TestScrubRemovesSecrets(t *testing.T) {
	cfg := config.Default()
	cfg.Store.DSN = "postgres://handoff:dbpass-1234@db:5432/h?sslmode=disable"
	cfg.Providers = []config.Provider{{Name: "o", Kind: "oidc",
		Config:  map[string]any{"client_secret": "cs-value-9876", "nested": map[string]any{"api_key": "ak-value-5555"}},
		Deliver: config.Deliver{Webhook: config.Webhook{Secret: "whsec_abcdefgh"}},
	}}
	d := &Daemon{cfg: cfg}
	for _, c := range []struct{ name, in string }{
		{"dsn", `failed to connect to postgres://handoff:dbpass-1234@db:5432/h`},
		{"dsn password alone", `auth failed for password dbpass-1234`},
		{"client secret", `the IdP refused client_secret cs-value-9876`},
		{"nested secret", `key ak-value-5555 refused`},
		{"webhook secret", `whsec_abcdefgh`},
		{"any url password", `dial https://u:other-pw@idp.example.com/token`},
		{"key=value", `connect host=db password=kv-pass user=x`},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := d.scrub(c.in)
			for _, secret := range []string{"dbpass-1234", "cs-value-9876", "ak-value-5555", "whsec_abcdefgh", "other-pw", "kv-pass"} {
				if strings.Contains(got, secret) {
					t.Fatalf("scrub(%q) = %q keeps %s", c.in, got, secret)
				}
			}
			if !strings.Contains(got, config.Redacted) {
				t.Fatalf("scrub(%q) = %q", c.in, got)
			}
		})
	}
}
