package biometric

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/handoffd/handoff/providers/sdk"
)

const (
	// DefaultMinScore is the lowest match score accepted.
	DefaultMinScore = 0.9
	// DefaultTolerance is how far a response's webhook-timestamp may be
	// from the plugin's clock, either way (Standard Webhooks' 5 minutes).
	DefaultTolerance = 5 * time.Minute
	// DefaultTimeout bounds one call to the vendor.
	DefaultTimeout = 3 * time.Second

	maxTolerance = time.Hour
	maxTimeout   = time.Minute
	// Standard Webhooks: secrets are 24..64 random bytes.
	minSecretBytes = 24
	maxSecretBytes = 64
	secretPrefix   = "whsec_"
)

// reservedHeaders are set by the plugin; `headers` may not override them.
var reservedHeaders = []string{"Webhook-Id", "Webhook-Timestamp", "Webhook-Signature", "Content-Type", "Content-Length", "Host", "Transfer-Encoding", "Connection"}

// Config is the biometric provider's config section.
type Config struct {
	// URL is the vendor's (or the in-house service's) endpoint. Required.
	URL string `json:"url"`
	// Secret signs requests and, without ResponseSecret, checks responses:
	// whsec_<base64 of 24..64 bytes>. Give it or SecretFile.
	Secret string `json:"secret"`
	// SecretFile is a file holding Secret, read when the plugin starts.
	SecretFile string `json:"secret_file"`
	// ResponseSecret checks the vendor's responses when the vendor signs
	// with a secret of its own. Optional; same format.
	ResponseSecret string `json:"response_secret"`
	// ResponseSecretFile is a file holding ResponseSecret.
	ResponseSecretFile string `json:"response_secret_file"`
	// MinScore is the lowest match score accepted, 0..1. Default 0.9.
	MinScore *float64 `json:"min_score"`
	// Tolerance is how far a response's timestamp may be from now, either
	// way. Default 5m.
	Tolerance sdk.Duration `json:"tolerance"`
	// Timeout bounds one call to the vendor. Default 3s.
	Timeout sdk.Duration `json:"timeout"`
	// Headers are sent with every request (an API key for the vendor, say).
	// They are never logged.
	Headers map[string]string `json:"headers"`
}

// DefaultConfig returns the defaults of every optional key.
func DefaultConfig() Config {
	ms := DefaultMinScore
	return Config{
		MinScore:  &ms,
		Tolerance: sdk.Duration{Duration: DefaultTolerance},
		Timeout:   sdk.Duration{Duration: DefaultTimeout},
	}
}

// ParseConfig decodes raw over the defaults and validates it. It does not
// read the secret files; Configure does.
func ParseConfig(raw json.RawMessage) (Config, error) {
	cfg := DefaultConfig()
	if err := sdk.DecodeConfig(raw, &cfg); err != nil {
		return Config{}, err
	}
	if cfg.MinScore == nil { // "min_score": null
		ms := DefaultMinScore
		cfg.MinScore = &ms
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, err
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
	if c.URL == "" {
		bad("url", "required: the vendor's endpoint")
	} else if u, err := url.Parse(c.URL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil || u.Fragment != "" {
		bad("url", "want an absolute http(s) URL without credentials, got %q", c.URL)
	}
	switch {
	case c.Secret == "" && c.SecretFile == "":
		bad("secret", "required (or secret_file): whsec_<base64>")
	case c.Secret != "" && c.SecretFile != "":
		bad("secret_file", "give secret or secret_file, not both")
	case c.Secret != "":
		if err := checkSecret(c.Secret); err != nil {
			bad("secret", "%v", err)
		}
	}
	switch {
	case c.ResponseSecret != "" && c.ResponseSecretFile != "":
		bad("response_secret_file", "give response_secret or response_secret_file, not both")
	case c.ResponseSecret != "":
		if err := checkSecret(c.ResponseSecret); err != nil {
			bad("response_secret", "%v", err)
		}
	}
	if ms := *c.MinScore; math.IsNaN(ms) || ms < 0 || ms > 1 {
		bad("min_score", "must be 0..1, got %v", ms)
	}
	if p := c.Tolerance.Check(maxTolerance); p != "" {
		bad("tolerance", "%s", p)
	}
	if p := c.Timeout.Check(maxTimeout); p != "" {
		bad("timeout", "%s", p)
	}
	names := make([]string, 0, len(c.Headers))
	for name := range c.Headers {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		key := "headers." + name
		switch {
		case !isToken(name):
			bad(key, "not a valid header name")
		case isReserved(name):
			bad(key, "set by the plugin; it cannot be overridden")
		case strings.ContainsAny(c.Headers[name], "\r\n\x00"):
			bad(key, "the value has a line break or NUL") // never echo the value: it may be a key
		}
	}
	return errors.Join(errs...)
}

// checkSecret checks a Standard Webhooks symmetric secret.
func checkSecret(s string) error {
	b64, ok := strings.CutPrefix(s, secretPrefix)
	if !ok {
		return errors.New("want whsec_<base64>")
	}
	key, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return errors.New("the part after whsec_ is not base64")
	}
	if len(key) < minSecretBytes || len(key) > maxSecretBytes {
		return fmt.Errorf("want %d..%d random bytes, got %d", minSecretBytes, maxSecretBytes, len(key))
	}
	return nil
}

func isToken(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r > 126 || r <= 32 || strings.ContainsRune(`"(),/:;<=>?@[\]{}`, r) {
			return false
		}
	}
	return true
}

func isReserved(name string) bool {
	canon := http.CanonicalHeaderKey(name)
	for _, r := range reservedHeaders {
		if canon == r {
			return true
		}
	}
	return false
}

// secrets returns the request and response secrets, reading the files.
func (c Config) secrets() (request, response string, err error) {
	request, err = readSecret(c.Secret, "secret_file", c.SecretFile)
	if err != nil {
		return "", "", err
	}
	response, err = readSecret(c.ResponseSecret, "response_secret_file", c.ResponseSecretFile)
	if err != nil {
		return "", "", err
	}
	if response == "" {
		response = request
	}
	return request, response, nil
}

func readSecret(inline, fileKey, file string) (string, error) {
	if file == "" {
		return inline, nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		msg := err.Error()
		var pe *fs.PathError
		if errors.As(err, &pe) {
			msg = pe.Err.Error()
		}
		return "", &sdk.ConfigError{Key: fileKey, Message: "cannot read " + file + ": " + msg}
	}
	s := strings.TrimSpace(string(b))
	if err := checkSecret(s); err != nil {
		return "", &sdk.ConfigError{Key: fileKey, Message: file + ": " + err.Error()}
	}
	return s, nil
}
