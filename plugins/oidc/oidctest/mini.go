package oidctest

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// MiniOptions configures NewMini.
type MiniOptions struct {
	// Path is the issuer's path on the server: "/realms/staff" (Keycloak),
	// "/oauth2/default" (an Okta custom authorization server),
	// "/common/v2.0" (Entra ID), or "" (GitLab, Google, Okta's org
	// authorization server).
	Path string
	// DiscoveryIssuer is the issuer the discovery document names, with
	// {base} standing for the server's URL; default the issuer itself.
	// Entra ID's common and organizations endpoints name the template
	// "{base}/{tenantid}/v2.0".
	DiscoveryIssuer string
	// ClientID and ClientSecret are the one client the provider knows.
	ClientID, ClientSecret string
	// CallbackIss adds RFC 9207's iss to the redirect back, as Keycloak
	// does.
	CallbackIss bool
	// Apple, when set, makes the provider speak Sign in with Apple: the
	// authorize request must ask for response_mode=form_post, and the
	// client secret must be the ES256 JWT Apple's token endpoint checks.
	Apple *AppleOptions
}

// AppleOptions are Sign in with Apple's client: the team, the key id and
// the public half of the .p8 key that signs the client secret.
type AppleOptions struct {
	TeamID, KeyID string
	Key           *ecdsa.PublicKey
	// User is the JSON of the user form field Apple posts on the first
	// sign-in only ({"name": {"firstName", "lastName"}, "email"}).
	User string
}

// Mini is a small OpenID Provider on loopback for the presets' tests: it
// serves discovery, JWKS, an authorize endpoint that signs in at once (no
// login form: the test chooses the ID token's claims with SetClaims) and
// a token endpoint that checks the client's secret, the code, the
// redirect URI and the PKCE verifier, as the IdPs the presets name do.
type Mini struct {
	// Base is the server's URL, http://127.0.0.1:port.
	Base string
	// Issuer is Base + Path.
	Issuer string
	key    *Key
	opts   MiniOptions
	srv    *httptest.Server

	mu       sync.Mutex
	claims   map[string]any
	codes    map[string]miniCode
	refresh  map[string]bool // the refresh tokens it issued
	signedIn bool            // Apple's user field went out already
	secrets  []string
}

type miniCode struct {
	redirectURI, challenge, nonce string
	claims                        map[string]any
}

// NewMini starts a Mini provider; it stops when the test ends.
func NewMini(t testing.TB, opts MiniOptions) *Mini {
	t.Helper()
	m := &Mini{key: NewKey(t), opts: opts, codes: map[string]miniCode{}, refresh: map[string]bool{}}
	m.srv = httptest.NewServer(http.HandlerFunc(m.serve))
	t.Cleanup(m.srv.Close)
	m.Base = m.srv.URL
	m.Issuer = m.Base + opts.Path
	return m
}

// SetClaims sets the claims of the ID tokens the next sign-ins get. The
// provider adds iss (its issuer), aud (the client), iat, exp and the
// authorize request's nonce where claims lack them.
func (m *Mini) SetClaims(claims map[string]any) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.claims = claims
}

// Sign signs claims with the provider's key, as they are: a token its
// JWKS verifies.
func (m *Mini) Sign(t testing.TB, claims map[string]any) string {
	t.Helper()
	return m.key.Sign(t, claims)
}

func (m *Mini) serve(w http.ResponseWriter, r *http.Request) {
	path, ok := strings.CutPrefix(r.URL.Path, strings.TrimSuffix(m.opts.Path, "/"))
	if !ok {
		http.NotFound(w, r)
		return
	}
	switch {
	case path == DiscoveryPath && r.Method == http.MethodGet:
		iss := strings.ReplaceAll(m.opts.DiscoveryIssuer, "{base}", m.Base)
		if iss == "" {
			iss = m.Issuer
		}
		at := strings.TrimSuffix(m.Issuer, "/")
		writeJSON(w, http.StatusOK, map[string]any{
			"issuer":                                iss,
			"authorization_endpoint":                at + AuthorizePath,
			"token_endpoint":                        at + TokenPath,
			"jwks_uri":                              at + KeysPath,
			"id_token_signing_alg_values_supported": []string{"RS256"},
			"code_challenge_methods_supported":      []string{"S256"},
			"token_endpoint_auth_methods_supported": []string{"client_secret_basic", "client_secret_post"},
		})
	case path == KeysPath:
		writeJSON(w, http.StatusOK, jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &m.key.Private.PublicKey, KeyID: m.key.ID, Algorithm: "RS256", Use: "sig"}}})
	case path == AuthorizePath:
		m.authorize(w, r)
	case path == TokenPath && r.Method == http.MethodPost:
		m.token(w, r)
	default:
		http.NotFound(w, r)
	}
}

// authorize signs the person in at once and sends them back with a code.
func (m *Mini) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	redirect, err := url.Parse(q.Get("redirect_uri"))
	switch {
	case q.Get("client_id") != m.opts.ClientID:
		http.Error(w, "unknown client_id", http.StatusBadRequest)
		return
	case err != nil || !redirect.IsAbs():
		http.Error(w, "bad redirect_uri", http.StatusBadRequest)
		return
	case q.Get("response_type") != "code" || q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "":
		http.Error(w, "want response_type=code with PKCE S256", http.StatusBadRequest)
		return
	}
	if m.opts.Apple != nil && q.Get("response_mode") != "form_post" {
		// Apple: "response_mode must be form_post when name or email
		// scope is requested".
		http.Error(w, "invalid_request: response_mode must be form_post", http.StatusBadRequest)
		return
	}
	code := rand.Text()
	m.mu.Lock()
	m.codes[code] = miniCode{redirectURI: redirect.String(), challenge: q.Get("code_challenge"), nonce: q.Get("nonce"), claims: m.claims}
	first := !m.signedIn
	m.signedIn = true
	m.mu.Unlock()
	if m.opts.Apple != nil {
		fields := url.Values{"code": {code}, "state": {q.Get("state")}}
		if first && m.opts.Apple.User != "" {
			fields.Set("user", m.opts.Apple.User)
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_ = formPost.Execute(w, struct {
			Action string
			Fields url.Values
		}{redirect.String(), fields})
		return
	}
	back := redirect.Query()
	back.Set("code", code)
	back.Set("state", q.Get("state"))
	if m.opts.CallbackIss {
		back.Set("iss", m.Issuer)
	}
	redirect.RawQuery = back.Encode()
	http.Redirect(w, r, redirect.String(), http.StatusFound)
}

// token exchanges a code, once, for an access token, a refresh token and
// an ID token, and a refresh token for a new access token.
func (m *Mini) token(w http.ResponseWriter, r *http.Request) {
	id, secret, basic := r.BasicAuth()
	if basic {
		id, _ = url.QueryUnescape(id)
		secret, _ = url.QueryUnescape(secret)
	} else {
		id, secret = r.PostFormValue("client_id"), r.PostFormValue("client_secret")
	}
	if id != m.opts.ClientID || !m.clientSecretOK(secret, basic) {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_client"})
		return
	}
	if r.PostFormValue("grant_type") == "refresh_token" {
		m.mu.Lock()
		ok := m.refresh[r.PostFormValue("refresh_token")]
		m.mu.Unlock()
		if !ok {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_grant"})
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"access_token": "refreshed-" + rand.Text(), "token_type": "Bearer", "expires_in": 600})
		return
	}
	m.mu.Lock()
	c, ok := m.codes[r.PostFormValue("code")]
	delete(m.codes, r.PostFormValue("code"))
	m.mu.Unlock()
	sum := sha256.Sum256([]byte(r.PostFormValue("code_verifier")))
	if !ok || r.PostFormValue("grant_type") != "authorization_code" || r.PostFormValue("redirect_uri") != c.redirectURI ||
		base64.RawURLEncoding.EncodeToString(sum[:]) != c.challenge {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_grant"})
		return
	}
	claims := map[string]any{"iss": m.Issuer, "aud": m.opts.ClientID, "iat": time.Now().Unix(), "exp": time.Now().Add(time.Hour).Unix(), "jti": rand.Text()}
	if c.nonce != "" {
		claims["nonce"] = c.nonce
	}
	for k, v := range c.claims {
		claims[k] = v
	}
	rt := "rt-" + rand.Text()
	m.mu.Lock()
	m.refresh[rt] = true
	m.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{
		"access_token": rand.Text(), "token_type": "Bearer", "expires_in": 3600,
		"id_token": m.key.signQuiet(claims), "refresh_token": rt,
	})
}

// clientSecretOK checks the client's secret: equal to ClientSecret, or
// for Apple (client_secret_post only) a valid client secret JWT.
func (m *Mini) clientSecretOK(secret string, basic bool) bool {
	if m.opts.Apple == nil {
		return secret == m.opts.ClientSecret
	}
	m.mu.Lock()
	m.secrets = append(m.secrets, secret)
	m.mu.Unlock()
	return !basic && m.checkAppleSecret(secret) == nil
}

// ClientSecrets returns the client secrets the token endpoint received
// (Apple mode), oldest first.
func (m *Mini) ClientSecrets() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.secrets...)
}

// checkAppleSecret verifies a client secret as Apple documents it: an
// ES256 JWT with the key's id in kid, signed by the key, iss the team id,
// sub the client id (the services id), aud https://appleid.apple.com,
// not expired and at most six months long.
func (m *Mini) checkAppleSecret(secret string) error {
	a := m.opts.Apple
	jws, err := jose.ParseSigned(secret, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil || len(jws.Signatures) != 1 {
		return fmt.Errorf("not an ES256 JWS")
	}
	if jws.Signatures[0].Header.KeyID != a.KeyID {
		return fmt.Errorf("kid %q", jws.Signatures[0].Header.KeyID)
	}
	payload, err := jws.Verify(a.Key)
	if err != nil {
		return err
	}
	var c struct {
		Iss, Sub string
		Aud      any
		Iat, Exp int64
	}
	if err := json.Unmarshal(payload, &c); err != nil {
		return err
	}
	now := time.Now().Unix()
	switch {
	case c.Iss != a.TeamID || c.Sub != m.opts.ClientID || c.Aud != "https://appleid.apple.com":
		return fmt.Errorf("iss, sub or aud")
	case c.Exp <= now || c.Iat > now+60 || c.Exp-c.Iat > 15777000:
		return fmt.Errorf("iat or exp")
	}
	return nil
}

var formPost = template.Must(template.New("form_post").Parse(`<!doctype html>
<html><body onload="document.forms[0].submit()">
<form method="post" action="{{.Action}}">
{{range $k, $v := .Fields}}<input type="hidden" name="{{$k}}" value="{{index $v 0}}">
{{end}}</form></body></html>`))

// FormPost reads the form of a form_post answer (Apple's authorize
// endpoint): where it posts and its fields, what the browser sends to the
// callback.
func FormPost(t testing.TB, resp *http.Response) (string, url.Values) {
	t.Helper()
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	action, fields, err := parseForm(string(body))
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("oidctest: want a form_post page, got %d: %v", resp.StatusCode, err)
	}
	return action, fields
}

// signQuiet signs outside a test's goroutine: a failure gives "", which
// the client then refuses.
func (k *Key) signQuiet(claims map[string]any) string {
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: k.Private, KeyID: k.ID}}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return ""
	}
	payload, _ := json.Marshal(claims)
	obj, err := signer.Sign(payload)
	if err != nil {
		return ""
	}
	s, _ := obj.CompactSerialize()
	return s
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
