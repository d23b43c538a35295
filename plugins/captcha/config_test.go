package captcha

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/handoffd/handoff/providers/providertest"
	"github.com/handoffd/handoff/providers/sdk"
)

func TestConfigDefaults(t *testing.T) {
	for _, tc := range []struct {
		raw      string
		url      string
		version  int
		minScore float64 // -1: unset
	}{
		{`{"provider": "hcaptcha", "secret": "s"}`, HCaptchaURL, 0, -1},
		{`{"provider": "recaptcha", "secret": "s"}`, ReCAPTCHAURL, 2, -1},
		{`{"provider": "recaptcha", "version": 3, "secret": "s"}`, ReCAPTCHAURL, 3, 0.5},
		{`{"provider": "recaptcha", "version": 3, "secret": "s", "min_score": 0}`, ReCAPTCHAURL, 3, 0},
		{`{"provider": "Turnstile", "secret": "s"}`, TurnstileURL, 0, -1},
		{`{"provider": "turnstile", "secret": "s", "siteverify_url": "http://127.0.0.1:9/x"}`, "http://127.0.0.1:9/x", 0, -1},
	} {
		cfg, err := ParseConfig(json.RawMessage(tc.raw))
		if err != nil {
			t.Fatalf("%s: %v", tc.raw, err)
		}
		ms := -1.0
		if cfg.MinScore != nil {
			ms = *cfg.MinScore
		}
		if cfg.SiteverifyURL != tc.url || cfg.Version != tc.version || ms != tc.minScore ||
			cfg.Timeout.Duration != 5*time.Second || cfg.Field != "captcha" || len(cfg.Hostnames) != 0 || cfg.Action != "" {
			t.Errorf("%s: %+v", tc.raw, cfg)
		}
	}
	c, err := ParseConfig(json.RawMessage(`{"provider": "turnstile", "secret": "s", "timeout": 2}`))
	if err != nil || c.Timeout.Duration != 2*time.Second {
		t.Fatalf("timeout in seconds: %+v %v", c, err)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name, raw string
		keys      []string
	}{
		{"empty", ``, []string{"provider", "secret"}},
		{"unknown provider", `{"provider": "friendlycaptcha", "secret": "s"}`, []string{"provider"}},
		{"no secret", `{"provider": "turnstile"}`, []string{"secret"}},
		{"both secrets", `{"provider": "turnstile", "secret": "s", "secret_file": "/f"}`, []string{"secret_file"}},
		{"sitekey not hcaptcha", `{"provider": "turnstile", "secret": "s", "sitekey": "1x00000000000000000000AA"}`, []string{"sitekey"}},
		{"siteverify_url relative", `{"provider": "turnstile", "secret": "s", "siteverify_url": "/siteverify"}`, []string{"siteverify_url"}},
		{"siteverify_url ftp", `{"provider": "turnstile", "secret": "s", "siteverify_url": "ftp://x/y"}`, []string{"siteverify_url"}},
		{"siteverify_url credentials", `{"provider": "turnstile", "secret": "s", "siteverify_url": "https://u:p@x/y"}`, []string{"siteverify_url"}},
		{"hostname with a path", `{"provider": "turnstile", "secret": "s", "hostnames": ["ok.example.com", "https://x/"]}`, []string{"hostnames[1]"}},
		{"hostname empty", `{"provider": "turnstile", "secret": "s", "hostnames": [""]}`, []string{"hostnames[0]"}},
		{"action for hcaptcha", `{"provider": "hcaptcha", "secret": "s", "action": "login"}`, []string{"action"}},
		{"action for recaptcha v2", `{"provider": "recaptcha", "secret": "s", "action": "login"}`, []string{"action"}},
		{"min_score above 1", `{"provider": "recaptcha", "version": 3, "secret": "s", "min_score": 1.5}`, []string{"min_score"}},
		{"min_score negative", `{"provider": "recaptcha", "version": 3, "secret": "s", "min_score": -0.1}`, []string{"min_score"}},
		{"version 1", `{"provider": "recaptcha", "version": 1, "secret": "s"}`, []string{"version"}},
		{"version for turnstile", `{"provider": "turnstile", "version": 2, "secret": "s"}`, []string{"version"}},
		{"timeout zero", `{"provider": "turnstile", "secret": "s", "timeout": "0s"}`, []string{"timeout"}},
		{"timeout unreadable", `{"provider": "turnstile", "secret": "s", "timeout": "soon"}`, []string{"timeout"}},
		{"timeout too long", `{"provider": "turnstile", "secret": "s", "timeout": "2m"}`, []string{"timeout"}},
		{"field empty", `{"provider": "turnstile", "secret": "s", "field": ""}`, []string{"field"}},
		{"everything at once", `{"provider": "x", "sitekey": "k", "siteverify_url": "nope", "min_score": 2, "timeout": -1, "field": ""}`,
			[]string{"provider", "secret", "siteverify_url", "min_score", "timeout", "field"}},
		{"unknown key", `{"provider": "turnstile", "secret": "s", "secret_key": "s"}`, []string{"secret_key"}},
		{"wrong type", `{"provider": "turnstile", "secret": "s", "hostnames": "app.example.com"}`, []string{"hostnames"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig(json.RawMessage(tc.raw))
			if !errors.Is(err, sdk.ErrInvalidRequest) {
				t.Fatalf("err %v, want a config error", err)
			}
			keys := providertest.ConfigErrorKeys(t, err)
			if strings.Join(keys, " ") != strings.Join(tc.keys, " ") {
				t.Fatalf("keys %q, want %q (%v)", keys, tc.keys, err)
			}
		})
	}
}

// TestSecretFile: the secret is read from the file at Configure, trimmed;
// a missing or empty file is a config error naming secret_file.
func TestSecretFile(t *testing.T) {
	sv := newSiteverify(t, answerWith(sample(t, "turnstile_success", nil)))
	dir := t.TempDir()
	path := filepath.Join(dir, "secret")
	if err := os.WriteFile(path, []byte(turnstileSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := connect(t, "direct", map[string]any{"provider": "turnstile", "secret_file": path, "siteverify_url": sv.URL})
	if err := c.Check(ctxT(t), sdk.Request{Payload: payload(map[string]any{"captcha": newToken("f")})}); err != nil {
		t.Fatal(err)
	}
	if got := sv.last(t).Get("secret"); got != turnstileSecret {
		t.Fatalf("secret %q", got)
	}
	empty := filepath.Join(dir, "empty")
	_ = os.WriteFile(empty, []byte(" \n"), 0o600)
	for _, p := range []string{filepath.Join(dir, "missing"), empty} {
		c := providertest.Open(t, New)
		err := c.Configure(context.Background(), providertest.RawConfig(t, map[string]any{"provider": "turnstile", "secret_file": p}))
		if !errors.Is(err, sdk.ErrInvalidRequest) || !strings.Contains(err.Error(), "secret_file") {
			t.Fatalf("%s: %v", p, err)
		}
	}
}

// TestREADMEConfig parses every captcha provider in the README's
// examples with the plugin's own decoder, checks that the examples show
// every captcha provider type and set every key, and checks the
// configuration table against the config's keys.
func TestREADMEConfig(t *testing.T) {
	seen := map[string]bool{}
	for _, p := range providertest.READMEProviders(t, "README.md", "captcha") {
		cfg, err := ParseConfig(p.Config)
		if err != nil {
			t.Fatalf("the README's %s example does not parse: %v", p.Name, err)
		}
		seen[cfg.Provider] = true
		for _, k := range p.Keys {
			seen["key:"+k] = true
		}
	}
	for _, p := range []string{HCaptcha, ReCAPTCHA, Turnstile} {
		if !seen[p] {
			t.Errorf("the README has no %s example", p)
		}
	}
	for _, k := range providertest.ConfigKeys(t, DefaultConfig()) {
		if !seen["key:"+k] && k != "secret" {
			t.Errorf("no README example sets %s", k)
		}
	}
	providertest.CheckConfigTable(t, "README.md", DefaultConfig())
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{HCaptchaURL, ReCAPTCHAURL, TurnstileURL} {
		if !strings.Contains(string(readme), u) {
			t.Errorf("the README does not name the default %s", u)
		}
	}
}

func FuzzParseConfig(f *testing.F) {
	for _, s := range []string{`{}`, `{"provider":"turnstile","secret":"s"}`, `{"provider":"recaptcha","version":3,"min_score":0.2,"secret":"s"}`, `{"timeout":"x"}`, `[`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		_, err := ParseConfig(raw)
		if err != nil && !errors.Is(err, sdk.ErrInvalidRequest) {
			t.Fatalf("error %v does not match ErrInvalidRequest", err)
		}
	})
}
