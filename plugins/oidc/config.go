package oidc

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/handoffd/handoff/providers/sdk"
)

// The `preset` values. Each fills in the issuer (and its quirks) from a
// few keys of the IdP's own vocabulary; keys set explicitly still win.
const (
	// PresetAuth0: `domain` makes the issuer https://<domain>/.
	PresetAuth0 = "auth0"
	// PresetGoogle: the issuer https://accounts.google.com.
	PresetGoogle = "google"
	// PresetMicrosoft: Entra ID, `tenant` (common, organizations,
	// consumers or a tenant id) under `base_url`; for common and
	// organizations the issuer is a template checked per token.
	PresetMicrosoft = "microsoft"
	// PresetOkta: `domain`, and an optional custom `authorization_server`.
	PresetOkta = "okta"
	// PresetKeycloak: `base_url` and `realm`.
	PresetKeycloak = "keycloak"
	// PresetGitLab: gitlab.com, or a self-hosted GitLab at `base_url`.
	PresetGitLab = "gitlab"
	// PresetApple: Sign in with Apple; the client secret is a JWT signed
	// from `private_key_file` with `team_id` and `key_id`.
	PresetApple = "apple"
)

// Defaults of the presets' base URLs.
const (
	googleIssuer     = "https://accounts.google.com"
	microsoftBaseURL = "https://login.microsoftonline.com"
	gitlabBaseURL    = "https://gitlab.com"
	// msTenantTemplate is the placeholder Entra's multi-tenant discovery
	// documents put in their issuer.
	msTenantTemplate = "{tenantid}"
	// msConsumersTenant is the tenant of personal Microsoft accounts: the
	// tid of their tokens and the issuer of the consumers endpoint.
	msConsumersTenant = "9188040d-6c67-4c5b-b112-36a304b66dad"
)

// presetKeys are the preset-only keys each preset takes; the generic
// provider takes none of them.
var presetKeys = map[string][]string{
	"":              nil,
	PresetAuth0:     {"domain"},
	PresetGoogle:    nil,
	PresetMicrosoft: {"tenant", "base_url"},
	PresetOkta:      {"domain", "authorization_server"},
	PresetKeycloak:  {"base_url", "realm"},
	PresetGitLab:    {"base_url"},
	PresetApple:     {"team_id", "key_id", "private_key_file"},
}

const (
	// DefaultHTTPTimeout bounds one call to the IdP (discovery, JWKS,
	// token, userinfo).
	DefaultHTTPTimeout = 10 * time.Second

	maxHTTPTimeout = 2 * time.Minute
)

// DefaultScopes are the scopes the redirect flow asks for by default.
var DefaultScopes = []string{"openid", "email", "profile"}

// Config is the oidc provider's config section.
type Config struct {
	// Preset is "" (a generic OpenID Provider) or one of the Preset
	// constants.
	Preset string `json:"preset"`
	// Domain is the Auth0 tenant's domain (tenant.eu.auth0.com, or a custom
	// domain) with preset auth0, the Okta org's (example.okta.com) with
	// preset okta.
	Domain string `json:"domain"`
	// Tenant is the Entra ID tenant with preset microsoft: common,
	// organizations, consumers or a tenant id (a GUID).
	Tenant string `json:"tenant"`
	// AuthorizationServer is the id of an Okta custom authorization server
	// ("default" is the one every org has); empty means the org
	// authorization server.
	AuthorizationServer string `json:"authorization_server"`
	// BaseURL is where Keycloak, a self-hosted GitLab or Entra ID (a
	// national cloud) answers.
	BaseURL string `json:"base_url"`
	// Realm is the Keycloak realm.
	Realm string `json:"realm"`
	// TeamID, KeyID and PrivateKeyFile sign Sign in with Apple's client
	// secret: the Apple Developer team, the key's id and its .p8 file.
	TeamID         string `json:"team_id"`
	KeyID          string `json:"key_id"`
	PrivateKeyFile string `json:"private_key_file"`
	// Issuer is the OpenID Provider's issuer URL, exactly as its discovery
	// document spells it (mind the trailing slash). Required without a
	// preset; with one (but microsoft) it overrides the issuer the preset
	// derives (a custom domain, a test IdP).
	Issuer string `json:"issuer"`
	// ClientID is the client (application) id registered at the IdP.
	// Required.
	ClientID string `json:"client_id"`
	// ClientSecret is the client's secret, for the code exchange of the
	// redirect flow. Give it or ClientSecretFile; with neither the client is
	// public (PKCE only).
	ClientSecret string `json:"client_secret"`
	// ClientSecretFile is a file holding the client secret.
	ClientSecretFile string `json:"client_secret_file"`
	// Scopes the redirect flow asks for. Default openid, email, profile;
	// must include openid.
	Scopes []string `json:"scopes"`
	// Audiences are further client ids whose ID tokens the native flow
	// accepts (an iOS and an Android app of the same project, say).
	Audiences []string `json:"audiences"`
	// Claims names the claims the identity is read from.
	Claims Claims `json:"claims"`
	// Userinfo makes the redirect flow also read the userinfo endpoint and
	// merge its claims over the ID token's.
	Userinfo bool `json:"userinfo"`
	// HTTPTimeout bounds one call to the IdP. Default 10s.
	HTTPTimeout sdk.Duration `json:"http_timeout"`
	// AuthorizeParams are added to the redirect flow's authorize URL as
	// they are: Auth0's audience, connection, organization, or prompt,
	// max_age, ui_locales. The parameters the flow sets itself may not be
	// given.
	AuthorizeParams map[string]string `json:"authorize_params"`
	// Require is the claim policy: each key a claim that must be present
	// with the value given, or with one of the values of a list (for a
	// claim that is a list, one of its elements). The key email_verified
	// means the identity's verified email (claims.email_verified), true.
	Require map[string]any `json:"require"`

	// tenant is what ParseConfig derives for preset microsoft: how tokens'
	// issuers are checked.
	tenant tenantRule
}

// tenantRule checks Entra ID's issuers. Its discovery document for common
// and organizations names the issuer template
// https://login.microsoftonline.com/{tenantid}/v2.0, and each token's iss
// is that template with the token's own tid.
type tenantRule struct {
	// template is the issuer with {tenantid}; "" when the issuer is one.
	template string
	// exclude is a tenant whose tokens are refused (organizations:
	// personal accounts).
	exclude string
}

// flowParams are the authorize parameters the redirect flow sets itself.
var flowParams = []string{"response_type", "client_id", "redirect_uri", "scope", "state", "nonce", "code_challenge", "code_challenge_method"}

// Claims maps identity fields to claim names. Names are taken literally
// (no nesting), so namespaced claims such as
// "https://example.com/roles" work as they are.
type Claims struct {
	Subject       string `json:"subject"`
	Email         string `json:"email"`
	EmailVerified string `json:"email_verified"`
	Name          string `json:"name"`
	Phone         string `json:"phone"`
}

// DefaultClaims are the standard OpenID Connect claim names.
var DefaultClaims = Claims{
	Subject:       "sub",
	Email:         "email",
	EmailVerified: "email_verified",
	Name:          "name",
	Phone:         "phone_number",
}

// DefaultConfig returns the defaults of every optional key.
func DefaultConfig() Config {
	return Config{
		Scopes:      append([]string(nil), DefaultScopes...),
		Claims:      DefaultClaims,
		HTTPTimeout: sdk.Duration{Duration: DefaultHTTPTimeout},
	}
}

// ParseConfig decodes raw over the defaults, validates it and fills in
// what a preset implies (the issuer). It does not read
// client_secret_file; Configure does.
func ParseConfig(raw json.RawMessage) (Config, error) {
	cfg := DefaultConfig()
	if err := sdk.DecodeConfig(raw, &cfg); err != nil {
		return Config{}, err
	}
	cfg.Preset = strings.ToLower(strings.TrimSpace(cfg.Preset))
	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	cfg.applyPreset()
	return cfg, nil
}

// applyPreset fills in the issuer (and for Entra ID the tenant rule) a
// valid config's preset derives. An explicit issuer is kept.
func (c *Config) applyPreset() {
	base := strings.TrimSuffix(c.BaseURL, "/")
	derived := ""
	switch c.Preset {
	case PresetAuth0:
		derived = "https://" + strings.ToLower(c.Domain) + "/"
	case PresetGoogle:
		derived = googleIssuer
	case PresetOkta:
		derived = "https://" + strings.ToLower(c.Domain)
		if c.AuthorizationServer != "" {
			derived += "/oauth2/" + c.AuthorizationServer
		}
	case PresetKeycloak:
		derived = base + "/realms/" + url.PathEscape(c.Realm)
	case PresetGitLab:
		derived = cmp.Or(base, gitlabBaseURL)
	case PresetApple:
		derived = appleIssuer
		if slices.Equal(c.Scopes, DefaultScopes) {
			c.Scopes = slices.Clone(appleScopes)
		}
		if _, set := c.AuthorizeParams["response_mode"]; !set {
			// Apple sends the name and email scopes' answer only by
			// form_post.
			c.AuthorizeParams = maps.Clone(c.AuthorizeParams)
			if c.AuthorizeParams == nil {
				c.AuthorizeParams = map[string]string{}
			}
			c.AuthorizeParams["response_mode"] = "form_post"
		}
	case PresetMicrosoft:
		base = cmp.Or(base, microsoftBaseURL)
		c.Tenant = strings.ToLower(c.Tenant)
		c.Issuer = base + "/" + c.Tenant + "/v2.0" // where discovery is
		switch c.Tenant {
		case "common":
			c.tenant.template = base + "/" + msTenantTemplate + "/v2.0"
		case "organizations":
			c.tenant = tenantRule{template: base + "/" + msTenantTemplate + "/v2.0", exclude: msConsumersTenant}
		case "consumers":
			c.tenant.template = base + "/" + msConsumersTenant + "/v2.0"
		}
		return
	}
	if c.Issuer == "" {
		c.Issuer = derived
	}
}

// Validate reports every problem of c at once, each a *sdk.ConfigError
// naming its key.
func (c *Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, &sdk.ConfigError{Key: key, Message: fmt.Sprintf(format, args...)})
	}
	c.validatePreset(bad)
	if c.Issuer != "" {
		if msg := checkIssuer(c.Issuer); msg != "" {
			bad("issuer", "%s, got %q", msg, c.Issuer)
		}
	}
	switch {
	case c.ClientID == "":
		bad("client_id", "required: the client (application) id registered at the IdP")
	case strings.ContainsAny(c.ClientID, " \t\r\n"):
		bad("client_id", "must not contain whitespace")
	}
	if c.ClientSecret != "" && c.ClientSecretFile != "" {
		bad("client_secret_file", "give client_secret or client_secret_file, not both")
	}
	hasOpenID := false
	for i, s := range c.Scopes {
		if s == "" || strings.ContainsAny(s, " \t\r\n\"\\") {
			bad(fmt.Sprintf("scopes[%d]", i), "want a scope such as email, got %q", s)
		}
		hasOpenID = hasOpenID || s == "openid"
	}
	if !hasOpenID {
		bad("scopes", "must include openid")
	}
	for i, a := range c.Audiences {
		if a == "" || strings.ContainsAny(a, " \t\r\n") {
			bad(fmt.Sprintf("audiences[%d]", i), "want a client id, got %q", a)
		}
	}
	for _, f := range []struct{ key, v string }{
		{"subject", c.Claims.Subject}, {"email", c.Claims.Email}, {"email_verified", c.Claims.EmailVerified},
		{"name", c.Claims.Name}, {"phone", c.Claims.Phone},
	} {
		if f.v == "" {
			bad("claims."+f.key, "must not be empty")
		}
	}
	if p := c.HTTPTimeout.Check(maxHTTPTimeout); p != "" {
		bad("http_timeout", "%s", p)
	}
	for _, k := range slices.Sorted(maps.Keys(c.AuthorizeParams)) {
		switch {
		case k == "" || strings.ContainsAny(k, " \t\r\n&=#"):
			bad("authorize_params", "%q is not a parameter name", k)
		case slices.Contains(flowParams, k):
			bad("authorize_params."+k, "set by the flow itself; it cannot be given")
		case strings.ContainsAny(c.AuthorizeParams[k], "\r\n\x00"):
			bad("authorize_params."+k, "the value has a line break or NUL")
		}
	}
	c.validateRequire(bad)
	return errors.Join(errs...)
}

// validatePreset checks the preset and the keys only presets take.
func (c *Config) validatePreset(bad func(key, format string, args ...any)) {
	allowed, ok := presetKeys[c.Preset]
	if !ok {
		bad("preset", "want one of auth0, google, microsoft, okta, keycloak, gitlab, apple, or nothing, got %q", c.Preset)
		return
	}
	for _, f := range []struct{ key, v string }{
		{"domain", c.Domain}, {"tenant", c.Tenant}, {"authorization_server", c.AuthorizationServer},
		{"base_url", c.BaseURL}, {"realm", c.Realm},
		{"team_id", c.TeamID}, {"key_id", c.KeyID}, {"private_key_file", c.PrivateKeyFile},
	} {
		if f.v != "" && !slices.Contains(allowed, f.key) {
			bad(f.key, "not a key of %s", presetName(c.Preset))
		}
	}
	switch c.Preset {
	case "":
		if c.Issuer == "" {
			bad("issuer", "required: the OpenID Provider's issuer URL, e.g. https://accounts.example.com")
		}
	case PresetAuth0, PresetOkta:
		example := map[string]string{PresetAuth0: "example.eu.auth0.com", PresetOkta: "example.okta.com"}[c.Preset]
		switch {
		case c.Domain == "" && c.Issuer == "":
			bad("domain", "required with preset %s: the tenant's domain, e.g. %s", c.Preset, example)
		case c.Domain != "" && !validDomain(c.Domain):
			bad("domain", "want a host name such as %s (no https://, no path), got %q", example, c.Domain)
		}
	case PresetMicrosoft:
		switch t := strings.ToLower(c.Tenant); {
		case t == "":
			bad("tenant", "required with preset microsoft: common, organizations, consumers or the tenant id")
		case t != "common" && t != "organizations" && t != "consumers" && !isGUID(t):
			bad("tenant", "want common, organizations, consumers or a tenant id (a GUID), got %q", c.Tenant)
		}
		if c.Issuer != "" {
			bad("issuer", "preset microsoft derives the issuer from tenant (and base_url); set those instead")
		}
	case PresetApple:
		for _, f := range []struct{ key, v, what string }{
			{"team_id", c.TeamID, "the Apple Developer team id"},
			{"key_id", c.KeyID, "the Sign in with Apple key's id"},
			{"private_key_file", c.PrivateKeyFile, "the key's .p8 file"},
		} {
			switch {
			case f.v == "":
				bad(f.key, "required with preset apple: %s", f.what)
			case f.key != "private_key_file" && !alnum(f.v):
				bad(f.key, "want %s (letters and digits), got %q", f.what, f.v)
			}
		}
		if c.ClientSecret != "" || c.ClientSecretFile != "" {
			bad("client_secret", "preset apple signs its client secret from private_key_file; leave client_secret out")
		}
	case PresetKeycloak:
		if c.BaseURL == "" {
			bad("base_url", "required with preset keycloak: where Keycloak answers, e.g. https://sso.example.com")
		}
		switch {
		case c.Realm == "":
			bad("realm", "required with preset keycloak: the realm's name")
		case strings.ContainsAny(c.Realm, "/?#%\\ \t\r\n"):
			bad("realm", "want a realm name, got %q", c.Realm)
		}
	}
	if c.AuthorizationServer != "" && (strings.ContainsAny(c.AuthorizationServer, "/?#%\\ \t\r\n") || c.AuthorizationServer == "." || c.AuthorizationServer == "..") {
		bad("authorization_server", "want an authorization server id such as default, got %q", c.AuthorizationServer)
	}
	if c.BaseURL != "" {
		if msg := checkIssuer(c.BaseURL); msg != "" {
			bad("base_url", "%s, got %q", msg, c.BaseURL)
		}
	}
}

func alnum(s string) bool {
	for _, r := range s {
		if (r < '0' || r > '9') && (r < 'A' || r > 'Z') && (r < 'a' || r > 'z') {
			return false
		}
	}
	return true
}

func presetName(p string) string {
	if p == "" {
		return "the generic provider (no preset)"
	}
	return "preset " + p
}

// isGUID reports whether s is a GUID as Entra ID spells tenant ids.
func isGUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i, r := range s {
		switch {
		case i == 8 || i == 13 || i == 18 || i == 23:
			if r != '-' {
				return false
			}
		case !strings.ContainsRune("0123456789abcdefABCDEF", r):
			return false
		}
	}
	return true
}

// validateRequire checks the claim policy: a value is a string, a
// number, a boolean or a non-empty list of strings and numbers;
// email_verified can only be required true.
func (c *Config) validateRequire(bad func(key, format string, args ...any)) {
	for _, k := range slices.Sorted(maps.Keys(c.Require)) {
		key := "require." + k
		switch v := c.Require[k].(type) {
		case string, float64:
			if k == "email_verified" {
				bad(key, "want true")
			}
		case bool:
			if k == "email_verified" && !v {
				bad(key, "want true (leave it out to accept unverified emails)")
			}
		case []any:
			if len(v) == 0 {
				bad(key, "an empty list accepts no one")
			}
			for i, e := range v {
				switch e.(type) {
				case string, float64:
				default:
					bad(fmt.Sprintf("%s[%d]", key, i), "want a string or a number")
				}
			}
			if k == "email_verified" {
				bad(key, "want true")
			}
		default:
			bad(key, "want a value or a list of values")
		}
		if k == "" {
			bad("require", "a claim name is empty")
		}
	}
}

// checkIssuer returns what is wrong with an issuer URL, or "". OpenID
// Connect wants https; plain http is allowed on loopback only (tests, a
// local IdP).
func checkIssuer(s string) string {
	u, err := url.Parse(s)
	switch {
	case err != nil || u.Host == "" || !u.IsAbs():
		return "want an absolute https URL"
	case u.User != nil || u.RawQuery != "" || u.Fragment != "" || strings.HasSuffix(s, "?") || strings.HasSuffix(s, "#"):
		return "must not carry credentials, a query or a fragment"
	case u.Scheme == "https":
		return ""
	case u.Scheme == "http" && isLoopback(u.Hostname()):
		return ""
	case u.Scheme == "http":
		return "must be https (plain http only on loopback)"
	}
	return "want an https URL"
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// validDomain accepts host or host:port.
func validDomain(d string) bool {
	if strings.ContainsAny(d, "/?#@ \t\r\n") {
		return false
	}
	u, err := url.Parse("https://" + d + "/")
	return err == nil && u.Host == d && u.Hostname() != ""
}

// loadSecret returns the client secret, reading client_secret_file when
// set.
func (c Config) loadSecret() (string, error) {
	return sdk.SecretFromFile("client_secret_file", c.ClientSecretFile, c.ClientSecret)
}

// accepted is the set of audiences the native flow takes: client_id and
// audiences.
func (c Config) accepted() []string {
	return append([]string{c.ClientID}, c.Audiences...)
}
