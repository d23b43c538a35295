package biometric

import (
	"context"
	"encoding/base64"
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

const testSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" // 24 bytes

func TestConfigDefaults(t *testing.T) {
	for _, raw := range []string{
		`{"url": "https://match.example/v1", "secret": "` + testSecret + `"}`,
		`{"url": "https://match.example/v1", "secret": "` + testSecret + `", "min_score": null}`,
	} {
		cfg, err := ParseConfig(json.RawMessage(raw))
		if err != nil {
			t.Fatal(err)
		}
		if *cfg.MinScore != 0.9 || cfg.Tolerance.Duration != 5*time.Minute || cfg.Timeout.Duration != 3*time.Second || len(cfg.Headers) != 0 || cfg.ResponseSecret != "" {
			t.Fatalf("defaults %+v", cfg)
		}
	}
	cfg, err := ParseConfig(json.RawMessage(`{"url": "http://127.0.0.1:9", "secret": "` + testSecret + `", "min_score": 0, "tolerance": 30, "timeout": "500ms"}`))
	if err != nil || *cfg.MinScore != 0 || cfg.Tolerance.Duration != 30*time.Second || cfg.Timeout.Duration != 500*time.Millisecond {
		t.Fatalf("%+v %v", cfg, err)
	}
}

func TestConfigErrors(t *testing.T) {
	short := "whsec_" + base64.StdEncoding.EncodeToString(make([]byte, 16))
	long := "whsec_" + base64.StdEncoding.EncodeToString(make([]byte, 65))
	for _, tc := range []struct {
		name, raw string
		keys      []string
	}{
		{"empty", ``, []string{"url", "secret"}},
		{"url relative", `{"url": "/match", "secret": "` + testSecret + `"}`, []string{"url"}},
		{"url with credentials", `{"url": "https://u:p@match.example", "secret": "` + testSecret + `"}`, []string{"url"}},
		{"secret without prefix", `{"url": "https://m.example", "secret": "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}`, []string{"secret"}},
		{"secret not base64", `{"url": "https://m.example", "secret": "whsec_***"}`, []string{"secret"}},
		{"secret too short", `{"url": "https://m.example", "secret": "` + short + `"}`, []string{"secret"}},
		{"secret too long", `{"url": "https://m.example", "secret": "` + long + `"}`, []string{"secret"}},
		{"both secrets", `{"url": "https://m.example", "secret": "` + testSecret + `", "secret_file": "/f"}`, []string{"secret_file"}},
		{"response secret bad", `{"url": "https://m.example", "secret": "` + testSecret + `", "response_secret": "x"}`, []string{"response_secret"}},
		{"both response secrets", `{"url": "https://m.example", "secret": "` + testSecret + `", "response_secret": "` + testSecret + `", "response_secret_file": "/f"}`, []string{"response_secret_file"}},
		{"min_score", `{"url": "https://m.example", "secret": "` + testSecret + `", "min_score": 1.01}`, []string{"min_score"}},
		{"tolerance zero", `{"url": "https://m.example", "secret": "` + testSecret + `", "tolerance": 0}`, []string{"tolerance"}},
		{"tolerance too long", `{"url": "https://m.example", "secret": "` + testSecret + `", "tolerance": "2h"}`, []string{"tolerance"}},
		{"timeout unreadable", `{"url": "https://m.example", "secret": "` + testSecret + `", "timeout": "fast"}`, []string{"timeout"}},
		{"header reserved", `{"url": "https://m.example", "secret": "` + testSecret + `", "headers": {"webhook-signature": "v1,x", "content-type": "text/plain"}}`, []string{"headers.content-type", "headers.webhook-signature"}},
		{"header name", `{"url": "https://m.example", "secret": "` + testSecret + `", "headers": {"X Key": "1"}}`, []string{"headers.X Key"}},
		{"header value", `{"url": "https://m.example", "secret": "` + testSecret + `", "headers": {"X-Key": "a\r\nInjected: 1"}}`, []string{"headers.X-Key"}},
		{"everything at once", `{"min_score": -1, "tolerance": "x", "timeout": 0}`, []string{"url", "secret", "min_score", "tolerance", "timeout"}},
		{"unknown key", `{"url": "https://m.example", "secret": "` + testSecret + `", "endpoint": "x"}`, []string{"endpoint"}},
		{"wrong type", `{"url": "https://m.example", "secret": "` + testSecret + `", "headers": ["X-Key: 1"]}`, []string{"headers"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig(json.RawMessage(tc.raw))
			if !errors.Is(err, sdk.ErrInvalidRequest) {
				t.Fatalf("err %v, want a config error", err)
			}
			if strings.Contains(err.Error(), "Injected") {
				t.Fatalf("the error echoes a header value: %v", err)
			}
			keys := providertest.ConfigErrorKeys(t, err)
			if strings.Join(keys, " ") != strings.Join(tc.keys, " ") {
				t.Fatalf("keys %q, want %q (%v)", keys, tc.keys, err)
			}
		})
	}
}

// TestSecretFiles: both secrets may come from files, read at Configure.
func TestSecretFiles(t *testing.T) {
	secret, vendorSecret := newSecret(t), newSecret(t)
	dir := t.TempDir()
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	vd := newVendor(t, secret)
	vd.respSign = vendorSecret
	c := connect(t, "direct", map[string]any{"url": vd.URL, "secret_file": write("s", secret), "response_secret_file": write("r", vendorSecret)})
	if _, err := c.Verify(ctxT(t), verifyReq(map[string]any{})); err != nil {
		t.Fatal(err)
	}
	for _, cfg := range []map[string]any{
		{"url": vd.URL, "secret_file": filepath.Join(dir, "missing")},
		{"url": vd.URL, "secret_file": write("bad", "not-a-secret")},
		{"url": vd.URL, "secret": secret, "response_secret_file": filepath.Join(dir, "missing")},
	} {
		c := providertest.Open(t, New)
		err := c.Configure(context.Background(), providertest.RawConfig(t, cfg))
		if !errors.Is(err, sdk.ErrInvalidRequest) || !strings.Contains(err.Error(), "secret_file") {
			t.Fatalf("%v: %v", cfg, err)
		}
	}
}

// TestREADMEConfig parses the README's provider example with the plugin's
// own decoder, and checks the configuration table against the config's
// keys.
func TestREADMEConfig(t *testing.T) {
	ps := providertest.READMEProviders(t, "README.md", "biometric")
	if len(ps) != 1 {
		t.Fatalf("want one biometric provider, got %+v", ps)
	}
	cfg, err := ParseConfig(ps[0].Config)
	if err != nil {
		t.Fatalf("the README example does not parse: %v", err)
	}
	def := DefaultConfig()
	if *cfg.MinScore != *def.MinScore || cfg.Tolerance != def.Tolerance || cfg.Timeout != def.Timeout {
		t.Errorf("the README example %+v should spell out the defaults", cfg)
	}
	providertest.CheckConfigTable(t, "README.md", def)
}

func FuzzParseConfig(f *testing.F) {
	for _, s := range []string{`{}`, `{"url":"https://x","secret":"` + testSecret + `"}`, `{"headers":{"a":"b"}}`, `{"tolerance":"x"}`, `[`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		_, err := ParseConfig(raw)
		if err != nil && !errors.Is(err, sdk.ErrInvalidRequest) {
			t.Fatalf("error %v does not match ErrInvalidRequest", err)
		}
	})
}
