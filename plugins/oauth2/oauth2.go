package oauth2

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"unicode/utf8"

	xoauth2 "golang.org/x/oauth2"

	"github.com/handoffd/handoff/providers/sdk"
)

// Version is the plugin's version, reported by Describe.
const Version = "1.0.0"

const (
	// stateVersion is the version of the flow state Begin keeps.
	stateVersion = 1
	// maxAnswer bounds a userinfo or emails answer.
	maxAnswer = 1 << 20
	// maxSubject, maxEmail and maxName are the host's bounds on an
	// identity (sdk.Identity); a longer email or name is dropped or cut
	// here rather than failing the sign-in with a 502.
	maxSubject = 1024
	maxEmail   = 254
	maxName    = 128
	// maxClaims bounds the claims handed to the host (it takes 32 KiB).
	maxClaims = 16 << 10
	// userAgent names handoff to the IdP's API (GitHub's requires one).
	userAgent = "handoff-oauth2/" + Version
)

// Interface guards.
var (
	_ sdk.Verifier   = (*Verifier)(nil)
	_ sdk.Redirector = (*Verifier)(nil)
)

// Verifier is the oauth2 verifier: the redirect flow (Begin, Complete)
// with an OAuth2 IdP that has no OpenID Connect, reading who signed in
// from the IdP's user API.
type Verifier struct {
	mu     sync.RWMutex
	cfg    Config
	secret string
	client *http.Client
	log    *slog.Logger
}

// New makes an unconfigured oauth2 verifier (an sdk.Factory).
func New() sdk.Verifier {
	return &Verifier{log: sdk.Logger(context.Background())}
}

// Describe reports the plugin: the redirect flow, and it proves identity.
func (v *Verifier) Describe(context.Context) (sdk.Info, error) {
	return sdk.Info{
		Name:           "oauth2",
		Version:        Version,
		Flows:          []string{sdk.FlowRedirect},
		ProvesIdentity: true,
	}, nil
}

// Configure reads the config. It does not call the IdP, which has no
// discovery document: a wrong endpoint shows at the first sign-in.
func (v *Verifier) Configure(ctx context.Context, raw json.RawMessage, _ sdk.Host) error {
	cfg, err := ParseConfig(raw)
	if err != nil {
		return err
	}
	secret, err := cfg.loadSecret()
	if err != nil {
		return err
	}
	client := &http.Client{
		Timeout:   cfg.HTTPTimeout.Duration,
		Transport: http.DefaultTransport.(*http.Transport).Clone(),
		// The IdP's endpoints answer themselves; a redirect is a
		// misconfiguration, never followed (nor the token with it).
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	v.cfg, v.secret, v.client = cfg, secret, client
	v.log = sdk.Logger(ctx).With("preset", cfg.Preset, "client_id", cfg.ClientID)
	return nil
}

// configured returns the config and client, or ErrUnavailable before
// Configure.
func (v *Verifier) configured() (Config, string, *http.Client, error) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	if v.client == nil {
		return Config{}, "", nil, fmt.Errorf("the oauth2 provider is not configured: %w", sdk.ErrUnavailable)
	}
	return v.cfg, v.secret, v.client, nil
}

// Verify refuses every payload: an OAuth2 access token a client sends
// could have been issued to any other app of the IdP, so this kind signs
// in only through the redirect flow, where handoff redeems the code
// itself.
func (v *Verifier) Verify(_ context.Context, req sdk.Request) (sdk.Identity, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(req.Payload, &obj); err != nil || obj == nil {
		return sdk.Identity{}, fmt.Errorf("the payload is not a JSON object: %w", sdk.ErrInvalidRequest)
	}
	return sdk.Identity{}, fmt.Errorf("the oauth2 kind signs in only through the redirect flow (createOAuth2Token or createOAuth2Session): %w", sdk.ErrInvalidRequest)
}

// flowState is what Begin keeps for Complete (BeginResult.State). The
// host keeps it server-side, keyed by the state parameter, and hands it
// back once.
type flowState struct {
	V           int    `json:"v"`
	State       string `json:"state"`
	Verifier    string `json:"verifier,omitempty"`
	RedirectURI string `json:"redirect_uri"`
}

// oauthConfig is the client of the code flow.
func oauthConfig(cfg Config, secret, redirectURI string, scopes []string) *xoauth2.Config {
	style := xoauth2.AuthStyleInHeader
	if cfg.ClientAuth == AuthPost || secret == "" {
		style = xoauth2.AuthStyleInParams // a public client sends client_id in the form
	}
	return &xoauth2.Config{
		ClientID:     cfg.ClientID,
		ClientSecret: secret,
		Endpoint:     xoauth2.Endpoint{AuthURL: cfg.AuthorizeURL, TokenURL: cfg.TokenURL, AuthStyle: style},
		RedirectURL:  redirectURI,
		Scopes:       scopes,
	}
}

// Begin starts the redirect flow: the IdP's authorize URL with a fresh
// state and, with pkce, an S256 code_challenge; and the flow state to keep.
func (v *Verifier) Begin(_ context.Context, req sdk.BeginRequest) (sdk.BeginResult, error) {
	cfg, secret, _, err := v.configured()
	if err != nil {
		return sdk.BeginResult{}, err
	}
	if u, err := url.Parse(req.CallbackURL); req.CallbackURL == "" || err != nil || !u.IsAbs() || u.Host == "" {
		return sdk.BeginResult{}, fmt.Errorf("begin: the callback URL is missing or not absolute: %w", sdk.ErrInvalidRequest)
	}
	scopes := slices.Clone(cfg.Scopes)
	for _, s := range req.Scopes {
		if s == "" || strings.ContainsAny(s, " \t\r\n") {
			return sdk.BeginResult{}, fmt.Errorf("begin: scope %q is not valid: %w", sdk.Truncate(s, 50), sdk.ErrInvalidRequest)
		}
		if !slices.Contains(scopes, s) {
			scopes = append(scopes, s)
		}
	}
	st := flowState{V: stateVersion, State: randomString(), RedirectURI: req.CallbackURL}
	var opts []xoauth2.AuthCodeOption
	if *cfg.PKCE {
		st.Verifier = xoauth2.GenerateVerifier()
		opts = append(opts, xoauth2.S256ChallengeOption(st.Verifier))
	}
	authURL := oauthConfig(cfg, secret, st.RedirectURI, scopes).AuthCodeURL(st.State, opts...)
	kept, err := json.Marshal(st)
	if err != nil {
		return sdk.BeginResult{}, fmt.Errorf("begin: %w", err)
	}
	return sdk.BeginResult{AuthURL: authURL, State: kept}, nil
}

// Complete finishes the redirect flow: it checks the callback's state
// against the kept one, redeems the code (with the PKCE verifier), reads
// the user from the IdP's API and returns the identity.
func (v *Verifier) Complete(ctx context.Context, req sdk.CompleteRequest) (sdk.Identity, error) {
	var st flowState
	if len(req.State) == 0 || json.Unmarshal(req.State, &st) != nil || st.V != stateVersion || st.State == "" || st.RedirectURI == "" {
		return sdk.Identity{}, fmt.Errorf("complete: the flow state is missing or not this plugin's: %w", sdk.ErrInvalidRequest)
	}
	cfg, secret, client, err := v.configured()
	if err != nil {
		return sdk.Identity{}, err
	}
	q := req.Query
	if e := q.Get("error"); e != "" {
		msg := "the identity provider refused the sign-in: " + sdk.Printable(e)
		if d := q.Get("error_description"); d != "" {
			msg += " (" + sdk.Printable(d) + ")"
		}
		return sdk.Identity{}, fmt.Errorf("%s: %w", msg, sdk.ErrInvalidCredentials)
	}
	got := q.Get("state")
	if got == "" {
		return sdk.Identity{}, fmt.Errorf("complete: the callback has no state: %w", sdk.ErrInvalidRequest)
	}
	if subtle.ConstantTimeCompare([]byte(got), []byte(st.State)) != 1 {
		return sdk.Identity{}, fmt.Errorf("complete: the callback's state does not match this flow's: %w", sdk.ErrInvalidCredentials)
	}
	code := q.Get("code")
	if code == "" {
		return sdk.Identity{}, fmt.Errorf("complete: the callback has no code: %w", sdk.ErrInvalidRequest)
	}
	var opts []xoauth2.AuthCodeOption
	if st.Verifier != "" {
		opts = append(opts, xoauth2.VerifierOption(st.Verifier))
	}
	xctx := context.WithValue(ctx, xoauth2.HTTPClient, client)
	token, err := oauthConfig(cfg, secret, st.RedirectURI, nil).Exchange(xctx, code, opts...)
	if err != nil {
		return sdk.Identity{}, v.exchangeError(ctx, cfg, err)
	}
	id, err := v.identity(ctx, cfg, client, token.AccessToken)
	if err != nil {
		return id, err
	}
	// The IdP's tokens go to the session the sign-in opens (Appwrite's
	// providerAccessToken and the rest).
	id.AccessToken, id.AccessTokenExpiry, id.RefreshToken = token.AccessToken, token.Expiry, token.RefreshToken
	return id, nil
}

// clientRefused reports whether a token endpoint error refuses handoff's
// own client rather than the person's code: an operator's problem. The
// client's authentication failed (invalid_client, RFC 6749's 401, also
// without a code; GitHub's incorrect_client_credentials), the client may
// not use the code flow (unauthorized_client, unsupported_grant_type), the
// registered callback URL is another (redirect_uri_mismatch), or GitHub
// suspended the app (application_suspended).
func clientRefused(code string, status int) bool {
	switch code {
	case "invalid_client", "unauthorized_client", "unsupported_grant_type",
		"incorrect_client_credentials", "redirect_uri_mismatch", "application_suspended":
		return true
	case "":
		return status == http.StatusUnauthorized
	}
	return false
}

// exchangeError classifies a failed code exchange: the IdP refusing the
// code is invalid credentials (GitHub answers that with a 200 and an
// error field, which x/oauth2 turns into a RetrieveError too); the IdP
// refusing handoff's client is ErrMisconfigured, logged at ERROR with the
// client_id (never the secret); a 5xx, 429, redirect or no answer is
// unavailable.
func (v *Verifier) exchangeError(ctx context.Context, cfg Config, err error) error {
	var re *xoauth2.RetrieveError
	if errors.As(err, &re) {
		status := 0
		if re.Response != nil {
			status = re.Response.StatusCode
		}
		code := sdk.Printable(re.ErrorCode)
		switch {
		case status/100 == 3:
			v.logger().Warn("the identity provider's token endpoint answered a redirect", "status", status)
			return fmt.Errorf("the identity provider's token endpoint answered %d, a redirect (not followed): %w", status, sdk.ErrUnavailable)
		case status >= 500 || status == http.StatusTooManyRequests:
			v.logger().Warn("the identity provider's token endpoint failed", "status", status, "error", code)
			return fmt.Errorf("the identity provider's token endpoint answered %d: %w", status, sdk.ErrUnavailable)
		case clientRefused(code, status):
			code = cmp.Or(code, "no error code")
			v.logger().Error("the identity provider refused the client: check client_id, client_secret and the registered callback URL", "status", status, "error", code)
			return fmt.Errorf("the identity provider refused the client (%s) for client_id %q: %w: check client_id, client_secret and the registered callback URL", code, cfg.ClientID, sdk.ErrMisconfigured)
		case code == "" && status/100 == 2:
			return fmt.Errorf("the identity provider's token answer is not one: %w", sdk.ErrUnavailable)
		}
		code = cmp.Or(code, "no error code")
		v.logger().Warn("the identity provider refused the code exchange", "status", status, "error", code)
		return fmt.Errorf("the identity provider refused the code: %s: %w", code, sdk.ErrInvalidCredentials)
	}
	if ctx.Err() != nil {
		return fmt.Errorf("exchanging the code: %w (%w)", sdk.ErrUnavailable, ctx.Err())
	}
	return fmt.Errorf("exchanging the code: %w: %s", sdk.ErrUnavailable, sdk.NetReason(err))
}

func (v *Verifier) logger() *slog.Logger {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return v.log
}

// identity reads the user from the IdP's API with the access token.
func (v *Verifier) identity(ctx context.Context, cfg Config, client *http.Client, token string) (sdk.Identity, error) {
	var user map[string]any
	if err := v.getJSON(ctx, client, cfg.UserinfoURL, token, &user); err != nil {
		return sdk.Identity{}, err
	}
	if user == nil {
		return sdk.Identity{}, fmt.Errorf("the identity provider's user answer is not a JSON object: %w", sdk.ErrUnavailable)
	}
	var id sdk.Identity
	switch cfg.Preset {
	case PresetGitHub:
		id = sdk.Identity{Subject: sdk.ClaimString(user["id"]), Name: firstOf(sdk.ClaimString(user["name"]), sdk.ClaimString(user["login"]))}
		email, verified, err := v.githubEmail(ctx, cfg, client, token, sdk.ClaimString(user["email"]))
		if err != nil {
			return sdk.Identity{}, err
		}
		id.Email, id.EmailVerified = email, verified
	case PresetDiscord:
		id = sdk.Identity{
			Subject: sdk.ClaimString(user["id"]), Name: firstOf(sdk.ClaimString(user["global_name"]), sdk.ClaimString(user["username"])),
			Email: sdk.ClaimString(user["email"]), EmailVerified: sdk.ClaimBool(user["verified"]),
		}
	default:
		m := cfg.Claims
		id = sdk.Identity{
			Subject: sdk.ClaimString(lookup(user, m.Subject)), Name: sdk.ClaimString(lookup(user, m.Name)),
			Email: sdk.ClaimString(lookup(user, m.Email)), EmailVerified: sdk.ClaimBool(lookup(user, m.EmailVerified)),
		}
	}
	return finish(id, user)
}

// finish checks the subject and keeps the rest within the host's bounds.
func finish(id sdk.Identity, user map[string]any) (sdk.Identity, error) {
	switch {
	case id.Subject == "":
		return sdk.Identity{}, fmt.Errorf("the identity provider's user answer has no user id: %w", sdk.ErrInvalidCredentials)
	case len(id.Subject) > maxSubject || !printable(id.Subject):
		return sdk.Identity{}, fmt.Errorf("the identity provider's user id is over %d bytes or not printable: %w", maxSubject, sdk.ErrInvalidCredentials)
	}
	if len(id.Email) > maxEmail || !printable(id.Email) || !strings.Contains(id.Email, "@") {
		id.Email = ""
	}
	id.EmailVerified = id.EmailVerified && id.Email != ""
	id.Name = cutName(id.Name)
	id.Claims = scalars(user)
	return id, nil
}

// githubEmail picks the email of a GitHub user: the primary entry of
// /user/emails, verified only when GitHub says so. The email on /user is
// the public one (chosen by the user, possibly unverified or empty), so
// it is used only when /user/emails is not granted (the user:email scope
// was dropped), and then never counts as verified.
func (v *Verifier) githubEmail(ctx context.Context, cfg Config, client *http.Client, token, public string) (string, bool, error) {
	var emails []struct {
		Email    string `json:"email"`
		Primary  bool   `json:"primary"`
		Verified bool   `json:"verified"`
	}
	err := v.getJSON(ctx, client, cfg.EmailsURL, token, &emails)
	var se *statusError
	if errors.As(err, &se) && (se.status == http.StatusForbidden || se.status == http.StatusNotFound) {
		v.logger().Warn("GitHub's /user/emails is not granted (is user:email among the scopes?); using the public email, unverified", "status", se.status)
		return public, false, nil
	}
	if err != nil {
		return "", false, err
	}
	for _, e := range emails {
		if e.Primary {
			return e.Email, e.Verified, nil
		}
	}
	return public, false, nil
}

// statusError is an IdP API answer other than 200.
type statusError struct{ status int }

func (e *statusError) Error() string { return fmt.Sprintf("status %d", e.status) }

// getJSON GETs an IdP API endpoint with the access token and decodes its
// JSON answer into out. A 401 is invalid credentials (the token is not
// good after all); a 5xx, 429, redirect or no answer is unavailable, and
// any other status is returned as a *statusError wrapping ErrUnavailable.
func (v *Verifier) getJSON(ctx context.Context, client *http.Client, endpoint, token string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, endpoint, nil)
	if err != nil {
		return fmt.Errorf("reading the user: %w", sdk.ErrUnavailable)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", userAgent)
	resp, err := client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("reading the user: %w (%w)", sdk.ErrUnavailable, ctx.Err())
		}
		v.logger().Warn("the identity provider's API failed", "url", redact(endpoint), "err", sdk.NetReason(err))
		return fmt.Errorf("reading the user: %w: %s", sdk.ErrUnavailable, sdk.NetReason(err))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer+1))
	switch {
	case err != nil:
		return fmt.Errorf("reading the user: %w: %s", sdk.ErrUnavailable, sdk.NetReason(err))
	case resp.StatusCode == http.StatusUnauthorized:
		return fmt.Errorf("the identity provider refused its own access token at %s: %w", redact(endpoint), sdk.ErrInvalidCredentials)
	case resp.StatusCode != http.StatusOK:
		v.logger().Warn("the identity provider's API answered an error", "url", redact(endpoint), "status", resp.StatusCode)
		return fmt.Errorf("%s answered %d: %w", redact(endpoint), resp.StatusCode, errors.Join(sdk.ErrUnavailable, &statusError{resp.StatusCode}))
	case len(body) > maxAnswer:
		return fmt.Errorf("%s answered over %d bytes: %w", redact(endpoint), maxAnswer, sdk.ErrUnavailable)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(out); err != nil {
		return fmt.Errorf("%s did not answer the expected JSON: %w", redact(endpoint), sdk.ErrUnavailable)
	}
	return nil
}

// lookup follows a dotted path ("data.user.id", "emails.0.address") into
// a decoded JSON value; an empty path or a missing step is nil. A key
// that itself holds a dot is found when it matches the whole rest of the
// path.
func lookup(v any, path string) any {
	if path == "" {
		return nil
	}
	for path != "" {
		switch x := v.(type) {
		case map[string]any:
			if whole, ok := x[path]; ok {
				return whole
			}
			head, rest, _ := strings.Cut(path, ".")
			v, path = x[head], rest
		case []any:
			head, rest, _ := strings.Cut(path, ".")
			i := -1
			if n, err := json.Number(head).Int64(); err == nil && n >= 0 && n < int64(len(x)) {
				i = int(n)
			}
			if i < 0 {
				return nil
			}
			v, path = x[i], rest
		default:
			return nil
		}
	}
	return v
}

func firstOf(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}

// scalars keeps the top-level strings, numbers and booleans of the user
// answer as the identity's claims, within maxClaims.
func scalars(user map[string]any) map[string]any {
	out := map[string]any{}
	size := 0
	for k, val := range user {
		switch val.(type) {
		case string, json.Number, bool:
		default:
			continue
		}
		b, _ := json.Marshal(val)
		if size += len(k) + len(b) + 4; size > maxClaims {
			break
		}
		out[k] = val
	}
	return out
}

// printable says s is valid UTF-8 without control characters.
func printable(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	return !strings.ContainsFunc(s, func(r rune) bool {
		return r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == '\u2028' || r == '\u2029' || (r >= '\u202a' && r <= '\u202e') || (r >= '\u2066' && r <= '\u2069')
	})
}

// cutName drops a name that is not printable and cuts one over maxName
// characters.
func cutName(s string) string {
	if !printable(s) {
		return ""
	}
	if r := []rune(s); len(r) > maxName {
		return strings.TrimSpace(string(r[:maxName]))
	}
	return s
}

// randomString is 32 random bytes, base64url: a state.
func randomString() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// redact is an endpoint without its query, for errors and logs.
func redact(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "the endpoint"
	}
	u.RawQuery, u.User = "", nil
	return u.String()
}

// Refresh trades a refresh token at the token endpoint (RFC 6749 6), for
// Appwrite's updateSession. A refusal is classified as a failed code
// exchange is.
func (v *Verifier) Refresh(ctx context.Context, req sdk.RefreshRequest) (sdk.RefreshResult, error) {
	if req.RefreshToken == "" {
		return sdk.RefreshResult{}, fmt.Errorf("refresh: no refresh token: %w", sdk.ErrInvalidRequest)
	}
	cfg, secret, client, err := v.configured()
	if err != nil {
		return sdk.RefreshResult{}, err
	}
	xctx := context.WithValue(ctx, xoauth2.HTTPClient, client)
	t, err := oauthConfig(cfg, secret, "", nil).TokenSource(xctx, &xoauth2.Token{RefreshToken: req.RefreshToken}).Token()
	if err != nil {
		return sdk.RefreshResult{}, v.exchangeError(ctx, cfg, err)
	}
	return sdk.RefreshResult{AccessToken: t.AccessToken, AccessTokenExpiry: t.Expiry, RefreshToken: t.RefreshToken}, nil
}
