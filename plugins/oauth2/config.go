package oauth2

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/handoffd/handoff/providers/sdk"
)

// Presets, the `preset` values; "" is the generic mode.
const (
	PresetGitHub  = "github"
	PresetDiscord = "discord"
)

// Client authentication at the token endpoint, the `client_auth` values.
const (
	// AuthBasic sends client_id and client_secret as HTTP Basic auth
	// (RFC 6749 client_secret_basic).
	AuthBasic = "basic"
	// AuthPost sends them in the token request's form (client_secret_post).
	AuthPost = "post"
)

const (
	// DefaultHTTPTimeout bounds one call to the IdP (token, userinfo,
	// emails).
	DefaultHTTPTimeout = 10 * time.Second

	maxHTTPTimeout = 2 * time.Minute
)

// Config is the oauth2 provider's config section.
type Config struct {
	// Preset is "github", "discord" or "" (the generic mode, which needs
	// authorize_url, token_url and userinfo_url).
	Preset string `json:"preset"`
	// BaseURL is a GitHub Enterprise Server's URL (https://github.example.com);
	// preset github only. The endpoints become BASE/login/oauth/... and
	// BASE/api/v3/user.
	BaseURL string `json:"base_url"`
	// AuthorizeURL is the IdP's authorization endpoint. A preset fills it
	// in; given, it overrides the preset's.
	AuthorizeURL string `json:"authorize_url"`
	// TokenURL is the IdP's token endpoint (preset or override).
	TokenURL string `json:"token_url"`
	// UserinfoURL answers the signed-in user as a JSON object for the
	// access token (preset or override).
	UserinfoURL string `json:"userinfo_url"`
	// EmailsURL is GitHub's /user/emails (preset github only; override).
	EmailsURL string `json:"emails_url"`
	// ClientID is the client (application) id registered at the IdP.
	ClientID string `json:"client_id"`
	// ClientSecret is the client's secret. Give it or ClientSecretFile.
	ClientSecret string `json:"client_secret"`
	// ClientSecretFile is a file holding the client secret.
	ClientSecretFile string `json:"client_secret_file"`
	// ClientAuth is how the token request authenticates: "basic" or
	// "post". Default: the preset's (github post, discord basic), basic in
	// the generic mode.
	ClientAuth string `json:"client_auth"`
	// Scopes the flow asks for. Default: the preset's; none in the generic
	// mode.
	Scopes []string `json:"scopes"`
	// PKCE sends a PKCE S256 code_challenge and its verifier. Default: the
	// preset's (github true, discord false), true in the generic mode.
	PKCE *bool `json:"pkce"`
	// Claims maps identity fields to dotted JSON paths of the userinfo
	// answer (generic mode only; a preset knows its IdP's answer).
	Claims Claims `json:"claims"`
	// HTTPTimeout bounds one call to the IdP. Default 10s.
	HTTPTimeout sdk.Duration `json:"http_timeout"`
}

// Claims maps identity fields to dotted paths into the userinfo answer:
// "id", "data.user.email", "emails.0.address". An empty path reads
// nothing.
type Claims struct {
	Subject       string `json:"subject"`
	Email         string `json:"email"`
	EmailVerified string `json:"email_verified"`
	Name          string `json:"name"`
}

// DefaultClaims are the generic mode's claim paths: OpenID Connect's
// userinfo names, which many OAuth2-only IdPs copy.
var DefaultClaims = Claims{Subject: "sub", Email: "email", EmailVerified: "email_verified", Name: "name"}

// preset is what a preset fills in.
type preset struct {
	authorize, token, userinfo, emails string
	scopes                             []string
	pkce                               bool
	auth                               string
}

var presets = map[string]preset{
	PresetGitHub: {
		authorize: "https://github.com/login/oauth/authorize",
		token:     "https://github.com/login/oauth/access_token",
		userinfo:  "https://api.github.com/user",
		emails:    "https://api.github.com/user/emails",
		scopes:    []string{"read:user", "user:email"},
		pkce:      true, // GitHub takes S256 since 2025
		auth:      AuthPost,
	},
	PresetDiscord: {
		authorize: "https://discord.com/oauth2/authorize",
		token:     "https://discord.com/api/oauth2/token",
		userinfo:  "https://discord.com/api/users/@me",
		scopes:    []string{"identify", "email"},
		pkce:      false, // not in Discord's documentation
		auth:      AuthBasic,
	},
	"": {pkce: true, auth: AuthBasic},
}

// DefaultConfig returns the defaults of every optional key that is the
// same for every preset.
func DefaultConfig() Config {
	return Config{
		Claims:      DefaultClaims,
		HTTPTimeout: sdk.Duration{Duration: DefaultHTTPTimeout},
	}
}

// ParseConfig decodes raw over the defaults, validates it and fills in
// what the preset implies (endpoints, scopes, pkce, client_auth). It does
// not read client_secret_file; Configure does.
func ParseConfig(raw json.RawMessage) (Config, error) {
	cfg := DefaultConfig()
	if err := sdk.DecodeConfig(raw, &cfg); err != nil {
		return Config{}, err
	}
	cfg.Preset = strings.ToLower(strings.TrimSpace(cfg.Preset))
	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	cfg.fill()
	return cfg, nil
}

// fill puts the preset's values where the config left a key empty.
func (c *Config) fill() {
	p := presets[c.Preset]
	if c.Preset == PresetGitHub && c.BaseURL != "" {
		base := strings.TrimRight(c.BaseURL, "/")
		p.authorize, p.token = base+"/login/oauth/authorize", base+"/login/oauth/access_token"
		p.userinfo, p.emails = base+"/api/v3/user", base+"/api/v3/user/emails"
	}
	set := func(dst *string, v string) {
		if *dst == "" {
			*dst = v
		}
	}
	set(&c.AuthorizeURL, p.authorize)
	set(&c.TokenURL, p.token)
	set(&c.UserinfoURL, p.userinfo)
	set(&c.EmailsURL, p.emails)
	set(&c.ClientAuth, p.auth)
	if c.Scopes == nil {
		c.Scopes = append([]string(nil), p.scopes...)
	}
	if c.PKCE == nil {
		on := p.pkce
		c.PKCE = &on
	}
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
		for _, f := range []struct{ key, v string }{{"authorize_url", c.AuthorizeURL}, {"token_url", c.TokenURL}, {"userinfo_url", c.UserinfoURL}} {
			if f.v == "" {
				bad(f.key, "required without a preset (or set preset: github or discord)")
			}
		}
		if c.Claims.Subject == "" {
			bad("claims.subject", "must not be empty: the path of the user's stable id, e.g. id")
		}
	case PresetGitHub, PresetDiscord:
		if c.Claims != DefaultClaims {
			bad("claims", "only without a preset: preset %s reads its IdP's answer itself", c.Preset)
		}
	default:
		bad("preset", "want github, discord or nothing (the generic mode), got %q", c.Preset)
	}
	if c.BaseURL != "" && c.Preset != PresetGitHub {
		bad("base_url", "only with preset: github (GitHub Enterprise Server)")
	}
	if c.EmailsURL != "" && c.Preset != PresetGitHub {
		bad("emails_url", "only with preset: github")
	}
	for _, f := range []struct{ key, v string }{
		{"base_url", c.BaseURL}, {"authorize_url", c.AuthorizeURL}, {"token_url", c.TokenURL},
		{"userinfo_url", c.UserinfoURL}, {"emails_url", c.EmailsURL},
	} {
		if f.v == "" {
			continue
		}
		if msg := checkURL(f.v, f.key != "authorize_url"); msg != "" {
			bad(f.key, "%s, got %q", msg, f.v)
		}
	}
	switch {
	case c.ClientID == "":
		bad("client_id", "required: the client (application) id registered at the IdP")
	case strings.ContainsAny(c.ClientID, " \t\r\n"):
		bad("client_id", "must not contain whitespace")
	}
	switch {
	case c.ClientSecret != "" && c.ClientSecretFile != "":
		bad("client_secret_file", "give client_secret or client_secret_file, not both")
	case c.ClientSecret == "" && c.ClientSecretFile == "" && c.Preset != "":
		bad("client_secret", "required with preset %s: the client secret from the IdP's console (or client_secret_file)", c.Preset)
	}
	switch c.ClientAuth {
	case "", AuthBasic, AuthPost:
	default:
		bad("client_auth", "want basic or post, got %q", c.ClientAuth)
	}
	for i, s := range c.Scopes {
		if s == "" || strings.ContainsAny(s, " \t\r\n\"\\") {
			bad(fmt.Sprintf("scopes[%d]", i), "want a scope such as user:email, got %q", s)
		}
	}
	for _, f := range []struct{ key, v string }{
		{"subject", c.Claims.Subject}, {"email", c.Claims.Email}, {"email_verified", c.Claims.EmailVerified}, {"name", c.Claims.Name},
	} {
		if f.v != "" && (strings.HasPrefix(f.v, ".") || strings.HasSuffix(f.v, ".") || strings.Contains(f.v, "..")) {
			bad("claims."+f.key, "want a dotted path such as data.user.id, got %q", f.v)
		}
	}
	if p := c.HTTPTimeout.Check(maxHTTPTimeout); p != "" {
		bad("http_timeout", "%s", p)
	}
	return errors.Join(errs...)
}

// checkURL returns what is wrong with an endpoint URL, or "": https, or
// plain http on loopback only (tests, a local IdP), with no credentials or
// fragment. With noQuery it may not carry a query either; the authorize
// URL may (some IdPs put a tenant or an audience there).
func checkURL(s string, noQuery bool) string {
	u, err := url.Parse(s)
	switch {
	case err != nil || u.Host == "" || !u.IsAbs():
		return "want an absolute https URL"
	case u.User != nil || u.Fragment != "" || strings.HasSuffix(s, "#"):
		return "must not carry credentials or a fragment"
	case noQuery && (u.RawQuery != "" || strings.HasSuffix(s, "?")):
		return "must not carry a query"
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

// loadSecret returns the client secret, reading client_secret_file when
// set.
func (c Config) loadSecret() (string, error) {
	return sdk.SecretFromFile("client_secret_file", c.ClientSecretFile, c.ClientSecret)
}
