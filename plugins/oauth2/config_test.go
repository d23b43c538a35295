package oauth2

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/handoffd/handoff/providers/providertest"
)

// TestPresetEndpoints pins each preset's endpoints, scopes, PKCE and
// client authentication to what the IdP documents.
func TestPresetEndpoints(t *testing.T) {
	for _, tc := range []struct {
		raw                                string
		authorize, token, userinfo, emails string
		scopes                             []string
		pkce                               bool
		auth                               string
	}{
		{`{"preset": "github", "client_id": "c", "client_secret": "s"}`,
			"https://github.com/login/oauth/authorize", "https://github.com/login/oauth/access_token", "https://api.github.com/user", "https://api.github.com/user/emails",
			[]string{"read:user", "user:email"}, true, AuthPost},
		{`{"preset": "GitHub", "base_url": "https://github.example.com/", "client_id": "c", "client_secret": "s", "pkce": false}`,
			"https://github.example.com/login/oauth/authorize", "https://github.example.com/login/oauth/access_token", "https://github.example.com/api/v3/user", "https://github.example.com/api/v3/user/emails",
			[]string{"read:user", "user:email"}, false, AuthPost},
		{`{"preset": "discord", "client_id": "c", "client_secret": "s"}`,
			"https://discord.com/oauth2/authorize", "https://discord.com/api/oauth2/token", "https://discord.com/api/users/@me", "",
			[]string{"identify", "email"}, false, AuthBasic},
		{`{"authorize_url": "https://idp.example.com/authorize", "token_url": "https://idp.example.com/token", "userinfo_url": "https://idp.example.com/me", "client_id": "c", "client_auth": "post"}`,
			"https://idp.example.com/authorize", "https://idp.example.com/token", "https://idp.example.com/me", "",
			[]string{}, true, AuthPost},
	} {
		cfg, err := ParseConfig(json.RawMessage(tc.raw))
		if err != nil {
			t.Fatalf("%s: %v", tc.raw, err)
		}
		if cfg.AuthorizeURL != tc.authorize || cfg.TokenURL != tc.token || cfg.UserinfoURL != tc.userinfo || cfg.EmailsURL != tc.emails ||
			!reflect.DeepEqual(cfg.Scopes, tc.scopes) && len(cfg.Scopes)+len(tc.scopes) > 0 || *cfg.PKCE != tc.pkce || cfg.ClientAuth != tc.auth {
			t.Errorf("%s: %+v", tc.raw, cfg)
		}
	}
}

func TestConfigErrors(t *testing.T) {
	const gh = `"preset": "github", "client_id": "c", "client_secret": "s"`
	for _, tc := range []struct {
		name, raw string
		keys      []string
	}{
		{"empty", ``, []string{"authorize_url", "token_url", "userinfo_url", "client_id"}},
		{"unknown preset", `{"preset": "gitlab", "client_id": "c", "client_secret": "s"}`, []string{"preset"}},
		{"preset without a secret", `{"preset": "discord", "client_id": "c"}`, []string{"client_secret"}},
		{"both secrets", `{` + gh + `, "client_secret_file": "/f"}`, []string{"client_secret_file"}},
		{"base_url on discord", `{"preset": "discord", "client_id": "c", "client_secret": "s", "base_url": "https://x.example"}`, []string{"base_url"}},
		{"emails_url generic", `{"authorize_url": "https://i/a", "token_url": "https://i/t", "userinfo_url": "https://i/u", "client_id": "c", "emails_url": "https://i/e"}`, []string{"emails_url"}},
		{"claims with a preset", `{` + gh + `, "claims": {"subject": "login"}}`, []string{"claims"}},
		{"generic without a subject", `{"authorize_url": "https://i/a", "token_url": "https://i/t", "userinfo_url": "https://i/u", "client_id": "c", "claims": {"subject": ""}}`, []string{"claims.subject"}},
		{"bad path", `{"authorize_url": "https://i/a", "token_url": "https://i/t", "userinfo_url": "https://i/u", "client_id": "c", "claims": {"email": "a..b"}}`, []string{"claims.email"}},
		{"plain http", `{` + gh + `, "base_url": "http://github.example.com"}`, []string{"base_url"}},
		{"token_url with a query", `{` + gh + `, "token_url": "https://github.example.com/t?x=1"}`, []string{"token_url"}},
		{"credentials in a URL", `{` + gh + `, "userinfo_url": "https://u:p@github.example.com/user"}`, []string{"userinfo_url"}},
		{"relative URL", `{` + gh + `, "authorize_url": "/authorize"}`, []string{"authorize_url"}},
		{"client_auth", `{` + gh + `, "client_auth": "jwt"}`, []string{"client_auth"}},
		{"client_id whitespace", `{"preset": "github", "client_id": "a b", "client_secret": "s"}`, []string{"client_id"}},
		{"scope with a space", `{` + gh + `, "scopes": ["read:user user:email"]}`, []string{"scopes[0]"}},
		{"timeout too long", `{` + gh + `, "http_timeout": "3m"}`, []string{"http_timeout"}},
		{"unknown key", `{` + gh + `, "secret": "s"}`, []string{"secret"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig(json.RawMessage(tc.raw))
			if err == nil {
				t.Fatal("no error")
			}
			got := providertest.ConfigErrorKeys(t, err)
			slices.Sort(got)
			want := slices.Clone(tc.keys)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Fatalf("keys %v, want %v (%v)", got, want, err)
			}
		})
	}
}

func TestClientSecretFile(t *testing.T) {
	cfg, err := ParseConfig(json.RawMessage(`{"preset": "github", "client_id": "c", "client_secret_file": "testdata/client_secret"}`))
	if err != nil {
		t.Fatal(err)
	}
	if s, err := cfg.loadSecret(); err != nil || s != "gh-secret-from-file" {
		t.Fatalf("%q %v", s, err)
	}
	cfg.ClientSecretFile = "testdata/missing"
	if _, err := cfg.loadSecret(); err == nil || !strings.Contains(err.Error(), "client_secret_file") || strings.Contains(err.Error(), "gh-secret") {
		t.Fatalf("%v", err)
	}
}

// TestREADMEConfig parses every provider example of the README with the
// plugin's own decoder, checks that it names the presets as Appwrite's
// SDK does (github, discord), and checks the configuration table against
// the config's keys both ways.
func TestREADMEConfig(t *testing.T) {
	ps := providertest.READMEProviders(t, "README.md", "oauth2")
	names := map[string]string{}
	for _, p := range ps {
		cfg, err := ParseConfig(p.Config)
		if err != nil {
			t.Fatalf("the README's %s example does not parse: %v", p.Name, err)
		}
		names[p.Name] = cfg.Preset
	}
	if names["github"] != PresetGitHub || names["discord"] != PresetDiscord {
		t.Errorf("the README should name its github and discord providers as Appwrite's SDK does: %v", names)
	}
	redirect, _ := ps[0].Doc["redirect"].(map[string]any)
	if allow, _ := redirect["allow"].([]any); len(allow) == 0 {
		t.Error("the first example lacks the redirect.allow the flow needs")
	}
	providertest.CheckConfigTable(t, "README.md", DefaultConfig())
}

// FuzzParseConfig: any config either parses into one with every endpoint
// set and checked, or fails with config errors; it never panics.
func FuzzParseConfig(f *testing.F) {
	f.Add(`{"preset": "github", "client_id": "c", "client_secret": "s"}`)
	f.Add(`{"preset": "github", "base_url": "https://ghe.example/", "client_id": "c", "client_secret": "s", "pkce": false}`)
	f.Add(`{"preset": "discord", "client_id": "c", "client_secret": "s", "scopes": ["identify"]}`)
	f.Add(`{"authorize_url": "https://i/a?x=1", "token_url": "https://i/t", "userinfo_url": "https://i/u", "client_id": "c", "claims": {"subject": "a.b.0"}}`)
	f.Fuzz(func(t *testing.T, raw string) {
		cfg, err := ParseConfig(json.RawMessage(raw))
		if err != nil {
			return
		}
		if cfg.AuthorizeURL == "" || cfg.TokenURL == "" || cfg.UserinfoURL == "" || cfg.PKCE == nil || cfg.ClientID == "" || cfg.Claims.Subject == "" && cfg.Preset == "" {
			t.Fatalf("%s parsed into %+v", raw, cfg)
		}
		for _, u := range []string{cfg.TokenURL, cfg.UserinfoURL} {
			if checkURL(u, true) != "" {
				t.Fatalf("%s: endpoint %q passed", raw, u)
			}
		}
	})
}
