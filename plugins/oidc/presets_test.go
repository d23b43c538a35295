package oidc

import (
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/handoffd/handoff/plugins/oidc/oidctest"
	"github.com/handoffd/handoff/providers/providertest"
	"github.com/handoffd/handoff/providers/sdk"
)

const (
	miniClient = "preset-client"
	miniSecret = "preset-secret-789"
	tenantA    = "aaaaaaaa-1111-4111-8111-aaaaaaaaaaaa"
	tenantB    = "bbbbbbbb-2222-4222-8222-bbbbbbbbbbbb"
)

// TestPresetIssuers: each preset derives the issuer its IdP documents
// from the IdP's own keys, and an explicit issuer overrides it.
func TestPresetIssuers(t *testing.T) {
	for _, tc := range []struct {
		name     string
		cfg      map[string]any
		issuer   string
		template string
	}{
		{"auth0", map[string]any{"preset": "auth0", "domain": "Example.EU.auth0.com"}, "https://example.eu.auth0.com/", ""},
		{"auth0 issuer override", map[string]any{"preset": "auth0", "domain": "example.eu.auth0.com", "issuer": "http://127.0.0.1:8080/"}, "http://127.0.0.1:8080/", ""},
		{"auth0 issuer alone", map[string]any{"preset": "auth0", "issuer": "http://127.0.0.1:8080/"}, "http://127.0.0.1:8080/", ""},
		{"google", map[string]any{"preset": "google"}, "https://accounts.google.com", ""},
		{"okta org", map[string]any{"preset": "okta", "domain": "example.okta.com"}, "https://example.okta.com", ""},
		{"okta default", map[string]any{"preset": "okta", "domain": "example.okta.com", "authorization_server": "default"}, "https://example.okta.com/oauth2/default", ""},
		{"okta custom", map[string]any{"preset": "okta", "domain": "example.okta.com", "authorization_server": "aus1a2b3c4"}, "https://example.okta.com/oauth2/aus1a2b3c4", ""},
		{"keycloak", map[string]any{"preset": "keycloak", "base_url": "https://sso.example.com/", "realm": "staff"}, "https://sso.example.com/realms/staff", ""},
		{"gitlab.com", map[string]any{"preset": "gitlab"}, "https://gitlab.com", ""},
		{"gitlab self-hosted", map[string]any{"preset": "gitlab", "base_url": "https://git.example.com"}, "https://git.example.com", ""},
		{"microsoft common", map[string]any{"preset": "microsoft", "tenant": "common"}, "https://login.microsoftonline.com/common/v2.0", "https://login.microsoftonline.com/{tenantid}/v2.0"},
		{"microsoft organizations", map[string]any{"preset": "microsoft", "tenant": "organizations"}, "https://login.microsoftonline.com/organizations/v2.0", "https://login.microsoftonline.com/{tenantid}/v2.0"},
		{"microsoft consumers", map[string]any{"preset": "microsoft", "tenant": "consumers"}, "https://login.microsoftonline.com/consumers/v2.0", "https://login.microsoftonline.com/9188040d-6c67-4c5b-b112-36a304b66dad/v2.0"},
		{"microsoft tenant", map[string]any{"preset": "microsoft", "tenant": strings.ToUpper(tenantA), "base_url": "https://login.microsoftonline.us"}, "https://login.microsoftonline.us/" + tenantA + "/v2.0", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg["client_id"] = "c"
			cfg, err := ParseConfig(providertest.RawConfig(t, tc.cfg))
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Issuer != tc.issuer || cfg.tenant.template != tc.template {
				t.Fatalf("issuer %q template %q, want %q %q", cfg.Issuer, cfg.tenant.template, tc.issuer, tc.template)
			}
		})
	}
}

// TestPresetConfigErrors: a preset's missing or foreign keys are refused,
// each error naming its key.
func TestPresetConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  map[string]any
		key  string
	}{
		{"unknown preset", map[string]any{"preset": "facebook"}, "preset"},
		{"auth0 without domain", map[string]any{"preset": "auth0"}, "domain"},
		{"okta without domain", map[string]any{"preset": "okta"}, "domain"},
		{"okta bad server", map[string]any{"preset": "okta", "domain": "e.okta.com", "authorization_server": "../x"}, "authorization_server"},
		{"microsoft without tenant", map[string]any{"preset": "microsoft"}, "tenant"},
		{"microsoft bad tenant", map[string]any{"preset": "microsoft", "tenant": "contoso"}, "tenant"},
		{"microsoft issuer", map[string]any{"preset": "microsoft", "tenant": "common", "issuer": "https://x.example"}, "issuer"},
		{"keycloak without realm", map[string]any{"preset": "keycloak", "base_url": "https://sso.example.com"}, "realm"},
		{"keycloak without base_url", map[string]any{"preset": "keycloak", "realm": "r"}, "base_url"},
		{"keycloak realm path", map[string]any{"preset": "keycloak", "base_url": "https://sso.example.com", "realm": "a/b"}, "realm"},
		{"gitlab http base_url", map[string]any{"preset": "gitlab", "base_url": "http://git.example.com"}, "base_url"},
		{"realm without keycloak", map[string]any{"preset": "gitlab", "realm": "r"}, "realm"},
		{"tenant on generic", map[string]any{"issuer": "https://idp.example.com", "tenant": "common"}, "tenant"},
		{"domain on google", map[string]any{"preset": "google", "domain": "example.com"}, "domain"},
		{"require false email", map[string]any{"preset": "google", "require": map[string]any{"email_verified": false}}, "require.email_verified"},
		{"require empty list", map[string]any{"preset": "google", "require": map[string]any{"groups": []any{}}}, "require.groups"},
		{"require object", map[string]any{"preset": "google", "require": map[string]any{"org": map[string]any{"a": 1}}}, "require.org"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg["client_id"] = "c"
			_, err := ParseConfig(providertest.RawConfig(t, tc.cfg))
			if err == nil || !strings.Contains(err.Error(), "config: "+tc.key+":") {
				t.Fatalf("error %v, want one naming %s", err, tc.key)
			}
		})
	}
}

// miniSignIn runs the redirect flow against a Mini provider: Begin, the
// authorize redirect, Complete.
func miniSignIn(t *testing.T, c providertest.Conn, m *oidctest.Mini) (sdk.Identity, error) {
	t.Helper()
	res, err := c.Begin(ctxT(t), sdk.BeginRequest{CallbackURL: callbackURL})
	if err != nil {
		t.Fatalf("Begin: %v", err)
	}
	if !strings.HasPrefix(res.AuthURL, strings.TrimSuffix(m.Issuer, "/")+oidctest.AuthorizePath+"?") {
		t.Fatalf("authorize URL %s, want the provider's under %s", res.AuthURL, m.Issuer)
	}
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noFollow.Get(res.AuthURL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, err := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusFound || err != nil || !strings.HasPrefix(loc.String(), callbackURL+"?") {
		t.Fatalf("authorize answered %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	return c.Complete(ctxT(t), sdk.CompleteRequest{Query: loc.Query(), State: res.State, CallbackURL: callbackURL})
}

func miniConfig(preset string, kv ...any) map[string]any {
	cfg := map[string]any{"preset": preset, "client_id": miniClient, "client_secret": miniSecret}
	for i := 0; i+1 < len(kv); i += 2 {
		cfg[kv[i].(string)] = kv[i+1]
	}
	return cfg
}

func person(extra map[string]any) map[string]any {
	c := map[string]any{"sub": "person-1", "email": "p@example.com", "email_verified": true, "name": "Pat"}
	for k, v := range extra {
		c[k] = v
	}
	return c
}

// TestPresetsLoopback signs in through each preset's redirect flow
// against a loopback provider at the path the IdP serves its issuer
// under: Keycloak's realm (and its RFC 9207 iss in the callback), Okta's
// custom authorization server, GitLab's root, Google's with the hd claim.
func TestPresetsLoopback(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts oidctest.MiniOptions
		cfg  func(m *oidctest.Mini) map[string]any
	}{
		{"keycloak", oidctest.MiniOptions{Path: "/realms/staff", CallbackIss: true}, func(m *oidctest.Mini) map[string]any {
			return miniConfig("keycloak", "base_url", m.Base, "realm", "staff")
		}},
		{"okta custom authorization server", oidctest.MiniOptions{Path: "/oauth2/default"}, func(m *oidctest.Mini) map[string]any {
			return miniConfig("okta", "domain", "example.okta.com", "authorization_server", "default", "issuer", m.Issuer)
		}},
		{"okta org authorization server", oidctest.MiniOptions{}, func(m *oidctest.Mini) map[string]any {
			return miniConfig("okta", "issuer", m.Issuer)
		}},
		{"gitlab self-hosted", oidctest.MiniOptions{}, func(m *oidctest.Mini) map[string]any {
			return miniConfig("gitlab", "base_url", m.Base)
		}},
		{"google", oidctest.MiniOptions{}, func(m *oidctest.Mini) map[string]any {
			return miniConfig("google", "issuer", m.Issuer, "require", map[string]any{"hd": "example.com", "email_verified": true})
		}},
		{"auth0 issuer override", oidctest.MiniOptions{Path: "/"}, func(m *oidctest.Mini) map[string]any {
			return miniConfig("auth0", "domain", "example.eu.auth0.com", "issuer", m.Issuer)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.opts.ClientID, tc.opts.ClientSecret = miniClient, miniSecret
			m := oidctest.NewMini(t, tc.opts)
			m.SetClaims(person(map[string]any{"hd": "example.com"}))
			c := connect(t, "direct", tc.cfg(m))
			id, err := miniSignIn(t, c, m)
			if err != nil {
				t.Fatalf("Complete: %v", err)
			}
			if id.Subject != "person-1" || id.Email != "p@example.com" || !id.EmailVerified || id.Claims["iss"] != m.Issuer {
				t.Fatalf("identity %+v", id)
			}
			// updateSession's refresh at the preset's token endpoint; the
			// IdP keeping its refresh token, the old one stays.
			rr, err := c.Refresh(ctxT(t), sdk.RefreshRequest{RefreshToken: id.RefreshToken})
			if err != nil || !strings.HasPrefix(rr.AccessToken, "refreshed-") || rr.RefreshToken != id.RefreshToken || rr.AccessTokenExpiry.IsZero() {
				t.Fatalf("Refresh: %t %t %v, %v", strings.HasPrefix(rr.AccessToken, "refreshed-"), rr.RefreshToken == id.RefreshToken, rr.AccessTokenExpiry, err)
			}
			_, err = c.Refresh(ctxT(t), sdk.RefreshRequest{RefreshToken: "rt-not-issued"})
			if !errors.Is(err, sdk.ErrInvalidCredentials) {
				t.Fatalf("Refresh with a token not issued: %v, want invalid credentials", err)
			}
		})
	}
}

// TestRequirePolicy: a sign-in whose claims fail require is refused as
// invalid credentials naming the claim and never its value, in both
// flows; one that meets it (a list claim sharing an element) passes.
func TestRequirePolicy(t *testing.T) {
	m := oidctest.NewMini(t, oidctest.MiniOptions{ClientID: miniClient, ClientSecret: miniSecret})
	require := map[string]any{"email_verified": true, "hd": "example.com", "groups": []any{"staff", "admins"}}
	c := connect(t, "grpc", miniConfig("google", "issuer", m.Issuer, "require", require))
	ok := map[string]any{"hd": "example.com", "groups": []any{"interns", "staff"}}
	for _, tc := range []struct {
		name   string
		claims map[string]any
		want   string // "" passes
	}{
		{"meets it", person(ok), ""},
		{"a personal account (no hd)", person(map[string]any{"groups": []any{"staff"}}), `the provider requires the claim "hd"`},
		{"another domain", person(map[string]any{"hd": "attacker.example", "groups": []any{"staff"}}), `the claim "hd" does not have a value`},
		{"no group in the list", person(map[string]any{"hd": "example.com", "groups": []any{"interns"}}), `the claim "groups"`},
		{"unverified email", person(map[string]any{"hd": "example.com", "groups": "staff", "email_verified": false}), "require.email_verified"},
		{"verified but no email", person(map[string]any{"hd": "example.com", "groups": "staff", "email": nil}), "require.email_verified"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m.SetClaims(tc.claims)
			id, err := miniSignIn(t, c, m)
			native := m.Sign(t, withToken(m, tc.claims))
			_, nerr := c.Verify(ctxT(t), sdk.Request{Payload: payload(t, map[string]any{"id_token": native})})
			if tc.want == "" {
				if err != nil || nerr != nil || id.Subject != "person-1" {
					t.Fatalf("refused: %v / %v", err, nerr)
				}
				return
			}
			wantErr(t, "redirect flow", err, sdk.ErrInvalidCredentials, tc.want)
			wantErr(t, "native flow", nerr, sdk.ErrInvalidCredentials, tc.want)
			if strings.Contains(err.Error(), "attacker.example") {
				t.Fatalf("the error %q reveals the claim's value", err)
			}
		})
	}
}

// withToken adds the protocol claims a Mini provider's token carries.
func withToken(m *oidctest.Mini, claims map[string]any) map[string]any {
	out := map[string]any{"iss": m.Issuer, "aud": miniClient, "iat": time.Now().Unix(), "exp": time.Now().Add(time.Hour).Unix(), "jti": "j-" + randomString()}
	for k, v := range claims {
		out[k] = v
	}
	return out
}

// TestMicrosoftTenants: Entra ID's common and organizations discovery
// documents name the issuer template {tenantid}, which go-oidc's issuer
// check cannot take; each token's iss is checked against the template
// with the token's own tid instead. A token of tenant A signs in for
// common; one whose iss names another tenant than its tid, or that has no
// tid, is refused; organizations refuses personal accounts; a provider
// for tenant A refuses tenant B's tokens.
func TestMicrosoftTenants(t *testing.T) {
	entra := func(t *testing.T, tenant, discoveryIssuer string) (*oidctest.Mini, providertest.Conn) {
		m := oidctest.NewMini(t, oidctest.MiniOptions{Path: "/" + tenant + "/v2.0", DiscoveryIssuer: discoveryIssuer, ClientID: miniClient, ClientSecret: miniSecret})
		return m, connect(t, "grpc", miniConfig("microsoft", "tenant", tenant, "base_url", m.Base))
	}
	issuerOf := func(m *oidctest.Mini, tid string) string { return m.Base + "/" + tid + "/v2.0" }
	token := func(m *oidctest.Mini, iss, tid string) map[string]any {
		c := person(map[string]any{"iss": iss})
		if tid != "" {
			c["tid"] = tid
		}
		return c
	}
	type tc struct {
		name     string
		iss, tid string
		want     string // "" signs in
	}
	run := func(t *testing.T, m *oidctest.Mini, c providertest.Conn, cases []tc) {
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				iss := issuerOf(m, tc.iss)
				m.SetClaims(token(m, iss, tc.tid))
				id, err := miniSignIn(t, c, m)
				_, nerr := c.Verify(ctxT(t), sdk.Request{Payload: payload(t, map[string]any{"id_token": m.Sign(t, withToken(m, token(m, iss, tc.tid)))})})
				if tc.want == "" {
					if err != nil || nerr != nil || id.Claims["tid"] != tc.tid {
						t.Fatalf("refused: %v / %v (identity %+v)", err, nerr, id)
					}
					return
				}
				wantErr(t, "redirect flow", err, sdk.ErrInvalidCredentials, tc.want)
				wantErr(t, "native flow", nerr, sdk.ErrInvalidCredentials, tc.want)
			})
		}
	}
	t.Run("common", func(t *testing.T) {
		m, c := entra(t, "common", "{base}/{tenantid}/v2.0")
		run(t, m, c, []tc{
			{"tenant A", tenantA, tenantA, ""},
			{"tenant B", tenantB, tenantB, ""},
			{"a personal account", msConsumersTenant, msConsumersTenant, ""},
			{"iss of A, tid of B", tenantA, tenantB, "is not its tenant's"},
			{"no tid", tenantA, "", "no tenant id"},
			{"the template itself", "{tenantid}", tenantA, "is not its tenant's"},
		})
	})
	t.Run("organizations", func(t *testing.T) {
		m, c := entra(t, "organizations", "{base}/{tenantid}/v2.0")
		run(t, m, c, []tc{
			{"tenant A", tenantA, tenantA, ""},
			{"a personal account", msConsumersTenant, msConsumersTenant, "personal Microsoft account"},
		})
	})
	t.Run("one tenant", func(t *testing.T) {
		m, c := entra(t, tenantA, "{base}/"+tenantA+"/v2.0")
		run(t, m, c, []tc{
			{"tenant A", tenantA, tenantA, ""},
			{"tenant B", tenantB, tenantB, "issued by a different provider"},
		})
	})
	t.Run("consumers", func(t *testing.T) {
		m, c := entra(t, "consumers", "{base}/"+msConsumersTenant+"/v2.0")
		run(t, m, c, []tc{
			{"a personal account", msConsumersTenant, msConsumersTenant, ""},
			{"tenant A", tenantA, tenantA, "issued by a different provider"},
		})
	})
	t.Run("discovery names another issuer", func(t *testing.T) {
		m := oidctest.NewMini(t, oidctest.MiniOptions{Path: "/common/v2.0", DiscoveryIssuer: "{base}/" + tenantA + "/v2.0", ClientID: miniClient})
		err := providertest.Direct(factory).Configure(ctxT(t), providertest.RawConfig(t, miniConfig("microsoft", "tenant", "common", "base_url", m.Base)))
		var ce *sdk.ConfigError
		if !errors.As(err, &ce) || ce.Key != "issuer" {
			t.Fatalf("Configure: %v, want a config error naming issuer", err)
		}
	})
}
