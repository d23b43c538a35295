package oidc

import (
	"bytes"
	"cmp"
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	gooidc "github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"
	"golang.org/x/oauth2"

	"github.com/handoffd/handoff/providers/sdk"
)

// Version is the plugin's version, reported by Describe.
const Version = "1.0.0"

const (
	// retryEvery is the pause after a failed discovery before the next
	// call tries again; calls in between answer ErrUnavailable at once.
	retryEvery = time.Second
	// configureWait is how long Configure waits for the first discovery.
	// A slower IdP is left to finish in the background.
	configureWait = 3 * time.Second
	// maxIDToken bounds the native flow's id_token.
	maxIDToken = 64 << 10
	// maxSubject bounds the subject claim.
	maxSubject = 1024
	// stateVersion is the version of the flow state Begin keeps.
	stateVersion = 1
	// spentLeeway keeps a spent ID token's mark past the token's expiry,
	// for the clocks of the IdP and the daemon that disagree.
	spentLeeway = 5 * time.Minute
)

// Interface guards.
var (
	_ sdk.Verifier   = (*Verifier)(nil)
	_ sdk.Redirector = (*Verifier)(nil)
	_ gooidc.KeySet  = (*keySet)(nil)
)

// Verifier is the oidc verifier: the redirect flow (Begin, Complete) and
// native sign-in with an ID token the app already holds (Verify).
type Verifier struct {
	cfg      Config
	secret   string
	appleKey *ecdsa.PrivateKey // Sign in with Apple: signs the client secret
	kv       sdk.KV            // spent ID tokens
	client   *http.Client
	log      *slog.Logger
	now      func() time.Time
	retry    time.Duration

	mu       sync.Mutex
	idp      *idp          // the discovered provider; nil until discovery succeeds
	inflight chan struct{} // closed when the discovery under way ends
	lastErr  error         // the last failed discovery
	lastTry  time.Time
}

// idp is what discovery found.
type idp struct {
	provider *gooidc.Provider
	endpoint oauth2.Endpoint
	keys     *keySet
	algs     []string
}

// New makes an unconfigured oidc verifier (an sdk.Factory).
func New() sdk.Verifier {
	return &Verifier{now: time.Now, retry: retryEvery, log: sdk.Logger(context.Background())}
}

// Describe reports the plugin: both flows, and it proves identity.
func (v *Verifier) Describe(context.Context) (sdk.Info, error) {
	return sdk.Info{
		Name:           "oidc",
		Version:        Version,
		Flows:          []string{sdk.FlowDirect, sdk.FlowRedirect},
		ProvesIdentity: true,
	}, nil
}

// Configure reads the config and starts discovery. An IdP that cannot be
// reached does not fail Configure: discovery is retried at the next call,
// which answers ErrUnavailable while the IdP is down. An IdP that answers
// with another issuer does, with a *sdk.ConfigError naming issuer.
func (v *Verifier) Configure(ctx context.Context, raw json.RawMessage, host sdk.Host) error {
	cfg, err := ParseConfig(raw)
	if err != nil {
		return err
	}
	secret, err := cfg.loadSecret()
	if err != nil {
		return err
	}
	var appleKey *ecdsa.PrivateKey
	if cfg.Preset == PresetApple {
		if appleKey, err = cfg.loadAppleKey(); err != nil {
			return err
		}
	}
	v.mu.Lock()
	v.cfg, v.secret, v.appleKey = cfg, secret, appleKey
	if host != nil {
		v.kv = host.KV()
	}
	v.log = sdk.Logger(ctx).With("issuer", cfg.Issuer, "client_id", cfg.ClientID)
	v.client = &http.Client{
		Timeout:   cfg.HTTPTimeout.Duration,
		Transport: http.DefaultTransport.(*http.Transport).Clone(),
		// The IdP's endpoints answer themselves; a redirect is a
		// misconfiguration, never followed.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	v.idp, v.inflight, v.lastErr, v.lastTry = nil, nil, nil, time.Time{}
	v.mu.Unlock()
	if secret == "" && appleKey == nil {
		v.log.Info("no client_secret: the redirect flow runs as a public client (PKCE only)")
	}

	wait, cancel := context.WithTimeout(ctx, configureWait)
	defer cancel()
	_, err = v.ready(wait)
	var mismatch *issuerMismatch
	switch {
	case errors.As(err, &mismatch):
		return &sdk.ConfigError{Key: "issuer", Message: mismatch.Error()}
	case err != nil:
		v.log.Warn("the identity provider is not reachable yet; retrying at the next sign-in", "err", err.Error())
	}
	return nil
}

// ready returns the discovered provider, discovering it first when
// needed. While the IdP is down it answers ErrUnavailable, trying again at
// most once per v.retry.
func (v *Verifier) ready(ctx context.Context) (*idp, error) {
	v.mu.Lock()
	if v.client == nil {
		v.mu.Unlock()
		return nil, fmt.Errorf("the oidc provider is not configured: %w", sdk.ErrUnavailable)
	}
	if v.idp != nil {
		p := v.idp
		v.mu.Unlock()
		return p, nil
	}
	ch := v.inflight
	if ch == nil {
		if v.lastErr != nil && time.Since(v.lastTry) < v.retry {
			err := v.lastErr
			v.mu.Unlock()
			return nil, err
		}
		ch = make(chan struct{})
		v.inflight = ch
		cfg, client, log := v.cfg, v.client, v.log
		go func() {
			p, err := discover(cfg, client, log)
			v.mu.Lock()
			if v.inflight == ch { // not reconfigured meanwhile
				v.idp, v.lastErr, v.lastTry, v.inflight = p, err, time.Now(), nil
			}
			v.mu.Unlock()
			if err == nil {
				log.Info("discovered the identity provider")
			}
			close(ch)
		}()
	}
	v.mu.Unlock()
	select {
	case <-ch:
	case <-ctx.Done():
		return nil, fmt.Errorf("discovering the identity provider: %w (%w)", sdk.ErrUnavailable, ctx.Err())
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.idp != nil {
		return v.idp, nil
	}
	if v.lastErr != nil {
		return nil, v.lastErr
	}
	return nil, fmt.Errorf("discovering the identity provider: %w", sdk.ErrUnavailable)
}

// issuerMismatch: the discovery document names another issuer. It is a
// configuration error, and matches ErrUnavailable for callers.
type issuerMismatch struct{ want, got string }

func (e *issuerMismatch) Error() string {
	return fmt.Sprintf("the identity provider calls itself %q, not %q: set issuer to exactly its value", e.got, e.want)
}

func (e *issuerMismatch) Is(target error) bool { return target == sdk.ErrUnavailable }

// discovery is the part of the OpenID Provider metadata handoff reads.
type discovery struct {
	Issuer           string   `json:"issuer"`
	AuthURL          string   `json:"authorization_endpoint"`
	TokenURL         string   `json:"token_endpoint"`
	UserinfoURL      string   `json:"userinfo_endpoint"`
	JWKSURL          string   `json:"jwks_uri"`
	Algorithms       []string `json:"id_token_signing_alg_values_supported"`
	TokenAuthMethods []string `json:"token_endpoint_auth_methods_supported"`
	ChallengeMethods []string `json:"code_challenge_methods_supported"`
}

// discover reads the IdP's discovery document at
// <issuer>/.well-known/openid-configuration.
func discover(cfg Config, client *http.Client, log *slog.Logger) (*idp, error) {
	wellKnown := strings.TrimSuffix(cfg.Issuer, "/") + "/.well-known/openid-configuration"
	req, err := http.NewRequest(http.MethodGet, wellKnown, nil)
	if err != nil {
		return nil, fmt.Errorf("discovery URL %q: %w", wellKnown, sdk.ErrUnavailable)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("discovery at %s: %w: %s", wellKnown, sdk.ErrUnavailable, sdk.NetReason(err))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	switch {
	case err != nil:
		return nil, fmt.Errorf("discovery at %s: %w: %s", wellKnown, sdk.ErrUnavailable, sdk.NetReason(err))
	case resp.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("discovery at %s answered %d: %w", wellKnown, resp.StatusCode, sdk.ErrUnavailable)
	case len(body) > maxBody:
		return nil, fmt.Errorf("discovery at %s: the document is over %d bytes: %w", wellKnown, maxBody, sdk.ErrUnavailable)
	}
	var d discovery
	if err := json.Unmarshal(body, &d); err != nil {
		return nil, fmt.Errorf("discovery at %s: not a JSON document: %w", wellKnown, sdk.ErrUnavailable)
	}
	if d.Issuer != cfg.wantIssuer() {
		return nil, &issuerMismatch{want: cfg.wantIssuer(), got: d.Issuer}
	}
	var missing []string
	for _, f := range []struct{ name, v string }{{"authorization_endpoint", d.AuthURL}, {"token_endpoint", d.TokenURL}, {"jwks_uri", d.JWKSURL}} {
		if f.v == "" {
			missing = append(missing, f.name)
		}
	}
	if cfg.Userinfo && d.UserinfoURL == "" {
		missing = append(missing, "userinfo_endpoint (userinfo: true)")
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("discovery at %s: the document lacks %s: %w", wellKnown, strings.Join(missing, ", "), sdk.ErrUnavailable)
	}
	var algs []string
	for _, a := range d.Algorithms {
		if slices.Contains(signingAlgs, jose.SignatureAlgorithm(a)) {
			algs = append(algs, a)
		}
	}
	if len(algs) == 0 {
		algs = []string{"RS256"} // the one algorithm OpenID Connect requires
	}
	if len(d.ChallengeMethods) > 0 && !slices.Contains(d.ChallengeMethods, "S256") {
		log.Warn("the identity provider does not list PKCE S256; sending code_challenge anyway")
	}
	style := oauth2.AuthStyleInHeader // client_secret_basic, the default of OpenID Connect
	if len(d.TokenAuthMethods) > 0 && !slices.Contains(d.TokenAuthMethods, "client_secret_basic") && slices.Contains(d.TokenAuthMethods, "client_secret_post") {
		style = oauth2.AuthStyleInParams
	}
	pc := gooidc.ProviderConfig{
		IssuerURL:   d.Issuer,
		AuthURL:     d.AuthURL,
		TokenURL:    d.TokenURL,
		UserInfoURL: d.UserinfoURL,
		JWKSURL:     d.JWKSURL,
		Algorithms:  algs,
	}
	provider := pc.NewProvider(gooidc.ClientContext(context.Background(), client))
	return &idp{
		provider: provider,
		endpoint: oauth2.Endpoint{AuthURL: d.AuthURL, TokenURL: d.TokenURL, AuthStyle: style},
		keys:     newKeySet(d.JWKSURL, client, log),
		algs:     algs,
	}, nil
}

// nativePayload is the native flow's payload. Other fields (a guard's
// captcha token, say) are ignored.
type nativePayload struct {
	IDToken *string `json:"id_token"`
	Nonce   *string `json:"nonce"`
}

// Verify is native sign-in: the app signed in with the IdP itself (an
// SDK, a system sheet) and sends the ID token it got, with the nonce it
// used. The token must be valid for client_id or one of audiences.
func (v *Verifier) Verify(ctx context.Context, req sdk.Request) (sdk.Identity, error) {
	raw := bytes.TrimSpace(req.Payload)
	if len(raw) == 0 || raw[0] != '{' {
		return sdk.Identity{}, fmt.Errorf("payload: want a JSON object {\"id_token\": \"...\", \"nonce\": \"...\"}: %w", sdk.ErrInvalidRequest)
	}
	var p nativePayload
	if err := json.Unmarshal(raw, &p); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return sdk.Identity{}, fmt.Errorf("payload: %s must be a string: %w", te.Field, sdk.ErrInvalidRequest)
		}
		return sdk.Identity{}, fmt.Errorf("payload: not valid JSON: %w", sdk.ErrInvalidRequest)
	}
	switch {
	case p.IDToken == nil || *p.IDToken == "":
		return sdk.Identity{}, fmt.Errorf("payload: id_token is required: %w", sdk.ErrInvalidRequest)
	case len(*p.IDToken) > maxIDToken:
		return sdk.Identity{}, fmt.Errorf("payload: id_token is over %d bytes: %w", maxIDToken, sdk.ErrInvalidRequest)
	}
	nonce := ""
	if p.Nonce != nil {
		nonce = *p.Nonce
	}
	provider, err := v.ready(ctx)
	if err != nil {
		return sdk.Identity{}, err
	}
	tok, claims, err := v.verifyIDToken(ctx, provider, *p.IDToken, v.cfg.accepted())
	if err != nil {
		return sdk.Identity{}, err
	}
	if err := nativeNonce(nonce, tok.Nonce); err != nil {
		return sdk.Identity{}, err
	}
	if err := v.spend(ctx, tok, claims); err != nil {
		return sdk.Identity{}, err
	}
	return v.identity(claims)
}

// spend marks an ID token used, in the host KV until it expires, so each
// ID token signs in once: one taken from a device, a log or a proxy on its
// way cannot be played again (for the native flow nothing else binds it
// to one sign-in when the app sends no nonce). The redirect flow spends
// its ID token too, so one read from the token answer cannot sign in again
// through the native flow.
func (v *Verifier) spend(ctx context.Context, tok *gooidc.IDToken, claims map[string]any) error {
	if v.kv == nil {
		return nil // no host (a bare unit test): nothing to keep it in
	}
	ttl := max(tok.Expiry.Sub(v.now())+spentLeeway, time.Minute)
	fresh, err := v.kv.CompareAndSwap(ctx, spentKey(tok, claims), nil, []byte{1}, ttl)
	switch {
	case err != nil:
		return fmt.Errorf("the replay check failed: %v: %w", err, sdk.ErrUnavailable)
	case !fresh:
		return fmt.Errorf("the ID token was used already; sign in again for a new one: %w", sdk.ErrInvalidCredentials)
	}
	return nil
}

// spentKey is the replay mark of a verified ID token. It is never the
// token's text: base64url leaves unused low bits in the last character of
// a segment, which decoders ignore, so one token has several spellings that
// all verify; and an ECDSA signature (r, s) verifies as (r, n-s) too, so
// the signature bytes do not name a token either. The mark is iss and jti
// (unique per token at its issuer, OpenID Connect's replay identifier),
// or, without jti, the SHA-256 of the verified claims as signed: the
// decoded payload, which every spelling and every signature of the token
// share, and which covers sub, iat, nonce and all else, so two tokens the
// IdP really issued never share it.
func spentKey(tok *gooidc.IDToken, claims map[string]any) string {
	h := sha256.New()
	if jti, ok := claims["jti"].(string); ok && jti != "" {
		h.Write([]byte("jti\x00" + tok.Issuer + "\x00" + jti))
	} else {
		var payload json.RawMessage
		_ = tok.Claims(&payload) // read once already by verifyIDToken
		h.Write([]byte("payload\x00"))
		h.Write(payload)
	}
	return "spent/" + hex.EncodeToString(h.Sum(nil))
}

// nativeNonce checks the native flow's nonce: when the request or the
// token carries one, both must, and the token's must be the request's
// nonce or the lowercase hex SHA-256 of it (what Sign in with Apple and
// Google's iOS SDK put in the token when the app passes the hash).
func nativeNonce(sent, inToken string) error {
	switch {
	case sent == "" && inToken == "":
		return nil
	case sent == "":
		return fmt.Errorf("the ID token carries a nonce but the request has none: %w", sdk.ErrInvalidCredentials)
	case inToken == "":
		return fmt.Errorf("the request has a nonce but the ID token carries none: %w", sdk.ErrInvalidCredentials)
	}
	sum := sha256.Sum256([]byte(sent))
	hashed := hex.EncodeToString(sum[:])
	if subtle.ConstantTimeCompare([]byte(inToken), []byte(sent)) == 1 || subtle.ConstantTimeCompare([]byte(inToken), []byte(hashed)) == 1 {
		return nil
	}
	return fmt.Errorf("the ID token's nonce does not match the request's: %w", sdk.ErrInvalidCredentials)
}

// verifyIDToken checks an ID token's signature (the IdP's JWKS), issuer,
// expiry, audience (one of accepted) and, with several audiences, azp
// (one of accepted). It returns the token and its claims.
func (v *Verifier) verifyIDToken(ctx context.Context, p *idp, raw string, accepted []string) (*gooidc.IDToken, map[string]any, error) {
	var sigErr error
	vctx := context.WithValue(gooidc.ClientContext(ctx, v.client), sigErrSlot{}, &sigErr)
	templated := v.cfg.tenant.templated()
	verifier := gooidc.NewVerifier(v.cfg.wantIssuer(), p.keys, &gooidc.Config{
		SkipClientIDCheck:    true,      // checked below, against every accepted audience
		SkipIssuerCheck:      templated, // checked below, against the token's own tid
		SupportedSigningAlgs: p.algs,
		Now:                  v.now,
	})
	tok, err := verifier.Verify(vctx, raw)
	if err != nil {
		var expired *gooidc.TokenExpiredError
		switch {
		case sigErr != nil:
			return nil, nil, sigErr
		case errors.As(err, &expired):
			return nil, nil, fmt.Errorf("the ID token expired at %s: %w", expired.Expiry.UTC().Format(time.RFC3339), sdk.ErrInvalidCredentials)
		case ctx.Err() != nil:
			return nil, nil, fmt.Errorf("verifying the ID token: %w (%w)", sdk.ErrUnavailable, ctx.Err())
		}
		msg := strings.TrimPrefix(err.Error(), "oidc: ")
		return nil, nil, fmt.Errorf("the ID token is not valid: %s: %w", sdk.Truncate(msg, 200), sdk.ErrInvalidCredentials)
	}
	if !slices.ContainsFunc(tok.Audience, func(a string) bool { return slices.Contains(accepted, a) }) {
		return nil, nil, fmt.Errorf("the ID token is for audience %s, not for this provider's client_id or audiences: %w", quoteList(tok.Audience), sdk.ErrInvalidCredentials)
	}
	var rawClaims json.RawMessage
	if err := tok.Claims(&rawClaims); err != nil {
		return nil, nil, fmt.Errorf("the ID token's claims: %w", sdk.ErrInvalidCredentials)
	}
	claims := map[string]any{}
	dec := json.NewDecoder(bytes.NewReader(rawClaims))
	dec.UseNumber()
	if err := dec.Decode(&claims); err != nil {
		return nil, nil, fmt.Errorf("the ID token's claims are not a JSON object: %w", sdk.ErrInvalidCredentials)
	}
	if templated {
		if err := v.cfg.tenant.check(tok.Issuer, claims); err != nil {
			return nil, nil, err
		}
	}
	if len(tok.Audience) > 1 {
		// OpenID Connect Core 3.1.3.7: with several audiences, the
		// authorized party must be present (and be this client).
		azp, _ := claims["azp"].(string)
		if azp == "" {
			return nil, nil, fmt.Errorf("the ID token has several audiences but no azp claim: %w", sdk.ErrInvalidCredentials)
		}
		if !slices.Contains(accepted, azp) {
			return nil, nil, fmt.Errorf("the ID token was issued to %q (azp), not to this provider's client_id or audiences: %w", sdk.Truncate(azp, 100), sdk.ErrInvalidCredentials)
		}
	}
	return tok, claims, nil
}

// flowState is what Begin keeps for Complete (BeginResult.State). The
// host keeps it server-side, keyed by the state parameter, and hands it
// back once, so it is neither sealed nor signed.
type flowState struct {
	V           int    `json:"v"`
	State       string `json:"state"`
	Nonce       string `json:"nonce"`
	Verifier    string `json:"verifier"`
	RedirectURI string `json:"redirect_uri"`
}

// oauthConfig is the client of the code flow.
func (v *Verifier) oauthConfig(p *idp, redirectURI string, scopes []string) *oauth2.Config {
	return &oauth2.Config{
		ClientID:     v.cfg.ClientID,
		ClientSecret: v.clientSecret(),
		Endpoint:     v.endpoint(p),
		RedirectURL:  redirectURI,
		Scopes:       scopes,
	}
}

func (v *Verifier) endpoint(p *idp) oauth2.Endpoint {
	e := p.endpoint
	if v.secret == "" { // a public client, or Apple (client_secret_post only)
		e.AuthStyle = oauth2.AuthStyleInParams // a public client sends client_id in the form
	}
	return e
}

// Begin starts the redirect flow: the IdP's authorize URL with state,
// nonce and a PKCE S256 code_challenge, and the flow state to keep.
func (v *Verifier) Begin(ctx context.Context, req sdk.BeginRequest) (sdk.BeginResult, error) {
	if req.CallbackURL == "" {
		return sdk.BeginResult{}, fmt.Errorf("begin: the callback URL is missing: %w", sdk.ErrInvalidRequest)
	}
	if u, err := url.Parse(req.CallbackURL); err != nil || !u.IsAbs() || u.Host == "" {
		return sdk.BeginResult{}, fmt.Errorf("begin: the callback URL is not an absolute URL: %w", sdk.ErrInvalidRequest)
	}
	scopes := slices.Clone(v.cfg.Scopes)
	for _, s := range req.Scopes {
		if s == "" || strings.ContainsAny(s, " \t\r\n") {
			return sdk.BeginResult{}, fmt.Errorf("begin: scope %q is not valid: %w", sdk.Truncate(s, 50), sdk.ErrInvalidRequest)
		}
		if !slices.Contains(scopes, s) {
			scopes = append(scopes, s)
		}
	}
	p, err := v.ready(ctx)
	if err != nil {
		return sdk.BeginResult{}, err
	}
	st := flowState{V: stateVersion, State: randomString(), Nonce: randomString(), Verifier: oauth2.GenerateVerifier(), RedirectURI: req.CallbackURL}
	opts := []oauth2.AuthCodeOption{oauth2.SetAuthURLParam("nonce", st.Nonce), oauth2.S256ChallengeOption(st.Verifier)}
	for _, k := range slices.Sorted(maps.Keys(v.cfg.AuthorizeParams)) {
		opts = append(opts, oauth2.SetAuthURLParam(k, v.cfg.AuthorizeParams[k]))
	}
	authURL := v.oauthConfig(p, st.RedirectURI, scopes).AuthCodeURL(st.State, opts...)
	kept, err := json.Marshal(st)
	if err != nil {
		return sdk.BeginResult{}, fmt.Errorf("begin: %w", err)
	}
	return sdk.BeginResult{AuthURL: authURL, State: kept}, nil
}

// Complete finishes the redirect flow: it checks the callback's state
// against the kept one, exchanges the code with the PKCE verifier,
// verifies the ID token (and its nonce), reads userinfo when configured,
// and returns the identity.
func (v *Verifier) Complete(ctx context.Context, req sdk.CompleteRequest) (sdk.Identity, error) {
	var st flowState
	if len(req.State) == 0 || json.Unmarshal(req.State, &st) != nil || st.V != stateVersion || st.State == "" || st.Verifier == "" || st.RedirectURI == "" {
		return sdk.Identity{}, fmt.Errorf("complete: the flow state is missing or not this plugin's: %w", sdk.ErrInvalidRequest)
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
	if iss := q.Get("iss"); iss != "" && !v.cfg.callbackIssuer(iss) {
		// RFC 9207: the IdP names itself in the callback; another issuer
		// is a mix-up attack.
		return sdk.Identity{}, fmt.Errorf("complete: the callback comes from issuer %q, not %q: %w", sdk.Truncate(iss, 100), v.cfg.Issuer, sdk.ErrInvalidCredentials)
	}
	p, err := v.ready(ctx)
	if err != nil {
		return sdk.Identity{}, err
	}
	xctx := context.WithValue(ctx, oauth2.HTTPClient, v.client)
	token, err := v.oauthConfig(p, st.RedirectURI, nil).Exchange(xctx, code, oauth2.VerifierOption(st.Verifier))
	if err != nil {
		return sdk.Identity{}, v.exchangeError(ctx, err)
	}
	rawID, _ := token.Extra("id_token").(string)
	if rawID == "" {
		return sdk.Identity{}, fmt.Errorf("the identity provider's token answer has no id_token (is openid among the scopes?): %w", sdk.ErrInvalidCredentials)
	}
	tok, claims, err := v.verifyIDToken(ctx, p, rawID, []string{v.cfg.ClientID})
	if err != nil {
		return sdk.Identity{}, err
	}
	if subtle.ConstantTimeCompare([]byte(tok.Nonce), []byte(st.Nonce)) != 1 {
		return sdk.Identity{}, fmt.Errorf("the ID token's nonce does not match this flow's: %w", sdk.ErrInvalidCredentials)
	}
	if tok.AccessTokenHash != "" {
		if err := tok.VerifyAccessToken(token.AccessToken); err != nil {
			return sdk.Identity{}, fmt.Errorf("the ID token's at_hash does not match the access token: %w", sdk.ErrInvalidCredentials)
		}
	}
	if err := v.spend(ctx, tok, claims); err != nil {
		return sdk.Identity{}, err
	}
	if v.cfg.Userinfo {
		if err := v.mergeUserinfo(ctx, p, token, tok.Subject, claims); err != nil {
			return sdk.Identity{}, err
		}
	}
	if v.cfg.Preset == PresetApple {
		appleName(q, claims)
	}
	id, err := v.identity(claims)
	if err != nil {
		return id, err
	}
	return withTokens(id, token), nil
}

// withTokens adds the IdP's tokens of the code exchange to id, for the
// session the sign-in opens (Appwrite's providerAccessToken and the rest).
func withTokens(id sdk.Identity, t *oauth2.Token) sdk.Identity {
	id.AccessToken, id.AccessTokenExpiry, id.RefreshToken = t.AccessToken, t.Expiry, t.RefreshToken
	return id
}

// exchangeError classifies a failed code exchange by the token
// endpoint's OAuth2 error (RFC 6749 5.2). The IdP refusing handoff's own
// client (invalid_client, unauthorized_client, unsupported_grant_type, or
// a 401 with no code) is the operator's to fix: an ERROR log naming the
// client_id (never the secret) and ErrMisconfigured, which the host
// answers as unavailable and shows to the operator. The IdP refusing the
// code (invalid_grant: expired, used, for another client) or the request
// is the user's: invalid credentials. A 5xx, a 429 or no answer is
// unavailable.
func (v *Verifier) exchangeError(ctx context.Context, err error) error {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		status := 0
		if re.Response != nil {
			status = re.Response.StatusCode
		}
		code := sdk.Printable(re.ErrorCode)
		switch {
		case status/100 == 3:
			v.log.Warn("the identity provider's token endpoint answered a redirect", "status", status)
			return fmt.Errorf("the identity provider's token endpoint answered %d, a redirect (not followed): %w", status, sdk.ErrUnavailable)
		case status >= 500 || status == http.StatusTooManyRequests:
			v.log.Warn("the identity provider's token endpoint failed", "status", status, "error", code)
			return fmt.Errorf("the identity provider's token endpoint answered %d: %w", status, sdk.ErrUnavailable)
		case clientRefused(code, status):
			code = cmp.Or(code, "no error code")
			v.log.Error("the identity provider refused the client credentials: check client_id and client_secret", "status", status, "error", code)
			return fmt.Errorf("the identity provider refused the client credentials (%s) for client_id %q: %w: check client_id and client_secret", code, v.cfg.ClientID, sdk.ErrMisconfigured)
		}
		code = cmp.Or(code, "no error code")
		v.log.Warn("the identity provider refused the code exchange", "status", status, "error", code)
		return fmt.Errorf("the identity provider refused the code: %s: %w", code, sdk.ErrInvalidCredentials)
	}
	if ctx.Err() != nil {
		return fmt.Errorf("exchanging the code: %w (%w)", sdk.ErrUnavailable, ctx.Err())
	}
	return fmt.Errorf("exchanging the code: %w: %s", sdk.ErrUnavailable, sdk.NetReason(err))
}

// clientRefused reports whether a token endpoint error refuses handoff's
// client rather than the user's code: the client's authentication failed
// (invalid_client, RFC 6749's 401, also without a code), or the client is
// not allowed the authorization_code grant (unauthorized_client; some IdPs
// say unsupported_grant_type).
func clientRefused(code string, status int) bool {
	switch code {
	case "invalid_client", "unauthorized_client", "unsupported_grant_type":
		return true
	case "":
		return status == http.StatusUnauthorized
	}
	return false
}

// mergeUserinfo reads the userinfo endpoint and puts its claims over the
// ID token's. The userinfo sub must be the ID token's (OpenID Connect Core
// 5.3.4).
func (v *Verifier) mergeUserinfo(ctx context.Context, p *idp, token *oauth2.Token, sub string, claims map[string]any) error {
	ui, err := p.provider.UserInfo(gooidc.ClientContext(ctx, v.client), oauth2.StaticTokenSource(token))
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("reading userinfo: %w (%w)", sdk.ErrUnavailable, ctx.Err())
		}
		v.log.Warn("the identity provider's userinfo endpoint failed", "err", sdk.Truncate(sdk.NetReason(err), 200))
		return fmt.Errorf("reading userinfo: %w", sdk.ErrUnavailable)
	}
	if ui.Subject != sub {
		return fmt.Errorf("userinfo is about another subject than the ID token: %w", sdk.ErrInvalidCredentials)
	}
	var raw json.RawMessage
	if err := ui.Claims(&raw); err != nil {
		return fmt.Errorf("reading userinfo: %w", sdk.ErrUnavailable)
	}
	extra := map[string]any{}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&extra); err != nil {
		return fmt.Errorf("userinfo is not a JSON object: %w", sdk.ErrUnavailable)
	}
	for k, val := range extra {
		switch k {
		case "iss", "aud", "sub", "exp", "iat", "nbf", "nonce", "azp", "auth_time", "at_hash", "c_hash", "acr", "amr", "sid", "jti":
			continue // the ID token's say
		}
		claims[k] = val
	}
	return nil
}

// identity maps claims to the identity, per the claims config.
func (v *Verifier) identity(claims map[string]any) (sdk.Identity, error) {
	m := v.cfg.Claims
	if err := v.cfg.checkRequire(claims); err != nil {
		return sdk.Identity{}, err
	}
	sub := sdk.ClaimString(claims[m.Subject])
	switch {
	case sub == "":
		return sdk.Identity{}, fmt.Errorf("the ID token has no %q claim (claims.subject): %w", m.Subject, sdk.ErrInvalidCredentials)
	case len(sub) > maxSubject:
		return sdk.Identity{}, fmt.Errorf("the ID token's %q claim is over %d bytes: %w", m.Subject, maxSubject, sdk.ErrInvalidCredentials)
	}
	id := sdk.Identity{
		Subject: sub,
		Email:   sdk.ClaimString(claims[m.Email]),
		Name:    sdk.ClaimString(claims[m.Name]),
		Phone:   sdk.ClaimString(claims[m.Phone]),
	}
	id.EmailVerified = id.Email != "" && sdk.ClaimBool(claims[m.EmailVerified])
	if id.Name == "" && m.Name == DefaultClaims.Name {
		id.Name = strings.TrimSpace(sdk.ClaimString(claims["given_name"]) + " " + sdk.ClaimString(claims["family_name"]))
	}
	out := make(map[string]any, len(claims))
	for k, val := range claims {
		switch k {
		case "nonce", "at_hash", "c_hash":
			continue // flow details, not facts about the person
		}
		out[k] = val
	}
	id.Claims = out
	return id, nil
}

// randomString is 32 random bytes, base64url: a state or a nonce.
func randomString() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func quoteList(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = fmt.Sprintf("%q", sdk.Truncate(s, 100))
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// Refresh trades a refresh token at the token endpoint (RFC 6749 6), for
// Appwrite's updateSession. A refusal is classified as a failed code
// exchange is.
func (v *Verifier) Refresh(ctx context.Context, req sdk.RefreshRequest) (sdk.RefreshResult, error) {
	if req.RefreshToken == "" {
		return sdk.RefreshResult{}, fmt.Errorf("refresh: no refresh token: %w", sdk.ErrInvalidRequest)
	}
	p, err := v.ready(ctx)
	if err != nil {
		return sdk.RefreshResult{}, err
	}
	xctx := context.WithValue(ctx, oauth2.HTTPClient, v.client)
	t, err := v.oauthConfig(p, "", nil).TokenSource(xctx, &oauth2.Token{RefreshToken: req.RefreshToken}).Token()
	if err != nil {
		return sdk.RefreshResult{}, v.exchangeError(ctx, err)
	}
	return sdk.RefreshResult{AccessToken: t.AccessToken, AccessTokenExpiry: t.Expiry, RefreshToken: t.RefreshToken}, nil
}
