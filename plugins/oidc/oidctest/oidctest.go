// Package oidctest runs a real OpenID Provider on loopback for tests: the
// zitadel/oidc provider (discovery, authorize with PKCE, token, userinfo,
// JWKS) over an in-memory store, with a login form a test submits as a
// browser would, signing keys it can rotate, and switches to take it down.
//
//	op := oidctest.New(t, oidctest.Options{Clients: []oidctest.Client{{ID: "web", Secret: "s3cret"}}})
//	op.SetRedirectURIs("web", callbackURL)
//	resp := oidctest.Login(t, op.Browser(), authURL, "alice", oidctest.DefaultUser.Password)
//
// It also signs tokens of the test's own making with the provider's
// current key (Sign), for the checks a real provider never fails.
//
// Mini is a smaller provider for the presets: it serves its issuer under
// the path the IdP does (a Keycloak realm, an Okta authorization server,
// an Entra ID tenant), names a tenant-templated issuer in discovery as
// Entra ID does, and speaks Sign in with Apple's form_post and ES256
// client secret JWT.
package oidctest

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/example/server/storage"
	"github.com/zitadel/oidc/v3/pkg/op"
	"golang.org/x/net/html"
	"golang.org/x/oauth2"
	"golang.org/x/text/language"
)

// The provider's endpoint paths (zitadel/oidc's defaults).
const (
	AuthorizePath = "/authorize"
	TokenPath     = "/oauth/token"
	UserinfoPath  = "/userinfo"
	KeysPath      = "/keys"
	DiscoveryPath = "/.well-known/openid-configuration"
	loginPath     = "/login/username"
)

// Client is a client registered at the provider.
type Client struct {
	// ID is the client_id.
	ID string
	// Secret is the client secret (client_secret_basic or _post); empty
	// makes a public native client (PKCE, no authentication).
	Secret string
	// RedirectURIs are the allowed redirect URIs; SetRedirectURIs changes
	// them later (for a callback whose port is known late).
	RedirectURIs []string
	// ClaimsInIDToken puts the email, profile and phone claims in the ID
	// token, as Auth0 does. Without it they come from userinfo only, as
	// OpenID Connect Core 5.4 has it when an access token is issued.
	ClaimsInIDToken bool
}

// User is a person who can log in.
type User struct {
	ID, Username, Password string
	Email                  string
	EmailVerified          bool
	GivenName, FamilyName  string
	Phone                  string
}

// DefaultUser is the user when Options.Users is empty.
var DefaultUser = User{
	ID: "user-alice-1", Username: "alice", Password: "correct horse battery staple",
	Email: "alice@example.com", EmailVerified: true, GivenName: "Alice", FamilyName: "Liddell",
}

// Options configures New.
type Options struct {
	Clients []Client
	// Users; empty means DefaultUser.
	Users []User
}

// Provider is a running OpenID Provider.
type Provider struct {
	// Issuer is the provider's issuer, http://127.0.0.1:port (no
	// trailing slash).
	Issuer string
	srv    *httptest.Server
	op     *op.Provider

	mu        sync.Mutex
	down      bool
	redirects map[string][]string
	clients   map[string]Client
	signing   *Key
	published []*Key
	ecKeys    []*ECKey
	requests  map[string]int
	issued    []string // ID tokens the token endpoint answered with
}

// New starts a provider on loopback; it stops when the test ends.
func New(t testing.TB, opts Options) *Provider {
	t.Helper()
	users := opts.Users
	if len(users) == 0 {
		users = []User{DefaultUser}
	}
	p := &Provider{
		redirects: map[string][]string{},
		clients:   map[string]Client{},
		requests:  map[string]int{},
	}
	p.signing = NewKey(t)
	p.published = []*Key{p.signing}
	stored := map[string]*storage.Client{}
	for _, c := range opts.Clients {
		p.clients[c.ID] = c
		p.redirects[c.ID] = slices.Clone(c.RedirectURIs)
		if c.Secret == "" {
			stored[c.ID] = storage.NativeClient(c.ID, "urn:placeholder")
		} else {
			stored[c.ID] = storage.WebClient(c.ID, c.Secret, "urn:placeholder")
		}
	}
	st := &store{Storage: storage.NewStorageWithClients(userStore(users), stored), p: p}

	p.srv = httptest.NewUnstartedServer(nil)
	p.Issuer = "http://" + p.srv.Listener.Addr().String()
	key := sha256.Sum256([]byte("oidctest"))
	provider, err := op.NewProvider(&op.Config{
		CryptoKey:                key,
		CryptoKeyId:              "oidctest",
		DefaultLogoutRedirectURI: "/",
		CodeMethodS256:           true,
		AuthMethodPost:           true,
		SupportedUILocales:       []language.Tag{language.English},
	}, st, op.StaticIssuer(p.Issuer), op.WithAllowInsecure())
	if err != nil {
		t.Fatalf("oidctest: %v", err)
	}
	p.op = provider
	callback := op.AuthCallbackURL(provider)
	interceptor := op.NewIssuerInterceptor(provider.IssuerFromRequest)

	mux := http.NewServeMux()
	mux.HandleFunc("GET "+loginPath, func(w http.ResponseWriter, r *http.Request) {
		renderLogin(w, http.StatusOK, r.URL.Query().Get("authRequestID"), "")
	})
	mux.Handle("POST "+loginPath, interceptor.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.PostFormValue("id")
		if err := st.CheckUsernamePassword(r.PostFormValue("username"), r.PostFormValue("password"), id); err != nil {
			renderLogin(w, http.StatusUnauthorized, id, "wrong username or password")
			return
		}
		http.Redirect(w, r, callback(r.Context(), id), http.StatusFound)
	}))
	mux.Handle("/", provider)
	p.srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		down := p.down
		p.requests[r.URL.Path]++
		p.mu.Unlock()
		if down {
			http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
			return
		}
		if r.URL.Path != TokenPath {
			mux.ServeHTTP(w, r)
			return
		}
		rec := &teeWriter{ResponseWriter: w}
		mux.ServeHTTP(rec, r)
		var answer struct {
			IDToken string `json:"id_token"`
		}
		if json.Unmarshal(rec.body.Bytes(), &answer) == nil && answer.IDToken != "" {
			p.mu.Lock()
			p.issued = append(p.issued, answer.IDToken)
			p.mu.Unlock()
		}
	})
	p.srv.Start()
	t.Cleanup(p.srv.Close)
	return p
}

var loginPage = template.Must(template.New("login").Parse(`<!doctype html>
<html><head><title>Sign in</title></head><body>
{{if .Error}}<p class="error">{{.Error}}</p>{{end}}
<form method="post" action="/login/username">
<input type="hidden" name="id" value="{{.ID}}">
<label>Username <input name="username" autocomplete="username"></label>
<label>Password <input name="password" type="password" autocomplete="current-password"></label>
<button type="submit">Sign in</button>
</form></body></html>`))

func renderLogin(w http.ResponseWriter, status int, id, msg string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_ = loginPage.Execute(w, struct{ ID, Error string }{id, msg})
}

// teeWriter keeps a copy of the body it writes.
type teeWriter struct {
	http.ResponseWriter
	body bytes.Buffer
}

func (w *teeWriter) Write(b []byte) (int, error) {
	w.body.Write(b)
	return w.ResponseWriter.Write(b)
}

// IssuedIDTokens returns the ID tokens the token endpoint has answered
// with, oldest first: what a client of the provider (handoff's redirect
// flow among them) received.
func (p *Provider) IssuedIDTokens() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.issued)
}

// URL returns the provider's URL for path.
func (p *Provider) URL(path string) string { return p.Issuer + path }

// SetRedirectURIs replaces a client's redirect URIs.
func (p *Provider) SetRedirectURIs(clientID string, uris ...string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.redirects[clientID] = slices.Clone(uris)
}

// SetDown makes every endpoint answer 503 (true) or serve again (false).
func (p *Provider) SetDown(down bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = down
}

// Close stops the server: connections are refused from now on.
func (p *Provider) Close() { p.srv.Close() }

// Requests counts the requests served for path, e.g. KeysPath.
func (p *Provider) Requests(path string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.requests[path]
}

// Key is the current signing key.
func (p *Provider) Key() *Key {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.signing
}

// Rotate makes a new signing key and publishes it; keepOld keeps the
// previous keys in the JWKS (a graceful rotation), otherwise they are
// withdrawn.
func (p *Provider) Rotate(t testing.TB, keepOld bool) *Key {
	t.Helper()
	k := NewKey(t)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.signing = k
	if keepOld {
		p.published = append(p.published, k)
	} else {
		p.published = []*Key{k}
	}
	return k
}

// Claims returns the claims of a valid ID token for user u and audience
// aud, an hour long; change them to make a bad one.
func (p *Provider) Claims(aud string, u User) map[string]any {
	now := time.Now()
	return map[string]any{
		"iss":            p.Issuer,
		"sub":            u.ID,
		"aud":            aud,
		"iat":            now.Unix(),
		"exp":            now.Add(time.Hour).Unix(),
		"jti":            rand.Text(), // two tokens made in one second differ
		"email":          u.Email,
		"email_verified": u.EmailVerified,
		"name":           strings.TrimSpace(u.GivenName + " " + u.FamilyName),
	}
}

// Sign signs claims with the provider's current key: a token the
// provider's JWKS verifies.
func (p *Provider) Sign(t testing.TB, claims map[string]any) string {
	t.Helper()
	return p.Key().Sign(t, claims)
}

// Key is an RS256 signing key.
type Key struct {
	ID      string
	Private *rsa.PrivateKey
}

// NewKey makes an RS256 key with a random id.
func NewKey(t testing.TB) *Key {
	t.Helper()
	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatalf("oidctest: %v", err)
	}
	id := make([]byte, 8)
	_, _ = rand.Read(id)
	return &Key{ID: fmt.Sprintf("%x", id), Private: priv}
}

// Sign signs claims as a JWT with k, its id in the kid header.
func (k *Key) Sign(t testing.TB, claims map[string]any) string {
	t.Helper()
	return sign(t, jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: k.Private, KeyID: k.ID}}, claims)
}

// Browser is an HTTP client with a cookie jar, as a browser is, that
// follows redirects within the provider and stops at the first redirect
// that leaves it (the client's redirect_uri), returning that response.
func (p *Provider) Browser() *http.Client {
	host := strings.TrimPrefix(p.Issuer, "http://")
	return NewBrowser(func(u *url.URL) bool { return u.Host != host })
}

// NewBrowser is a client with a cookie jar that follows redirects until
// stop reports true for the next URL; it then returns the redirect
// response unfollowed.
func NewBrowser(stop func(*url.URL) bool) *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{
		Jar:     jar,
		Timeout: 10 * time.Second,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= 10 {
				return fmt.Errorf("oidctest: more than 10 redirects")
			}
			if stop(req.URL) {
				return http.ErrUseLastResponse
			}
			return nil
		},
	}
}

// Login opens start (an authorize URL, or a URL that redirects to one)
// with the browser c, expects the provider's login form, fills in
// username and password and submits it. It returns the answer to the
// submission after the redirects c follows: with Browser, the redirect to
// the client's redirect_uri carrying code and state.
func Login(t testing.TB, c *http.Client, start, username, password string) *http.Response {
	t.Helper()
	resp, err := c.Get(start)
	if err != nil {
		t.Fatalf("oidctest: GET %s: %v", start, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("oidctest: GET %s ended at %s with %d, not the login form: %s", start, resp.Request.URL, resp.StatusCode, body)
	}
	action, fields, err := parseForm(string(body))
	if err != nil {
		t.Fatalf("oidctest: the page at %s: %v", resp.Request.URL, err)
	}
	target, err := resp.Request.URL.Parse(action)
	if err != nil {
		t.Fatalf("oidctest: form action %q: %v", action, err)
	}
	fields.Set("username", username)
	fields.Set("password", password)
	resp, err = c.PostForm(target.String(), fields)
	if err != nil {
		t.Fatalf("oidctest: submitting the login form: %v", err)
	}
	return resp
}

// parseForm finds the first form of an HTML page: its action and the
// values of its inputs.
func parseForm(page string) (string, url.Values, error) {
	z := html.NewTokenizer(strings.NewReader(page))
	action, inForm, found := "", false, false
	fields := url.Values{}
	for {
		switch z.Next() {
		case html.ErrorToken:
			if !found {
				return "", nil, fmt.Errorf("no form")
			}
			return action, fields, nil
		case html.StartTagToken, html.SelfClosingTagToken:
			tok := z.Token()
			switch {
			case tok.Data == "form" && !found:
				inForm, found = true, true
				action = attr(tok, "action")
			case tok.Data == "input" && inForm:
				if name := attr(tok, "name"); name != "" {
					fields.Set(name, attr(tok, "value"))
				}
			}
		case html.EndTagToken:
			if z.Token().Data == "form" {
				inForm = false
			}
		}
	}
}

func attr(tok html.Token, name string) string {
	for _, a := range tok.Attr {
		if a.Key == name {
			return a.Val
		}
	}
	return ""
}

// AppSignIn signs user u in as a native app would with its own public
// client: the authorize request with PKCE and nonce, the login form, the
// code exchange. It returns the ID token the provider issued.
func (p *Provider) AppSignIn(t testing.TB, clientID, redirectURI, nonce string, u User) string {
	t.Helper()
	conf := &oauth2.Config{
		ClientID:    clientID,
		Endpoint:    oauth2.Endpoint{AuthURL: p.URL(AuthorizePath), TokenURL: p.URL(TokenPath), AuthStyle: oauth2.AuthStyleInParams},
		RedirectURL: redirectURI,
		Scopes:      []string{"openid", "email", "profile"},
	}
	verifier := oauth2.GenerateVerifier()
	opts := []oauth2.AuthCodeOption{oauth2.S256ChallengeOption(verifier)}
	if nonce != "" {
		opts = append(opts, oauth2.SetAuthURLParam("nonce", nonce))
	}
	resp := Login(t, p.Browser(), conf.AuthCodeURL("app-state", opts...), u.Username, u.Password)
	resp.Body.Close()
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || resp.StatusCode/100 != 3 {
		t.Fatalf("oidctest: the login ended with %d %q, not a redirect to the app", resp.StatusCode, resp.Header.Get("Location"))
	}
	if loc.Query().Get("state") != "app-state" || loc.Query().Get("code") == "" {
		t.Fatalf("oidctest: the redirect to the app %s lacks code or state", loc.Redacted())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tok, err := conf.Exchange(ctx, loc.Query().Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("oidctest: code exchange: %v", err)
	}
	id, _ := tok.Extra("id_token").(string)
	if id == "" {
		t.Fatal("oidctest: no id_token")
	}
	return id
}

// store is the example in-memory storage of zitadel/oidc with this
// package's clients (their redirect URIs can change) and signing keys
// (they can rotate).
type store struct {
	*storage.Storage
	p *Provider
}

func (s *store) GetClientByClientID(ctx context.Context, id string) (op.Client, error) {
	c, err := s.Storage.GetClientByClientID(ctx, id)
	if err != nil {
		return nil, err
	}
	s.p.mu.Lock()
	defer s.p.mu.Unlock()
	return &client{Client: c, redirects: slices.Clone(s.p.redirects[id]), claims: s.p.clients[id].ClaimsInIDToken}, nil
}

func (s *store) SigningKey(context.Context) (op.SigningKey, error) {
	s.p.mu.Lock()
	defer s.p.mu.Unlock()
	return signingKey{s.p.signing}, nil
}

func (s *store) SignatureAlgorithms(context.Context) ([]jose.SignatureAlgorithm, error) {
	s.p.mu.Lock()
	defer s.p.mu.Unlock()
	if len(s.p.ecKeys) > 0 {
		return []jose.SignatureAlgorithm{jose.RS256, jose.ES256}, nil
	}
	return []jose.SignatureAlgorithm{jose.RS256}, nil
}

func (s *store) KeySet(context.Context) ([]op.Key, error) {
	s.p.mu.Lock()
	defer s.p.mu.Unlock()
	out := make([]op.Key, 0, len(s.p.published)+len(s.p.ecKeys))
	for _, k := range s.p.published {
		out = append(out, publicKey{k})
	}
	for _, k := range s.p.ecKeys {
		out = append(out, ecPublicKey{k})
	}
	return out, nil
}

type client struct {
	op.Client
	redirects []string
	claims    bool
}

func (c *client) RedirectURIs() []string               { return c.redirects }
func (c *client) IDTokenUserinfoClaimsAssertion() bool { return c.claims }

type signingKey struct{ k *Key }

func (s signingKey) SignatureAlgorithm() jose.SignatureAlgorithm { return jose.RS256 }
func (s signingKey) Key() any                                    { return s.k.Private }
func (s signingKey) ID() string                                  { return s.k.ID }

type publicKey struct{ k *Key }

func (p publicKey) ID() string                         { return p.k.ID }
func (p publicKey) Algorithm() jose.SignatureAlgorithm { return jose.RS256 }
func (p publicKey) Use() string                        { return "sig" }
func (p publicKey) Key() any                           { return &p.k.Private.PublicKey }

type ecPublicKey struct{ k *ECKey }

func (p ecPublicKey) ID() string                         { return p.k.ID }
func (p ecPublicKey) Algorithm() jose.SignatureAlgorithm { return jose.ES256 }
func (p ecPublicKey) Use() string                        { return "sig" }
func (p ecPublicKey) Key() any                           { return &p.k.Private.PublicKey }

// ECKey is an ES256 signing key. The provider signs its own tokens with
// RS256 only; an ECKey it publishes (AddES256Key) signs tokens of the
// test's making.
type ECKey struct {
	ID      string
	Private *ecdsa.PrivateKey
}

// AddES256Key makes an ES256 key, publishes it in the JWKS and lists ES256
// in discovery. Add it before the client discovers the provider.
func (p *Provider) AddES256Key(t testing.TB) *ECKey {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("oidctest: %v", err)
	}
	k := &ECKey{ID: "ec-" + rand.Text()[:8], Private: priv}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.ecKeys = append(p.ecKeys, k)
	return k
}

// Sign signs claims as a JWT with k, its id in the kid header.
func (k *ECKey) Sign(t testing.TB, claims map[string]any) string {
	t.Helper()
	return sign(t, jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: k.Private, KeyID: k.ID}}, claims)
}

func sign(t testing.TB, key jose.SigningKey, claims map[string]any) string {
	t.Helper()
	signer, err := jose.NewSigner(key, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatalf("oidctest: %v", err)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatalf("oidctest: %v", err)
	}
	obj, err := signer.Sign(payload)
	if err != nil {
		t.Fatalf("oidctest: %v", err)
	}
	s, err := obj.CompactSerialize()
	if err != nil {
		t.Fatalf("oidctest: %v", err)
	}
	return s
}

type userStore []User

func (u userStore) GetUserByID(id string) *storage.User {
	for _, x := range u {
		if x.ID == id {
			return toStorage(x)
		}
	}
	return nil
}

func (u userStore) GetUserByUsername(name string) *storage.User {
	for _, x := range u {
		if x.Username == name {
			return toStorage(x)
		}
	}
	return nil
}

func (u userStore) ExampleClientID() string { return storage.ServiceUserID }

func toStorage(x User) *storage.User {
	return &storage.User{
		ID: x.ID, Username: x.Username, Password: x.Password,
		FirstName: x.GivenName, LastName: x.FamilyName,
		Email: x.Email, EmailVerified: x.EmailVerified,
		Phone: x.Phone, PreferredLanguage: language.English,
	}
}
