package captcha

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/url"
	"strings"
	"time"

	"github.com/handoffd/handoff/providers/sdk"
)

// The providers, as the config's `provider` key names them.
const (
	HCaptcha  = "hcaptcha"
	ReCAPTCHA = "recaptcha"
	Turnstile = "turnstile"
)

// The providers' official siteverify endpoints: the defaults of
// siteverify_url.
const (
	HCaptchaURL  = "https://api.hcaptcha.com/siteverify"
	ReCAPTCHAURL = "https://www.google.com/recaptcha/api/siteverify"
	TurnstileURL = "https://challenges.cloudflare.com/turnstile/v0/siteverify"
)

const (
	// DefaultTimeout bounds one siteverify call.
	DefaultTimeout = 5 * time.Second
	// DefaultMinScore is Google's suggested starting threshold for
	// reCAPTCHA v3.
	DefaultMinScore = 0.5
	// DefaultField is the payload field that holds the token.
	DefaultField = "captcha"

	maxTimeout = time.Minute
)

// Config is the captcha provider's config section.
type Config struct {
	// Provider is hcaptcha, recaptcha or turnstile. Required.
	Provider string `json:"provider"`
	// Secret is the site's secret key. Give it or SecretFile.
	Secret string `json:"secret"`
	// SecretFile is a file holding the secret key (surrounding whitespace
	// is trimmed); read when the plugin starts.
	SecretFile string `json:"secret_file"`
	// Sitekey is sent to hCaptcha's siteverify, which then refuses tokens
	// solved for another site key. hCaptcha only.
	Sitekey string `json:"sitekey"`
	// SiteverifyURL is where tokens are verified. Default: the provider's
	// official endpoint.
	SiteverifyURL string `json:"siteverify_url"`
	// Hostnames the challenge must have been solved on (for reCAPTCHA on
	// Android, the APK package name). Empty accepts any.
	Hostnames []string `json:"hostnames"`
	// Action is the action the widget must have been rendered with
	// (reCAPTCHA v3, Turnstile). Empty accepts any.
	Action string `json:"action"`
	// MinScore is the lowest reCAPTCHA v3 score accepted, 0..1. Default
	// 0.5; only reCAPTCHA v3 returns the score this means.
	MinScore *float64 `json:"min_score"`
	// Version is 2 or 3 for reCAPTCHA. Default 2.
	Version int `json:"version"`
	// Timeout bounds one siteverify call. Default 5s.
	Timeout sdk.Duration `json:"timeout"`
	// Field is the payload field holding the token. Default "captcha".
	Field string `json:"field"`
}

// DefaultConfig returns the defaults of every optional key.
func DefaultConfig() Config {
	return Config{Timeout: sdk.Duration{Duration: DefaultTimeout}, Field: DefaultField}
}

// ParseConfig decodes raw over the defaults, fills the provider-dependent
// defaults (siteverify_url, version, min_score) and validates it. It does
// not read secret_file; Configure does.
func ParseConfig(raw json.RawMessage) (Config, error) {
	cfg := DefaultConfig()
	if err := sdk.DecodeConfig(raw, &cfg); err != nil {
		return Config{}, err
	}
	cfg.Provider = strings.ToLower(strings.TrimSpace(cfg.Provider))
	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	if cfg.SiteverifyURL == "" {
		cfg.SiteverifyURL = map[string]string{HCaptcha: HCaptchaURL, ReCAPTCHA: ReCAPTCHAURL, Turnstile: TurnstileURL}[cfg.Provider]
	}
	if cfg.Provider == ReCAPTCHA && cfg.Version == 0 {
		cfg.Version = 2
	}
	if cfg.MinScore == nil && cfg.scored() {
		ms := DefaultMinScore
		cfg.MinScore = &ms
	}
	return cfg, nil
}

// scored reports whether the provider returns a score that min_score
// applies to: reCAPTCHA v3 only.
func (c Config) scored() bool { return c.Provider == ReCAPTCHA && c.Version == 3 }

// Validate reports every problem of c at once, each a *sdk.ConfigError
// naming its key.
func (c *Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, &sdk.ConfigError{Key: key, Message: fmt.Sprintf(format, args...)})
	}
	known := false // provider-dependent checks only for a known provider
	switch c.Provider {
	case HCaptcha, ReCAPTCHA, Turnstile:
		known = true
	case "":
		bad("provider", "required: hcaptcha, recaptcha or turnstile")
	default:
		bad("provider", "want hcaptcha, recaptcha or turnstile, got %q", c.Provider)
	}
	switch {
	case c.Secret == "" && c.SecretFile == "":
		bad("secret", "required (or secret_file): the site's secret key")
	case c.Secret != "" && c.SecretFile != "":
		bad("secret_file", "give secret or secret_file, not both")
	}
	if c.Sitekey != "" && known && c.Provider != HCaptcha {
		bad("sitekey", "only hcaptcha's siteverify takes the site key")
	}
	if c.SiteverifyURL != "" {
		u, err := url.Parse(c.SiteverifyURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil || u.Fragment != "" {
			bad("siteverify_url", "want an absolute http(s) URL without credentials, got %q", c.SiteverifyURL)
		}
	}
	for i, h := range c.Hostnames {
		if h == "" || strings.TrimSpace(h) != h || strings.ContainsAny(h, "/ \t\n") {
			bad(fmt.Sprintf("hostnames[%d]", i), "want a host name such as app.example.com, got %q", h)
		}
	}
	if c.Action != "" && known && (c.Provider == HCaptcha || (c.Provider == ReCAPTCHA && c.Version != 3)) {
		bad("action", "only reCAPTCHA v3 and Turnstile report an action")
	}
	if c.Action != "" && strings.TrimSpace(c.Action) != c.Action {
		bad("action", "surrounding whitespace in %q", c.Action)
	}
	if c.MinScore != nil && (math.IsNaN(*c.MinScore) || *c.MinScore < 0 || *c.MinScore > 1) {
		bad("min_score", "must be 0..1, got %v", *c.MinScore)
	}
	switch {
	case c.Provider == ReCAPTCHA && c.Version != 0 && c.Version != 2 && c.Version != 3:
		bad("version", "want 2 or 3, got %d", c.Version)
	case c.Provider != ReCAPTCHA && known && c.Version != 0:
		bad("version", "only recaptcha has versions")
	}
	if p := c.Timeout.Check(maxTimeout); p != "" {
		bad("timeout", "%s", p)
	}
	if c.Field == "" {
		bad("field", "must not be empty")
	}
	return errors.Join(errs...)
}

// loadSecret returns the secret key, reading secret_file when set.
func (c Config) loadSecret() (string, error) {
	return sdk.SecretFromFile("secret_file", c.SecretFile, c.Secret)
}
