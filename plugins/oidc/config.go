package oidc

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/handoffd/handoff/providers/sdk"
)

// PresetAuth0 is the `preset` value for Auth0: `domain` fills in the
// issuer https://<domain>/.
const PresetAuth0 = "auth0"

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
	// Preset is "" (a generic OpenID Provider) or "auth0".
	Preset string `json:"preset"`
	// Domain is the Auth0 tenant's domain (tenant.eu.auth0.com, or a custom
	// domain); with preset auth0 it makes the issuer https://<domain>/.
	Domain string `json:"domain"`
	// Issuer is the OpenID Provider's issuer URL, exactly as its discovery
	// document spells it (mind the trailing slash). Required unless a
	// preset fills it in.
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
	if cfg.Preset == PresetAuth0 {
		cfg.Issuer = "https://" + strings.ToLower(cfg.Domain) + "/"
	}
	return cfg, nil
}

// Validate reports every problem of c at once, each a *sdk.ConfigError
// naming its key.
func (c *Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, &sdk.ConfigError{Key: key, Message: fmt.Sprintf(format, args...)})
	}
	switch c.Preset {
	case "":
		if c.Domain != "" {
			bad("domain", "only with preset: auth0 (otherwise set issuer)")
		}
		if c.Issuer == "" {
			bad("issuer", "required: the OpenID Provider's issuer URL, e.g. https://accounts.example.com")
		}
	case PresetAuth0:
		switch {
		case c.Domain == "":
			bad("domain", "required with preset auth0: the tenant's domain, e.g. example.eu.auth0.com")
		case !validDomain(c.Domain):
			bad("domain", "want a host name such as example.eu.auth0.com (no https://, no path), got %q", c.Domain)
		}
		if c.Issuer != "" {
			bad("issuer", "preset auth0 derives the issuer from domain; set one of them")
		}
	default:
		bad("preset", "want auth0 or nothing, got %q", c.Preset)
	}
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
	return errors.Join(errs...)
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
	if c.ClientSecretFile == "" {
		return c.ClientSecret, nil
	}
	b, err := os.ReadFile(c.ClientSecretFile)
	if err != nil {
		msg := err.Error()
		var pe *fs.PathError
		if errors.As(err, &pe) {
			msg = pe.Err.Error()
		}
		return "", &sdk.ConfigError{Key: "client_secret_file", Message: "cannot read " + c.ClientSecretFile + ": " + msg}
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", &sdk.ConfigError{Key: "client_secret_file", Message: c.ClientSecretFile + " is empty"}
	}
	return s, nil
}

// accepted is the set of audiences the native flow takes: client_id and
// audiences.
func (c Config) accepted() []string {
	return append([]string{c.ClientID}, c.Audiences...)
}
