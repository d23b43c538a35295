package config

import (
	"path/filepath"
	"time"
)

// Default values of a provider entry, applied by Provider.WithDefaults.
const (
	DefaultProviderTimeout = 5 * time.Second
	DefaultWebhookTimeout  = 5 * time.Second
	DefaultWebhookAttempts = 5
	DefaultEmailTLS        = "starttls"
	DefaultEmailSubject    = "Your sign-in code"
	DefaultDeliverVia      = DeliverResponse
	DefaultAuditBatch      = 100
	DefaultAuditBuffer     = 4096
)

// Default returns the built-in configuration: what handoff runs with when
// no file, environment variable or flag says otherwise.
func Default() Config {
	return Config{
		Listen:  "127.0.0.1:8080",
		Project: "default",
		Data:    "./data",
		Store: Store{
			Driver:        "bolt",
			MaxConns:      16,
			Writers:       4,
			SweepInterval: time.Minute,
			Timeout:       5 * time.Second,
			KeyCache:      time.Second,
		},
		Tokens: Tokens{
			Length:         6,
			Expire:         15 * time.Minute,
			MaxAttempts:    10,
			MaxOutstanding: 5,
		},
		Sessions: Sessions{
			Duration:   8760 * time.Hour,
			MaxPerUser: 10,
		},
		HTTP: HTTP{
			ReadTimeout:     10 * time.Second,
			WriteTimeout:    30 * time.Second,
			IdleTimeout:     120 * time.Second,
			ShutdownTimeout: 15 * time.Second,
			MaxBodyBytes:    64 << 10,
			ClientIPHeader:  "x-forwarded-for",
			IPv6Prefix:      64,
		},
		Limits: Limits{
			Enabled:      true,
			SessionToken: 10,
			OAuth2:       50,
			JWT:          120,
			Verify:       60,
			SMSPerNumber: 5,
		},
		Log: Log{
			Level:  "info",
			Format: "text",
		},
		Audit: Audit{
			Webhook: Webhook{Timeout: DefaultWebhookTimeout, Attempts: DefaultWebhookAttempts},
			Batch:   DefaultAuditBatch,
			Buffer:  DefaultAuditBuffer,
		},
	}
}

// StorePath returns the bolt database file: store.path, or handoff.db in
// the data directory when store.path is empty.
func (c Config) StorePath() string {
	if c.Store.Path != "" {
		return c.Store.Path
	}
	return filepath.Join(c.Data, "handoff.db")
}

// SecretsKeyFile returns the file of the keys that seal the store's
// secrets: secrets.key_file, or on bolt the store path plus ".key" when it
// is empty (generated at the first start). It reports whether the path is
// that default.
func (c Config) SecretsKeyFile() (path string, generated bool) {
	if c.Secrets.KeyFile != "" || c.Store.Driver == "postgres" {
		return c.Secrets.KeyFile, false
	}
	return c.StorePath() + ".key", true
}

// WithDefaults returns p with its unset (zero) fields filled in: timeout 5s,
// deliver.via response, deliver.webhook.timeout 5s and attempts 5,
// deliver.email.tls starttls and subject "Your sign-in code". Load applies
// it to every provider entry; code that builds a Config by hand should too.
func (p Provider) WithDefaults() Provider {
	if p.Timeout == 0 {
		p.Timeout = DefaultProviderTimeout
	}
	if p.Deliver.Via == "" {
		p.Deliver.Via = DefaultDeliverVia
	}
	if p.Deliver.Webhook.Timeout == 0 {
		p.Deliver.Webhook.Timeout = DefaultWebhookTimeout
	}
	if p.Deliver.Webhook.Attempts == 0 {
		p.Deliver.Webhook.Attempts = DefaultWebhookAttempts
	}
	if p.Deliver.Email.TLS == "" {
		p.Deliver.Email.TLS = DefaultEmailTLS
	}
	if p.Deliver.Email.Subject == "" {
		p.Deliver.Email.Subject = DefaultEmailSubject
	}
	return p
}
