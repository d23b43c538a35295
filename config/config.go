package config

import "time"

// Config is handoff's whole configuration. Default returns its built-in
// values, Load layers a file, the environment and flags over them, and
// Validate checks the result.
type Config struct {
	// Listen is the HTTP address, host:port.
	Listen string `koanf:"listen"`
	// PublicURL is the externally visible base URL (scheme://host[:port]),
	// used for OAuth2 callback URLs, the session cookies' Domain and the
	// API's own origin; never the request's Host. Empty: derived from the
	// address the daemon listens on. Required when a provider uses the
	// redirect flow and Listen is not a loopback address.
	PublicURL string `koanf:"public_url"`
	// Project is the one project id this daemon serves.
	Project string `koanf:"project"`
	// Data is the directory for the embedded store and generated files.
	Data      string     `koanf:"data"`
	Store     Store      `koanf:"store"`
	Secrets   Secrets    `koanf:"secrets"`
	Tokens    Tokens     `koanf:"tokens"`
	Sessions  Sessions   `koanf:"sessions"`
	CORS      CORS       `koanf:"cors"`
	HTTP      HTTP       `koanf:"http"`
	Limits    Limits     `koanf:"limits"`
	Log       Log        `koanf:"log"`
	Redirect  Redirect   `koanf:"redirect"`
	Audit     Audit      `koanf:"audit"`
	Providers []Provider `koanf:"providers"`
}

// Audit configures the audit log: one JSON line per security event
// (sign-ins, exchanges, keys, providers going up or down). It never blocks
// a sign-in: events wait in a buffer of Buffer events, and those that find
// it full are dropped and counted.
type Audit struct {
	// Sink is where events go: "" (off, the default), stdout, file or
	// webhook.
	Sink AuditSink `koanf:"sink"`
	// Path is the file of sink file, appended to and reopened on SIGHUP
	// (so logrotate can move it away).
	Path string `koanf:"path"`
	// Webhook is where sink webhook posts batches of events, signed per
	// Standard Webhooks; attempts and timeout as a provider's delivery
	// webhook (default 5 attempts of 5s).
	Webhook Webhook `koanf:"webhook"`
	// Batch is the most events one webhook post carries; default 100.
	Batch int `koanf:"batch"`
	// Buffer is how many events wait for the sink before new ones are
	// dropped; default 4096.
	Buffer int `koanf:"buffer"`
}

// AuditSink is audit.sink: where the audit log goes.
type AuditSink string

// The audit sinks.
const (
	AuditOff     AuditSink = ""
	AuditStdout  AuditSink = "stdout"
	AuditFile    AuditSink = "file"
	AuditWebhook AuditSink = "webhook"
)

// Store selects and configures the storage backend.
type Store struct {
	Driver        string        `koanf:"driver"`         // bolt | postgres
	Path          string        `koanf:"path"`           // bolt file; default <data>/handoff.db
	DSN           string        `koanf:"dsn"`            // postgres connection string
	DSNFile       string        `koanf:"dsn_file"`       // read into DSN by Load
	MaxConns      int           `koanf:"max_conns"`      // postgres pool size
	Writers       int           `koanf:"writers"`        // postgres: mint and exchange transactions at once (group commit); default 4, at most max_conns
	SweepInterval time.Duration `koanf:"sweep_interval"` // how often expired tokens and sessions are swept; default 1m
	Timeout       time.Duration `koanf:"timeout"`        // deadline of every store call; default 5s
	// KeyCache is how long an API key read from the store is trusted
	// without reading it again (default 1s, at most MaxKeyCache; 0: read
	// for every request). A key revoked on another replica keeps working
	// here for up to that long.
	KeyCache time.Duration `koanf:"key_cache"`

	dsnFromFile bool // DSN was read from DSNFile by Load
}

// MaxKeyCache bounds store.key_cache: how late a revocation may reach
// the other replicas.
const MaxKeyCache = time.Minute

// Secrets says where the keys that seal the store's own secrets live, and
// where the first API key goes.
type Secrets struct {
	// KeyFile holds the keys that seal the pepper and the signing keys in
	// the store: one a line, 32 random bytes in base64 (`openssl rand
	// -base64 32`); the first seals and every one opens. Empty on bolt:
	// <store path>.key, generated at the first start. Required on postgres.
	KeyFile string `koanf:"key_file"`
	// BootstrapKeyFile receives the first API key, in a new 0600 file,
	// instead of stderr.
	BootstrapKeyFile string `koanf:"bootstrap_key_file"`
}

// Tokens are the defaults and rules of one-time tokens.
type Tokens struct {
	Length      int           `koanf:"length"`       // 4..128, default 6
	Expire      time.Duration `koanf:"expire"`       // 60s..1y, default 15m
	MaxAttempts int           `koanf:"max_attempts"` // wrong guesses a token survives; default 10
	// MaxOutstanding caps a user's live tokens; minting more removes the
	// oldest. 1..100, default 5.
	MaxOutstanding int    `koanf:"max_outstanding"`
	Pepper         string `koanf:"pepper"`      // optional; hex or text
	PepperFile     string `koanf:"pepper_file"` // read into Pepper by Load

	pepperFromFile bool // Pepper was read from PepperFile by Load
}

// Sessions are the rules of sessions.
type Sessions struct {
	Duration   time.Duration `koanf:"duration"`     // default 8760h (1 year)
	MaxPerUser int           `koanf:"max_per_user"` // default 10; -1 unlimited
}

// CORS lists the origins allowed to call the client API from a browser.
type CORS struct {
	Origins []string `koanf:"origins"`
}

// HTTP holds server timeouts and limits.
type HTTP struct {
	ReadTimeout     time.Duration `koanf:"read_timeout"`     // default 10s
	WriteTimeout    time.Duration `koanf:"write_timeout"`    // default 30s
	IdleTimeout     time.Duration `koanf:"idle_timeout"`     // default 120s
	ShutdownTimeout time.Duration `koanf:"shutdown_timeout"` // default 15s
	MaxBodyBytes    int64         `koanf:"max_body_bytes"`   // default 65536
	// TrustedProxies are the CIDRs (or single addresses) of the reverse
	// proxies in front of the daemon. Only a peer in them is asked who the
	// client is (ClientIPHeader) and which scheme it used.
	TrustedProxies []string `koanf:"trusted_proxies"`
	// ClientIPHeader is the header the trusted proxies append the client's
	// address to: x-forwarded-for (default) or forwarded (RFC 7239).
	// Only one is read, since a client can write the other unchecked.
	ClientIPHeader string `koanf:"client_ip_header"`
	// IPv6Prefix is how many leading bits of an IPv6 client address
	// every per-IP limit counts by, 32..128; default 64, since one host
	// owns a whole /64.
	IPv6Prefix int `koanf:"ipv6_prefix"`
	// TrustProxy is deprecated: true adds loopback and the private ranges
	// to TrustedProxies.
	TrustProxy bool `koanf:"trust_proxy"`
}

// Limits are the abuse limits of client routes (Appwrite's defaults).
type Limits struct {
	Enabled      bool `koanf:"enabled"`       // default true
	SessionToken int  `koanf:"session_token"` // POST /account/sessions/token per IP+user per hour; default 10
	OAuth2       int  `koanf:"oauth2"`        // GET /account/tokens/oauth2 per IP per hour; default 50
	JWT          int  `koanf:"jwt"`           // POST /account/jwts per user per minute; default 120
	Verify       int  `koanf:"verify"`        // POST /providers/{name}/verify per IP per hour; default 60

	// SMSPerNumber is how many texts one phone number is sent per hour
	// (deliver.via sms), as Appwrite limits its phone sessions; default 5.
	SMSPerNumber int `koanf:"sms_per_number"`
}

// Log configures logging.
type Log struct {
	Level  string `koanf:"level"`  // debug | info | warn | error; default info
	Format string `koanf:"format"` // text | json; default text
}

// Redirect lists where the OAuth2 token flow may send browsers back to.
type Redirect struct {
	// Allow holds allowed success/failure URL prefixes (scheme://host[:port][/path]).
	Allow []string `koanf:"allow"`
}

// Provider is one configured verifier. Load fills unset fields from
// Provider.WithDefaults.
type Provider struct {
	// Name is the provider's id in URLs such as /v1/providers/{name}/verify.
	Name    string         `koanf:"name"`
	Kind    string         `koanf:"kind"`   // a built-in kind; or empty with Plugin set
	Plugin  *Plugin        `koanf:"plugin"` // a third-party plugin binary
	Config  map[string]any `koanf:"config"` // decoded by the plugin itself
	Guards  []string       `koanf:"guards"` // names of guard providers run first
	Users   Users          `koanf:"users"`
	Deliver Deliver        `koanf:"deliver"`
	Timeout time.Duration  `koanf:"timeout"` // per call; default 5s
	Token   TokenOverride  `koanf:"token"`
	// Optional lets the daemon serve while this provider cannot start (it
	// is retried with backoff); default false: a failed first start stops
	// `serve`, and /readyz answers 503 while it is down.
	Optional bool `koanf:"optional"`
}

// Plugin locates a third-party plugin binary, pinned by its SHA-256.
type Plugin struct {
	Path   string            `koanf:"path"`
	SHA256 string            `koanf:"sha256"`
	Args   []string          `koanf:"args"`
	Env    map[string]string `koanf:"env"`
}

// Users is what a provider may do with an identity it has not seen.
type Users struct {
	Create      bool `koanf:"create"`
	LinkByEmail bool `koanf:"link_by_email"`
}

// TokenOverride sets a provider's own token length and expiry.
type TokenOverride struct {
	Length int           `koanf:"length"`
	Expire time.Duration `koanf:"expire"`
}

// Deliver says how a minted secret reaches the user.
type Deliver struct {
	Via     DeliveryMode `koanf:"via"` // response | redirect | webhook | email | sms; default response
	Webhook Webhook      `koanf:"webhook"`
	Email   Email        `koanf:"email"`
	SMS     SMS          `koanf:"sms"`
}

// DeliveryMode is deliver.via: the way a minted secret reaches the user.
// The daemon decides from it, the sign-in's flow and whether the verifier
// proves identity where a secret may go; a mode it does not know sends a
// secret nowhere.
type DeliveryMode string

// The delivery modes.
const (
	// DeliverResponse hands the secret back in the answer to the request
	// that proved identity: the verify answer's body, or the redirect
	// flow's redirect to the success URL. Only a verifier that proves
	// identity on its own may use it. An unset deliver.via means response.
	DeliverResponse DeliveryMode = "response"
	// DeliverRedirect hands the secret only to the browser redirect flow,
	// on the redirect to the success URL; a direct verify is refused. Only
	// a verifier that proves identity on its own may use it.
	DeliverRedirect DeliveryMode = "redirect"
	// DeliverWebhook posts the secret to the app's backend.
	DeliverWebhook DeliveryMode = "webhook"
	// DeliverEmail mails the secret to the user's address, as a code or,
	// with deliver.email.link, as a magic URL.
	DeliverEmail DeliveryMode = "email"
	// DeliverSMS texts the secret to the user's phone number.
	DeliverSMS DeliveryMode = "sms"
)

// OutOfBand reports whether the mode sends the secret on a channel of its
// own, never in an HTTP answer. A verifier that does not prove identity
// (a captcha shows that someone is there, not who) may only deliver out of
// band: whoever receives the secret is then the proof.
func (m DeliveryMode) OutOfBand() bool {
	switch m {
	case DeliverWebhook, DeliverEmail, DeliverSMS:
		return true
	case DeliverResponse, DeliverRedirect, "":
		return false
	}
	return false
}

// Webhook posts the secret to the app's backend, signed per Standard Webhooks.
type Webhook struct {
	URL        string        `koanf:"url"`
	Secret     string        `koanf:"secret"`      // whsec_<base64>
	SecretFile string        `koanf:"secret_file"` // read into Secret by Load
	Timeout    time.Duration `koanf:"timeout"`     // per attempt; default 5s
	Attempts   int           `koanf:"attempts"`    // default 5

	secretFromFile bool // Secret was read from SecretFile by Load
}

// Email sends the secret by SMTP.
type Email struct {
	SMTP         string `koanf:"smtp"` // host:port
	Username     string `koanf:"username"`
	Password     string `koanf:"password"`
	PasswordFile string `koanf:"password_file"` // read into Password by Load
	TLS          string `koanf:"tls"`           // none | starttls | tls; default starttls
	From         string `koanf:"from"`
	Subject      string `koanf:"subject"`
	Template     string `koanf:"template"` // text/template; fields .Secret .UserID .Expire .Provider .Link
	// HTMLTemplate is the mail's HTML part (html/template, same fields).
	// With neither template set, the mail carries the default text and
	// HTML parts; with only Template set, only the text part.
	HTMLTemplate string `koanf:"html_template"`
	// Link makes the mail a magic URL: the daemon appends userId and
	// secret to this URL (its query kept), which must start with a
	// redirect.allow prefix. The app reads them and exchanges them as
	// Appwrite's magic-URL login does. A provider with a link and no
	// token.length mints 64-character secrets, as the redirect flow does.
	Link string `koanf:"link"`

	passwordFromFile bool // Password was read from PasswordFile by Load
}

// The SMS providers.
const (
	SMSTwilio = "twilio" // Twilio's Messages REST API
	SMSHTTP   = "http"   // a JSON POST signed per Standard Webhooks
)

// SMS texts the secret to the user's phone number (E.164).
type SMS struct {
	Provider string `koanf:"provider"` // twilio | http
	// Template is the message's text (text/template; fields .Secret
	// .UserID .Expire .Provider); default "Your sign-in code is {{.Secret}}".
	Template string `koanf:"template"`

	// twilio
	AccountSID          string `koanf:"account_sid"`
	AuthToken           string `koanf:"auth_token"`
	AuthTokenFile       string `koanf:"auth_token_file"` // read into AuthToken by Load
	From                string `koanf:"from"`
	MessagingServiceSID string `koanf:"messaging_service_sid"`
	BaseURL             string `koanf:"base_url"` // default https://api.twilio.com

	// http
	URL        string `koanf:"url"`
	Secret     string `koanf:"secret"`      // whsec_<base64>
	SecretFile string `koanf:"secret_file"` // read into Secret by Load

	authTokenFromFile bool
	secretFromFile    bool
}
