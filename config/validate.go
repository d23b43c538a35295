package config

import (
	"encoding/base64"
	"encoding/hex"
	"fmt"
	htmltemplate "html/template"
	"net"
	"net/mail"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"text/template"
	"time"
)

// Problem is one thing wrong with a configuration, at a key path such as
// providers[1].deliver.webhook.url. Key is empty for problems that belong
// to no key.
type Problem struct {
	Key     string
	Message string
}

// String returns "key: message".
func (p Problem) String() string {
	if p.Key == "" {
		return p.Message
	}
	return p.Key + ": " + p.Message
}

// Problems is every problem found in a configuration. Load and Validate
// return it as their error; use errors.As to list the problems one by one.
type Problems []Problem

// Error returns one line per problem, "key: message".
func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// Limits of the values Validate accepts.
const (
	MinTokenLength   = 4
	MaxTokenLength   = 128
	MinTokenExpire   = 60 * time.Second
	MaxTokenExpire   = 31536000 * time.Second
	MaxAttempts      = 100 // NIST SP 800-63B allows at most 100 consecutive failures
	MaxOutstanding   = 100
	MinSession       = time.Minute
	MinMaxBodyBytes  = 1 << 10
	MaxMaxBodyBytes  = 64 << 20
	MinPepperLength  = 16
	MaxWebhookTries  = 100
	MaxAuditBatch    = 1000
	MaxAuditBuffer   = 1 << 20
	webhookSecretPfx = "whsec_"
	// MinIPv6Prefix is the shortest http.ipv6_prefix: below /32 one limit
	// would span more than an ISP's whole allocation.
	MinIPv6Prefix = 32
)

// idPattern is a project or provider id: 1 to 36 characters of
// a-z A-Z 0-9 . _ -, not starting with . _ or - (Appwrite's custom ids).
var idPattern = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9._-]{0,35}$`)

const idRule = "must be 1 to 36 characters of a-z, A-Z, 0-9, '.', '_' and '-', not starting with '.', '_' or '-'"

// Validate checks the whole configuration and reports every problem it
// finds, not just the first, as Problems (nil when there are none).
func (c Config) Validate() error {
	v := &validator{}

	v.hostPort("listen", c.Listen)
	if c.PublicURL != "" {
		v.httpURL("public_url", c.PublicURL, false)
	}
	v.id("project", c.Project)
	if c.Data == "" {
		v.add("data", "is required")
	}

	v.store(c.Store)
	if c.Store.Driver == "postgres" && c.Secrets.KeyFile == "" {
		v.add("secrets.key_file", "is required when store.driver is postgres: every replica seals and opens the store's secrets with the keys of this file (one `openssl rand -base64 32` a line)")
	}
	v.tokens(c.Tokens)

	if c.Sessions.Duration < MinSession {
		v.add("sessions.duration", "must be at least %s, got %s", MinSession, c.Sessions.Duration)
	}
	if c.Sessions.MaxPerUser < -1 {
		v.add("sessions.max_per_user", "must be -1 (no limit) or more, got %d", c.Sessions.MaxPerUser)
	}

	for i, o := range c.CORS.Origins {
		v.httpURL(fmt.Sprintf("cors.origins[%d]", i), o, true)
	}

	v.positive("http.read_timeout", c.HTTP.ReadTimeout)
	v.positive("http.write_timeout", c.HTTP.WriteTimeout)
	v.positive("http.idle_timeout", c.HTTP.IdleTimeout)
	v.positive("http.shutdown_timeout", c.HTTP.ShutdownTimeout)
	if c.Store.Timeout > 0 && c.HTTP.WriteTimeout > 0 && 3*c.Store.Timeout >= c.HTTP.WriteTimeout {
		// An exchange whose COMMIT outcome is unknown waits up to three
		// store deadlines (the commit, settling it, the read-back); its
		// answer must still reach the client.
		v.add("store.timeout", "must be under a third of http.write_timeout (%s), got %s", c.HTTP.WriteTimeout, c.Store.Timeout)
	}
	v.proxies(c.HTTP)
	if c.HTTP.MaxBodyBytes < MinMaxBodyBytes || c.HTTP.MaxBodyBytes > MaxMaxBodyBytes {
		v.add("http.max_body_bytes", "must be between %d (1KiB) and %d (64MiB), got %d", MinMaxBodyBytes, MaxMaxBodyBytes, c.HTTP.MaxBodyBytes)
	}

	for _, l := range []struct {
		key string
		n   int
	}{
		{"limits.session_token", c.Limits.SessionToken},
		{"limits.oauth2", c.Limits.OAuth2},
		{"limits.jwt", c.Limits.JWT},
		{"limits.verify", c.Limits.Verify},
		{"limits.sms_per_number", c.Limits.SMSPerNumber},
	} {
		if l.n < 0 {
			v.add(l.key, "must not be negative, got %d", l.n)
		}
	}

	v.oneOf("log.level", c.Log.Level, "debug", "info", "warn", "error")
	v.oneOf("log.format", c.Log.Format, "text", "json")

	for i, a := range c.Redirect.Allow {
		v.httpURL(fmt.Sprintf("redirect.allow[%d]", i), a, false)
	}

	v.audit(c.Audit)
	v.providers(c.Providers)
	v.emailLinks(c)
	v.publicURLNeeded(c)

	if len(v.ps) == 0 {
		return nil
	}
	return v.ps
}

type validator struct{ ps Problems }

// proxies checks trusted_proxies, client_ip_header and ipv6_prefix.
func (v *validator) proxies(h HTTP) {
	for i, s := range h.TrustedProxies {
		if _, err := parsePrefix(s); err != nil {
			v.add(fmt.Sprintf("http.trusted_proxies[%d]", i), "must be a CIDR such as 10.0.0.0/8 or an IP address, got %q", s)
		}
	}
	v.oneOf("http.client_ip_header", h.ClientIPHeader, "x-forwarded-for", "forwarded")
	if h.IPv6Prefix < MinIPv6Prefix || h.IPv6Prefix > 128 {
		v.add("http.ipv6_prefix", "must be between %d and 128, got %d", MinIPv6Prefix, h.IPv6Prefix)
	}
}

// publicURLNeeded asks for public_url when a provider may use the
// redirect flow (deliver.via redirect, or kind oidc or oauth2) and the daemon
// listens beyond loopback: the IdP's callback URL cannot be derived from
// a wildcard or outward-facing listen address, and the request's Host is
// the client's to write. serve checks again once the plugins have said
// which flows they offer.
func (v *validator) publicURLNeeded(c Config) {
	if c.PublicURL != "" || LoopbackListen(c.Listen) {
		return
	}
	for i, p := range c.Providers {
		if p.Deliver.Via == DeliverRedirect || p.Kind == "oidc" || p.Kind == "oauth2" {
			v.add("public_url", "is required when listen (%q) is not a loopback address and a provider uses the redirect flow (providers[%d], %q)", c.Listen, i, p.Name)
			return
		}
	}
}

// LoopbackListen reports whether a listen address (host:port) is on
// loopback only: localhost or a loopback IP. An empty host listens on
// every interface.
func LoopbackListen(listen string) bool {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

func (v *validator) add(key, format string, args ...any) {
	v.ps = append(v.ps, Problem{Key: key, Message: fmt.Sprintf(format, args...)})
}

func (v *validator) store(s Store) {
	switch s.Driver {
	case "bolt":
	case "postgres":
		if s.DSN == "" {
			v.add("store.dsn", "is required when store.driver is postgres (or set store.dsn_file)")
		}
		if s.MaxConns < 1 {
			v.add("store.max_conns", "must be at least 1, got %d", s.MaxConns)
		}
		if s.Writers < 1 || s.Writers > max(s.MaxConns, 1) {
			v.add("store.writers", "must be between 1 and store.max_conns (%d), got %d", s.MaxConns, s.Writers)
		}
	default:
		v.add("store.driver", "must be bolt or postgres, got %q", s.Driver)
	}
	v.bothSet("store.dsn", s.DSN, s.DSNFile, s.dsnFromFile)
	v.positive("store.sweep_interval", s.SweepInterval)
	v.positive("store.timeout", s.Timeout)
	if s.KeyCache < 0 || s.KeyCache > MaxKeyCache {
		v.add("store.key_cache", "must be between 0 (off) and %s, got %s", MaxKeyCache, s.KeyCache)
	}
}

func (v *validator) tokens(t Tokens) {
	v.tokenLength("tokens.length", t.Length)
	v.tokenExpire("tokens.expire", t.Expire)
	if t.MaxAttempts < 1 || t.MaxAttempts > MaxAttempts {
		v.add("tokens.max_attempts", "must be between 1 and %d (NIST SP 800-63B allows at most %d), got %d", MaxAttempts, MaxAttempts, t.MaxAttempts)
	}
	if t.MaxOutstanding < 1 || t.MaxOutstanding > MaxOutstanding {
		v.add("tokens.max_outstanding", "must be between 1 and %d, got %d", MaxOutstanding, t.MaxOutstanding)
	}
	if t.Pepper != "" && len(t.Pepper) < MinPepperLength {
		v.add("tokens.pepper", "must be at least %d characters (or leave it empty to have one generated)", MinPepperLength)
	}
	v.bothSet("tokens.pepper", t.Pepper, t.PepperFile, t.pepperFromFile)
}

func (v *validator) tokenLength(key string, n int) {
	if n < MinTokenLength || n > MaxTokenLength {
		v.add(key, "must be between %d and %d, got %d", MinTokenLength, MaxTokenLength, n)
	}
}

func (v *validator) tokenExpire(key string, d time.Duration) {
	switch {
	case d < MinTokenExpire || d > MaxTokenExpire:
		v.add(key, "must be between %s and %s (60 to 31536000 seconds), got %s", MinTokenExpire, MaxTokenExpire, d)
	case d%time.Second != 0:
		v.add(key, "must be whole seconds, got %s", d)
	}
}

func (v *validator) providers(ps []Provider) {
	first := map[string]int{} // name → index of its first entry
	for i, p := range ps {
		if _, dup := first[p.Name]; !dup && p.Name != "" {
			first[p.Name] = i
		}
	}
	for i, p := range ps {
		key := fmt.Sprintf("providers[%d]", i)
		switch j, seen := first[p.Name]; {
		case p.Name == "":
			v.add(key+".name", "is required")
		case !idPattern.MatchString(p.Name):
			v.add(key+".name", "%s, got %q", idRule, p.Name)
		case seen && j != i:
			v.add(key+".name", "%q is already the name of providers[%d]", p.Name, j)
		}

		switch {
		case p.Kind == "" && p.Plugin == nil:
			v.add(key, "set kind (a built-in provider) or plugin (an external one)")
		case p.Kind != "" && p.Plugin != nil:
			v.add(key, "set kind or plugin, not both")
		case p.Plugin != nil:
			if p.Plugin.Path == "" {
				v.add(key+".plugin.path", "is required")
			}
			if b, err := hex.DecodeString(p.Plugin.SHA256); err != nil || len(b) != 32 {
				v.add(key+".plugin.sha256", "must be the plugin binary's SHA-256 as 64 hex digits")
			}
		}

		for j, g := range p.Guards {
			gkey := fmt.Sprintf("%s.guards[%d]", key, j)
			if _, ok := first[g]; !ok {
				v.add(gkey, "no provider is named %q", g)
			} else if g == p.Name {
				v.add(gkey, "a provider cannot guard itself")
			}
		}

		v.positive(key+".timeout", p.Timeout)
		if p.Token.Length != 0 {
			v.tokenLength(key+".token.length", p.Token.Length)
		}
		if p.Token.Expire != 0 {
			v.tokenExpire(key+".token.expire", p.Token.Expire)
		}
		v.deliver(key+".deliver", p.Deliver)
	}
}

func (v *validator) deliver(key string, d Deliver) {
	switch d.Via {
	case "", DeliverResponse, DeliverRedirect:
	case DeliverWebhook:
		v.webhook(key+".webhook", d.Webhook)
	case DeliverEmail:
		v.email(key+".email", d.Email)
	case DeliverSMS:
		v.sms(key+".sms", d.SMS)
	default:
		v.add(key+".via", "must be response, redirect, webhook, email or sms, got %q", d.Via)
	}
	// Secrets given twice are wrong whichever way the secret is delivered.
	v.bothSet(key+".webhook.secret", d.Webhook.Secret, d.Webhook.SecretFile, d.Webhook.secretFromFile)
	v.bothSet(key+".email.password", d.Email.Password, d.Email.PasswordFile, d.Email.passwordFromFile)
	v.bothSet(key+".sms.auth_token", d.SMS.AuthToken, d.SMS.AuthTokenFile, d.SMS.authTokenFromFile)
	v.bothSet(key+".sms.secret", d.SMS.Secret, d.SMS.SecretFile, d.SMS.secretFromFile)
}

// sms checks deliver.sms: what its provider needs to send.
func (v *validator) sms(key string, s SMS) {
	const when = "deliver.sms.provider is %s"
	switch s.Provider {
	case SMSTwilio:
		if s.AccountSID == "" {
			v.add(key+".account_sid", "is required when "+when, s.Provider)
		}
		if s.AuthToken == "" {
			v.add(key+".auth_token", "is required when "+when+" (or set auth_token_file)", s.Provider)
		}
		if s.From == "" && s.MessagingServiceSID == "" {
			v.add(key+".from", "is required when "+when+" (or set messaging_service_sid)", s.Provider)
		}
		if s.From != "" && !ValidE164(s.From) && !validSenderID(s.From) {
			v.add(key+".from", "must be an E.164 number (+ and 8 to 15 digits) or an alphanumeric sender id, got %q", s.From)
		}
		if s.BaseURL != "" {
			v.httpURL(key+".base_url", s.BaseURL, false)
		}
	case SMSHTTP:
		if s.URL == "" {
			v.add(key+".url", "is required when "+when, s.Provider)
		} else {
			v.httpURL(key+".url", s.URL, false)
		}
		switch {
		case s.Secret == "":
			v.add(key+".secret", "is required when "+when+" (or set secret_file)", s.Provider)
		case !validWebhookSecret(s.Secret):
			v.add(key+".secret", "must be %q followed by base64 (a Standard Webhooks secret)", webhookSecretPfx)
		}
	default:
		v.add(key+".provider", "must be twilio or http, got %q", s.Provider)
	}
	if s.Template != "" {
		if _, err := template.New("sms").Parse(s.Template); err != nil {
			v.add(key+".template", "%v", err)
		}
	}
}

// ValidE164 reports whether s is a phone number in E.164 form as an SMS
// is sent to: a + and 8 to 15 digits, the first not 0.
func ValidE164(s string) bool {
	digits, ok := strings.CutPrefix(s, "+")
	if !ok || len(digits) < 8 || len(digits) > 15 || digits[0] == '0' {
		return false
	}
	for _, c := range digits {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// validSenderID is Twilio's alphanumeric sender id: 1 to 11 letters,
// digits and spaces, with at least one letter.
func validSenderID(s string) bool {
	letter := false
	for _, c := range s {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
			letter = true
		case c >= '0' && c <= '9', c == ' ':
		default:
			return false
		}
	}
	return letter && len(s) <= 11
}

// emailLinks checks each magic-URL link against redirect.allow: the mail
// sends the user's browser there with the secret, so it goes only where
// the redirect flow may send one.
func (v *validator) emailLinks(c Config) {
	for i, p := range c.Providers {
		link := p.Deliver.Email.Link
		if link == "" || p.Deliver.Via != DeliverEmail {
			continue
		}
		key := fmt.Sprintf("providers[%d].deliver.email.link", i)
		if u, err := url.Parse(link); err != nil || u.Fragment != "" || strings.HasSuffix(link, "#") {
			v.add(key, "must be an absolute http or https URL with no #fragment, got %q", link)
			continue
		}
		if !c.Redirect.Allows(link) {
			v.add(key, "must start with a redirect.allow prefix (the mail sends the secret there), got %q", link)
		}
	}
}

// Allows reports whether u starts with an allowed prefix, on the same
// scheme and host, the prefix ending at a path boundary. A path with dot
// segments is refused: the browser resolves them, which would leave the
// prefix. The daemon applies it to success and failure URLs too.
func (r Redirect) Allows(u string) bool {
	parsed, err := url.Parse(u)
	if err != nil || (parsed.Scheme != "http" && parsed.Scheme != "https") || parsed.Host == "" || parsed.User != nil {
		return false
	}
	for _, seg := range strings.Split(strings.ReplaceAll(parsed.Path, `\`, "/"), "/") {
		if seg == "." || seg == ".." {
			return false
		}
	}
	for _, allow := range r.Allow {
		a, err := url.Parse(allow)
		if err != nil || a.Scheme != parsed.Scheme || !strings.EqualFold(a.Host, parsed.Host) {
			continue
		}
		if p := strings.TrimSuffix(a.Path, "/"); parsed.Path == p || strings.HasPrefix(parsed.Path, p+"/") || p == "" {
			return true
		}
	}
	return false
}

// ProvesIdentity reports what a provider's verifier says of itself in
// Describe: whether a successful verify proves who the person is. known
// is false when it cannot be told (a third-party plugin that has not been
// started).
type ProvesIdentity func(p Provider) (proves, known bool)

// ValidateDelivery checks each provider's deliver.via against what its
// verifier proves: one that does not prove identity may only deliver out
// of band (webhook, email or sms), unless another provider lists it in its
// guards and it has no out-of-band delivery: it is then a guard only,
// which mints nothing, so it needs no delivery (GuardOnly). Config does
// not know the verifiers, so the caller says: from the built-in kinds'
// Describe before start, or from every plugin's after. It returns
// Problems (nil when there are none).
func (c Config) ValidateDelivery(proves ProvesIdentity) error {
	v := &validator{}
	for i, p := range c.Providers {
		if ok, known := proves(p); known && !ok && !p.Deliver.Via.OutOfBand() && !c.GuardOnly(p.Name) {
			via := p.Deliver.Via
			if via == "" {
				via = DefaultDeliverVia
			}
			v.add(fmt.Sprintf("providers[%d].deliver.via", i),
				"must be webhook, email or sms, got %q: the %s verifier does not prove identity on its own, so its secret may only go out of band, never in an HTTP answer or redirect", via, kindOf(p))
		}
	}
	if len(v.ps) == 0 {
		return nil
	}
	return v.ps
}

// GuardOnly reports whether the named provider, when its verifier does
// not prove identity, serves only as a guard: another provider lists it
// in guards, and it has no out-of-band delivery (deliver.via response,
// redirect or unset), so it has nowhere to send a secret of its own. Its
// own sign-ins are then refused before anything is verified; only its
// guard check runs.
func (c Config) GuardOnly(name string) bool {
	guards := false
	for _, p := range c.Providers {
		if p.Name == name && p.Deliver.Via.OutOfBand() {
			return false
		}
		guards = guards || p.Name != name && slices.Contains(p.Guards, name)
	}
	return guards
}

// kindOf names a provider's verifier in messages.
func kindOf(p Provider) string {
	if p.Kind != "" {
		return p.Kind
	}
	return "plugin's"
}

func (v *validator) webhook(key string, w Webhook) {
	v.webhookFor(key, "deliver.via is webhook", w)
}

// webhookFor checks a webhook that is required when the setting named by
// when says so.
func (v *validator) webhookFor(key, when string, w Webhook) {
	if w.URL == "" {
		v.add(key+".url", "is required when %s", when)
	} else {
		v.httpURL(key+".url", w.URL, false)
	}
	switch {
	case w.Secret == "":
		v.add(key+".secret", "is required when %s (or set secret_file)", when)
	case !validWebhookSecret(w.Secret):
		v.add(key+".secret", "must be %q followed by base64 (a Standard Webhooks secret)", webhookSecretPfx)
	}
	v.positive(key+".timeout", w.Timeout)
	if w.Attempts < 1 || w.Attempts > MaxWebhookTries {
		v.add(key+".attempts", "must be between 1 and %d, got %d", MaxWebhookTries, w.Attempts)
	}
}

// audit checks the audit section: a known sink and what it needs.
func (v *validator) audit(a Audit) {
	switch a.Sink {
	case AuditOff, AuditStdout:
	case AuditFile:
		if a.Path == "" {
			v.add("audit.path", "is required when audit.sink is file")
		}
	case AuditWebhook:
		v.webhookFor("audit.webhook", "audit.sink is webhook", a.Webhook)
	default:
		v.add("audit.sink", "must be empty (off), stdout, file or webhook, got %q", a.Sink)
	}
	v.bothSet("audit.webhook.secret", a.Webhook.Secret, a.Webhook.SecretFile, a.Webhook.secretFromFile)
	if a.Batch < 1 || a.Batch > MaxAuditBatch {
		v.add("audit.batch", "must be between 1 and %d, got %d", MaxAuditBatch, a.Batch)
	}
	if a.Buffer < 1 || a.Buffer > MaxAuditBuffer {
		v.add("audit.buffer", "must be between 1 and %d, got %d", MaxAuditBuffer, a.Buffer)
	}
}

func validWebhookSecret(s string) bool {
	rest, ok := strings.CutPrefix(s, webhookSecretPfx)
	if !ok || rest == "" {
		return false
	}
	_, err := base64.StdEncoding.DecodeString(rest)
	return err == nil
}

func (v *validator) email(key string, e Email) {
	if e.SMTP == "" {
		v.add(key+".smtp", "is required when deliver.via is email")
	} else {
		v.hostPort(key+".smtp", e.SMTP)
	}
	if e.From == "" {
		v.add(key+".from", "is required when deliver.via is email")
	} else if _, err := mail.ParseAddress(e.From); err != nil {
		v.add(key+".from", "must be an email address, got %q", e.From)
	}
	v.oneOf(key+".tls", e.TLS, "none", "starttls", "tls")
	if e.Template != "" {
		if _, err := template.New("email").Parse(e.Template); err != nil {
			v.add(key+".template", "%v", err)
		}
	}
	if e.HTMLTemplate != "" {
		if _, err := htmltemplate.New("email").Parse(e.HTMLTemplate); err != nil {
			v.add(key+".html_template", "%v", err)
		}
	}
}

// bothSet reports a secret given inline and as a file. A secret that Load
// read from its file does not count as inline.
func (v *validator) bothSet(key, secret, file string, fromFile bool) {
	if secret != "" && file != "" && !fromFile {
		v.add(key+"_file", "set %s or %s_file, not both", lastKey(key), lastKey(key))
	}
}

func lastKey(key string) string {
	if i := strings.LastIndexByte(key, '.'); i >= 0 {
		return key[i+1:]
	}
	return key
}

func (v *validator) id(key, s string) {
	if !idPattern.MatchString(s) {
		v.add(key, "%s, got %q", idRule, s)
	}
}

func (v *validator) hostPort(key, s string) {
	_, port, err := net.SplitHostPort(s)
	if err == nil {
		_, err = strconv.ParseUint(port, 10, 16)
	}
	if err != nil {
		v.add(key, "must be host:port, got %q", s)
	}
}

func (v *validator) positive(key string, d time.Duration) {
	if d <= 0 {
		v.add(key, "must be more than 0, got %s", d)
	}
}

func (v *validator) oneOf(key, s string, allowed ...string) {
	for _, a := range allowed {
		if s == a {
			return
		}
	}
	v.add(key, "must be %s, got %q", orList(allowed), s)
}

func orList(xs []string) string {
	if len(xs) == 1 {
		return xs[0]
	}
	return strings.Join(xs[:len(xs)-1], ", ") + " or " + xs[len(xs)-1]
}

// httpURL checks an absolute http(s) URL; an origin has nothing after
// the host and port.
func (v *validator) httpURL(key, s string, origin bool) {
	u, err := url.Parse(s)
	switch {
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Opaque != "":
		v.add(key, "must be an absolute http or https URL, got %q", s)
	case u.User != nil:
		v.add(key, "must not hold a user or password, got %q", s)
	case origin && (u.Path != "" || u.RawQuery != "" || u.Fragment != "" || u.ForceQuery || strings.HasSuffix(s, "#")):
		v.add(key, "must be an origin, scheme://host[:port] with no path, got %q", s)
	case u.Fragment != "" || strings.HasSuffix(s, "#"):
		v.add(key, "must not have a #fragment, got %q", s)
	}
}
