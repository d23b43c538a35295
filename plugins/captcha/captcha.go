package captcha

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/mail"
	"net/url"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/handoffd/handoff/providers/sdk"
)

// Interface guards.
var (
	_ sdk.Verifier = (*Verifier)(nil)
	_ sdk.Guard    = (*Verifier)(nil)
	_ sdk.Enroller = (*Verifier)(nil)
)

// Version is the plugin's version, reported in Describe.
const Version = "1.0.0"

const (
	// usedPrefix keys the hashes of tokens already presented:
	// used/<hex sha256 of the token>.
	usedPrefix = "used/"
	// ReplayWindow is how long a presented token is remembered. It
	// outlives every provider's token lifetime (Turnstile's 300 s is the
	// longest), so a token is refused locally for as long as it could
	// still be accepted anywhere.
	ReplayWindow = 10 * time.Minute
	// maxTokenLen bounds a token (Turnstile's are at most 2048 characters,
	// reCAPTCHA's a few thousand).
	maxTokenLen = 8192
	// maxResponse bounds a siteverify answer.
	maxResponse = 64 << 10
	maxEmailLen = 254
	maxUserID   = 256
)

// codesOfOurs are siteverify error codes that blame the request handoff
// built (its secret, site key or form), or the service, not the person's
// token: they are logged as errors for the operator. Those that blame the
// configured secret or site key answer ErrMisconfigured (the host shows it
// to the operator), the others unavailable.
var codesOfOurs = map[string]error{
	"missing-input-secret":    sdk.ErrMisconfigured,
	"invalid-input-secret":    sdk.ErrMisconfigured,
	"sitekey-secret-mismatch": sdk.ErrMisconfigured,
	"bad-request":             sdk.ErrUnavailable,
	"internal-error":          sdk.ErrUnavailable,
}

// Verifier is the captcha guard and verifier. It is safe for concurrent
// use once configured.
type Verifier struct {
	cfg    Config
	secret string
	kv     sdk.KV
	client *http.Client
	hosts  map[string]bool
}

// New makes an unconfigured captcha verifier (an sdk.Factory).
func New() sdk.Verifier { return &Verifier{} }

// Describe reports the plugin: direct flow, a guard, and no proof of
// identity on its own, so the host delivers its secrets only out of band.
func (v *Verifier) Describe(context.Context) (sdk.Info, error) {
	return sdk.Info{Name: "captcha", Version: Version, Flows: []string{sdk.FlowDirect}, ProvesIdentity: false}, nil
}

// Configure reads the config and the secret key.
func (v *Verifier) Configure(ctx context.Context, raw json.RawMessage, host sdk.Host) error {
	cfg, err := ParseConfig(raw)
	if err != nil {
		return err
	}
	secret, err := cfg.loadSecret()
	if err != nil {
		return err
	}
	if host == nil {
		return &sdk.Error{Code: sdk.CodeUnavailable, Message: "captcha: the host offers no KV, and the plugin remembers used tokens there"}
	}
	hosts := make(map[string]bool, len(cfg.Hostnames))
	for _, h := range cfg.Hostnames {
		hosts[strings.ToLower(h)] = true
	}
	if cfg.MinScore != nil && !cfg.scored() {
		sdk.Logger(ctx).Warn("captcha: min_score is ignored; only reCAPTCHA v3 scores are checked", "provider", cfg.Provider)
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	if v.client != nil {
		v.client.CloseIdleConnections()
	}
	v.cfg, v.secret, v.kv, v.hosts = cfg, secret, host.KV(), hosts
	v.client = &http.Client{
		Transport: transport,
		// The form carries the secret key: never resend it elsewhere.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return nil
}

// Check passes a request whose payload carries a token (in the field
// named by `field`) that the provider accepts, has not been presented
// before, and meets the hostname, action and score rules.
func (v *Verifier) Check(ctx context.Context, req sdk.Request) error {
	fields, err := readPayload(req.Payload)
	if err != nil {
		return err
	}
	return v.check(ctx, req, fields)
}

// Verify runs Check and returns the identity the payload names:
// {captcha, email} → Subject lower(email), Email email (not verified);
// {captcha, userId} → Subject userId.
func (v *Verifier) Verify(ctx context.Context, req sdk.Request) (sdk.Identity, error) {
	fields, err := readPayload(req.Payload)
	if err != nil {
		return sdk.Identity{}, err
	}
	id, err := identityOf(fields)
	if err != nil {
		return sdk.Identity{}, err
	}
	if err := v.check(ctx, req, fields); err != nil {
		return sdk.Identity{}, err
	}
	return id, nil
}

// Enroll links a user to the subject {captcha, userId} sign-ins name: the
// user's own id. The payload is {}.
func (v *Verifier) Enroll(ctx context.Context, req sdk.EnrollRequest) (sdk.EnrollResult, error) {
	dec := json.NewDecoder(strings.NewReader(string(req.Payload)))
	dec.DisallowUnknownFields()
	var empty struct{}
	if err := dec.Decode(&empty); err != nil || !isObject(req.Payload) {
		return sdk.EnrollResult{}, invalidRequest("the enroll payload is {}")
	}
	if err := checkUserID(req.UserID); err != nil {
		return sdk.EnrollResult{}, err
	}
	data, _ := json.Marshal(map[string]string{"subject": req.UserID})
	return sdk.EnrollResult{Subject: req.UserID, Data: data}, nil
}

// readPayload reads a JSON object's fields.
func readPayload(p json.RawMessage) (map[string]json.RawMessage, error) {
	var fields map[string]json.RawMessage
	if !isObject(p) || json.Unmarshal(p, &fields) != nil {
		return nil, invalidRequest("the payload must be a JSON object")
	}
	return fields, nil
}

func isObject(p json.RawMessage) bool {
	s := strings.TrimLeft(string(p), " \t\r\n")
	return strings.HasPrefix(s, "{")
}

// stringField returns a string field; absent or null is "".
func stringField(fields map[string]json.RawMessage, name string) (string, error) {
	raw, ok := fields[name]
	if !ok || string(raw) == "null" {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", invalidRequest(name + " must be a string")
	}
	return s, nil
}

// identityOf reads the identity a Verify payload names.
func identityOf(fields map[string]json.RawMessage) (sdk.Identity, error) {
	email, err := stringField(fields, "email")
	if err != nil {
		return sdk.Identity{}, err
	}
	userID, err := stringField(fields, "userId")
	if err != nil {
		return sdk.Identity{}, err
	}
	switch {
	case email != "" && userID != "":
		return sdk.Identity{}, invalidRequest("give email or userId, not both")
	case email != "":
		a, err := mail.ParseAddress(email)
		if err != nil || a.Address != email || len(email) > maxEmailLen {
			return sdk.Identity{}, invalidRequest("email is not a valid address")
		}
		return sdk.Identity{Subject: strings.ToLower(email), Email: email, EmailVerified: false}, nil
	case userID != "":
		if err := checkUserID(userID); err != nil {
			return sdk.Identity{}, err
		}
		return sdk.Identity{Subject: userID}, nil
	}
	return sdk.Identity{}, invalidRequest("email or userId is required")
}

func checkUserID(id string) error {
	if id == "" || len(id) > maxUserID || !utf8.ValidString(id) || strings.IndexFunc(id, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0 {
		return invalidRequest("userId must be 1..256 bytes without spaces or control characters")
	}
	return nil
}

// check verifies the token in fields once.
func (v *Verifier) check(ctx context.Context, req sdk.Request, fields map[string]json.RawMessage) error {
	if v.kv == nil {
		return &sdk.Error{Code: sdk.CodeUnavailable, Message: "captcha: not configured"}
	}
	token, err := stringField(fields, v.cfg.Field)
	if err != nil {
		return err
	}
	switch {
	case token == "":
		return invalidRequest(fmt.Sprintf("the captcha token is missing (payload field %q)", v.cfg.Field))
	case len(token) > maxTokenLen:
		return invalidRequest(fmt.Sprintf("the captcha token is longer than %d bytes", maxTokenLen))
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("captcha: %w: %w", err, sdk.ErrUnavailable)
	}

	// Remember the token before asking the provider, so that of two
	// requests racing with one token only one gets that far.
	sum := sha256.Sum256([]byte(token))
	key := usedPrefix + hex.EncodeToString(sum[:])
	fresh, err := v.kv.CompareAndSwap(ctx, key, nil, []byte(time.Now().UTC().Format(time.RFC3339)), ReplayWindow)
	if err != nil {
		return fmt.Errorf("captcha: remember the token: %v: %w", err, sdk.ErrUnavailable)
	}
	if !fresh {
		return refused("captcha token already used")
	}

	res, err := v.siteverify(ctx, token, req.ClientIP)
	if err != nil {
		// The provider never judged the token: forget it, so the person
		// can retry with it once the provider answers again.
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		if derr := v.kv.Delete(dctx, key); derr != nil {
			sdk.Logger(ctx).Warn("captcha: could not forget a token siteverify did not judge", "err", derr.Error())
		}
		cancel()
		return err
	}
	return v.judge(ctx, res)
}

// siteverifyResponse is the union of the providers' answers.
type siteverifyResponse struct {
	Success        bool     `json:"success"`
	ChallengeTS    string   `json:"challenge_ts"`
	Hostname       string   `json:"hostname"`
	APKPackageName string   `json:"apk_package_name"` // reCAPTCHA on Android
	ErrorCodes     []string `json:"error-codes"`
	Score          *float64 `json:"score"`  // reCAPTCHA v3 (hCaptcha Enterprise: a risk score, unused)
	Action         string   `json:"action"` // reCAPTCHA v3, Turnstile
	Credit         bool     `json:"credit"` // hCaptcha
	CData          string   `json:"cdata"`  // Turnstile
}

// siteverify posts the token to the provider. Any failure to get an
// answer is ErrUnavailable.
func (v *Verifier) siteverify(ctx context.Context, token, clientIP string) (siteverifyResponse, error) {
	var out siteverifyResponse
	form := url.Values{"secret": {v.secret}, "response": {token}}
	if ip := remoteIP(clientIP); ip != "" {
		form.Set("remoteip", ip)
	}
	if v.cfg.Provider == HCaptcha && v.cfg.Sitekey != "" {
		form.Set("sitekey", v.cfg.Sitekey)
	}
	ctx, cancel := context.WithTimeout(ctx, v.cfg.Timeout.Duration)
	defer cancel()
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, v.cfg.SiteverifyURL, strings.NewReader(form.Encode()))
	if err != nil {
		return out, fmt.Errorf("captcha: siteverify: %v: %w", err, sdk.ErrInternal)
	}
	hreq.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	hreq.Header.Set("Accept", "application/json")
	hreq.Header.Set("User-Agent", "handoff-captcha/"+Version)
	log := sdk.Logger(ctx)
	resp, err := v.client.Do(hreq)
	if err != nil {
		log.Warn("captcha: siteverify unreachable", "provider", v.cfg.Provider, "err", transportError(err))
		return out, fmt.Errorf("captcha: siteverify unreachable: %w", sdk.ErrUnavailable)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse+1))
	if err != nil {
		log.Warn("captcha: siteverify answer unreadable", "provider", v.cfg.Provider, "err", transportError(err))
		return out, fmt.Errorf("captcha: siteverify answer unreadable: %w", sdk.ErrUnavailable)
	}
	if resp.StatusCode != http.StatusOK {
		log.Warn("captcha: siteverify failed", "provider", v.cfg.Provider, "status", resp.StatusCode)
		return out, fmt.Errorf("captcha: siteverify answered %d: %w", resp.StatusCode, sdk.ErrUnavailable)
	}
	if len(body) > maxResponse || json.Unmarshal(body, &out) != nil {
		log.Warn("captcha: siteverify answered something other than its JSON", "provider", v.cfg.Provider, "bytes", len(body))
		return out, fmt.Errorf("captcha: siteverify answer unreadable: %w", sdk.ErrUnavailable)
	}
	if !out.Success {
		for _, c := range out.ErrorCodes {
			if sentinel, ours := codesOfOurs[c]; ours {
				log.Error("captcha: siteverify refused handoff's request; check the secret key, site key and siteverify_url",
					"provider", v.cfg.Provider, "error_codes", cleanCodes(out.ErrorCodes))
				return out, fmt.Errorf("captcha: siteverify refused the request (%s): %w", c, sentinel)
			}
		}
	}
	return out, nil
}

// judge applies the config's rules to the provider's answer.
func (v *Verifier) judge(ctx context.Context, res siteverifyResponse) error {
	fail := func(msg string) error {
		sdk.Logger(ctx).Debug("captcha: token refused", "provider", v.cfg.Provider, "reason", msg)
		return refused(msg)
	}
	if !res.Success {
		if codes := cleanCodes(res.ErrorCodes); codes != "" {
			return fail("captcha failed: " + codes)
		}
		return fail("captcha failed")
	}
	if len(v.hosts) > 0 {
		h := res.Hostname
		if h == "" {
			h = res.APKPackageName
		}
		if !v.hosts[strings.ToLower(h)] {
			return fail(fmt.Sprintf("captcha solved on %q, not an allowed hostname", clean(h)))
		}
	}
	if v.cfg.Action != "" && res.Action != v.cfg.Action {
		return fail(fmt.Sprintf("captcha action %q, want %q", clean(res.Action), v.cfg.Action))
	}
	if v.cfg.scored() {
		switch {
		case res.Score == nil:
			return fail("captcha answer has no score (is the site key a reCAPTCHA v3 key?)")
		case *res.Score < *v.cfg.MinScore:
			return fail(fmt.Sprintf("captcha score %.2f is below min_score %.2f", *res.Score, *v.cfg.MinScore))
		}
	}
	return nil
}

// cleanCodes joins up to 5 error codes, each reduced to the characters
// error codes use, so a provider's answer cannot inject text.
func cleanCodes(codes []string) string {
	out := make([]string, 0, len(codes))
	for _, c := range codes {
		if c = clean(c); c != "" {
			out = append(out, c)
		}
		if len(out) == 5 {
			break
		}
	}
	return strings.Join(out, ", ")
}

// clean keeps a short run of the characters host names, actions and
// error codes use.
func clean(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 128 && (unicode.IsLetter(r) || unicode.IsDigit(r) || strings.ContainsRune("-_.:/", r)) {
			return r
		}
		return -1
	}, s)
	if len(s) > 64 {
		s = s[:64]
	}
	return s
}

// remoteIP is the client's IP without a port, or "" when it is none.
func remoteIP(s string) string {
	if ip := net.ParseIP(s); ip != nil {
		return ip.String()
	}
	if h, _, err := net.SplitHostPort(s); err == nil && net.ParseIP(h) != nil {
		return net.ParseIP(h).String()
	}
	return ""
}

func invalidRequest(msg string) error {
	return &sdk.Error{Code: sdk.CodeInvalidRequest, Message: "captcha: " + msg}
}

func refused(msg string) error {
	return &sdk.Error{Code: sdk.CodeInvalidCredentials, Message: msg}
}

// transportError is err without the URL net/http puts in it: the URL
// may carry a key in its query, and logs never carry secrets.
func transportError(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Op + ": " + ue.Err.Error()
	}
	return err.Error()
}
