package oauth2

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/handoffd/handoff/providers/providertest"
	"github.com/handoffd/handoff/providers/sdk"
)

const (
	clientID    = "Iv1.handoff-test"
	secret      = "s3cret-client"
	callbackURL = "https://auth.example.com/v1/account/sessions/oauth2/callback/github/proj"
)

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// grant is what the fake's authorize endpoint issued a code for.
type grant struct{ redirectURI, challenge, method, scope string }

// fakeIdP is a loopback OAuth2 IdP that speaks one of GitHub's, Discord's
// or a generic IdP's documented protocol, quirks included: GitHub answers
// the token request form-encoded unless asked for JSON, and a refused
// code with a 200 and an error field; it wants client_secret_post and a
// User-Agent on its API. Discord and the generic IdP want client_secret_basic
// and answer errors with a 400.
type fakeIdP struct {
	t     *testing.T
	srv   *httptest.Server
	style string // "github", "discord" or "generic"

	mu           sync.Mutex
	codes        map[string]grant
	token        string
	user         map[string]any
	emails       []map[string]any
	emailsStatus int // GitHub's /user/emails answer status; 0 is 200
	tokenStatus  int // forces the token endpoint's status
	tokenError   string
	userStatus   int
	paths        []string
}

func newFake(t *testing.T, style string) *fakeIdP {
	f := &fakeIdP{t: t, style: style, codes: map[string]grant{}, token: "tok-" + style}
	mux := http.NewServeMux()
	for _, p := range []string{"/login/oauth/authorize", "/oauth2/authorize", "/authorize"} {
		mux.HandleFunc("GET "+p, f.authorize)
	}
	for _, p := range []string{"/login/oauth/access_token", "/api/oauth2/token", "/token"} {
		mux.HandleFunc("POST "+p, f.tokenEndpoint)
	}
	for _, p := range []string{"/user", "/api/v3/user", "/api/users/@me", "/userinfo"} {
		mux.HandleFunc("GET "+p, f.userEndpoint)
	}
	for _, p := range []string{"/user/emails", "/api/v3/user/emails"} {
		mux.HandleFunc("GET "+p, f.emailsEndpoint)
	}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.paths = append(f.paths, r.URL.Path)
		f.mu.Unlock()
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeIdP) hit(path string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, p := range f.paths {
		if p == path {
			return true
		}
	}
	return false
}

// authorize approves at once: it keeps the grant and sends the browser
// back with a code and the state.
func (f *fakeIdP) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if q.Get("client_id") != clientID || q.Get("response_type") != "code" || q.Get("state") == "" {
		http.Error(w, "bad authorize request", http.StatusBadRequest)
		return
	}
	code := "code-" + base64.RawURLEncoding.EncodeToString([]byte(q.Get("state")))[:12]
	f.mu.Lock()
	f.codes[code] = grant{q.Get("redirect_uri"), q.Get("code_challenge"), q.Get("code_challenge_method"), q.Get("scope")}
	f.mu.Unlock()
	back, _ := url.Parse(q.Get("redirect_uri"))
	bq := back.Query()
	bq.Set("code", code)
	bq.Set("state", q.Get("state"))
	back.RawQuery = bq.Encode()
	http.Redirect(w, r, back.String(), http.StatusFound)
}

func (f *fakeIdP) tokenEndpoint(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.tokenStatus != 0 {
		w.WriteHeader(f.tokenStatus)
		return
	}
	id, sec, basic := r.BasicAuth()
	if f.style == "github" {
		id, sec = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	} else if !basic {
		f.refuse(w, r, "invalid_client")
		return
	}
	if id != clientID || sec != secret {
		f.refuse(w, r, map[bool]string{true: "incorrect_client_credentials", false: "invalid_client"}[f.style == "github"])
		return
	}
	if r.PostForm.Get("grant_type") == "refresh_token" {
		if r.PostForm.Get("refresh_token") != "r-"+f.style {
			f.refuse(w, r, "invalid_grant")
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"access_token": "refreshed-" + f.token, "token_type": "Bearer", "expires_in": 3600})
		return
	}
	g, ok := f.codes[r.PostForm.Get("code")]
	delete(f.codes, r.PostForm.Get("code"))
	switch {
	case f.tokenError != "":
		f.refuse(w, r, f.tokenError)
		return
	case !ok || r.PostForm.Get("grant_type") != "authorization_code" && f.style != "github":
		f.refuse(w, r, map[bool]string{true: "bad_verification_code", false: "invalid_grant"}[f.style == "github"])
		return
	case g.redirectURI != r.PostForm.Get("redirect_uri"):
		f.refuse(w, r, "redirect_uri_mismatch")
		return
	case g.challenge != "":
		sum := sha256.Sum256([]byte(r.PostForm.Get("code_verifier")))
		if g.method != "S256" || base64.RawURLEncoding.EncodeToString(sum[:]) != g.challenge {
			f.refuse(w, r, map[bool]string{true: "bad_verification_code", false: "invalid_grant"}[f.style == "github"])
			return
		}
	}
	if f.style == "github" && !strings.Contains(r.Header.Get("Accept"), "application/json") {
		w.Header().Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
		_, _ = w.Write([]byte(url.Values{"access_token": {f.token}, "scope": {"read:user,user:email"}, "token_type": {"bearer"}}.Encode()))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"access_token": f.token, "token_type": "Bearer", "expires_in": 604800, "refresh_token": "r-" + f.style, "scope": g.scope})
}

// refuse answers a token error as the IdP does: GitHub with a 200
// (form-encoded unless JSON was asked for), the others with a 400.
func (f *fakeIdP) refuse(w http.ResponseWriter, r *http.Request, code string) {
	if f.style == "github" {
		if strings.Contains(r.Header.Get("Accept"), "application/json") {
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": "The code passed is incorrect or expired."})
			return
		}
		w.Header().Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
		_, _ = w.Write([]byte(url.Values{"error": {code}, "error_description": {"The code passed is incorrect or expired."}, "error_uri": {"https://docs.github.com/apps"}}.Encode()))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusBadRequest)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": code})
}

// authorized checks the API call's bearer token (and, for GitHub, the
// User-Agent its API requires).
func (f *fakeIdP) authorized(w http.ResponseWriter, r *http.Request) bool {
	if r.Header.Get("Authorization") != "Bearer "+f.token || (f.style == "github" && r.Header.Get("User-Agent") == "") {
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(`{"message":"Bad credentials"}`))
		return false
	}
	return true
}

func (f *fakeIdP) userEndpoint(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.authorized(w, r) {
		return
	}
	if f.userStatus != 0 {
		w.WriteHeader(f.userStatus)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(f.user)
}

func (f *fakeIdP) emailsEndpoint(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.authorized(w, r) {
		return
	}
	if f.emailsStatus != 0 {
		w.WriteHeader(f.emailsStatus)
		_, _ = w.Write([]byte(`{"message":"Resource not accessible by integration"}`))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(f.emails)
}

// githubConfig points preset github at the fake in github.com's layout
// (the API on another host than the login pages, here another path).
func githubConfig(f *fakeIdP, extra map[string]any) map[string]any {
	cfg := map[string]any{
		"preset": "github", "client_id": clientID, "client_secret": secret,
		"authorize_url": f.srv.URL + "/login/oauth/authorize", "token_url": f.srv.URL + "/login/oauth/access_token",
		"userinfo_url": f.srv.URL + "/user", "emails_url": f.srv.URL + "/user/emails",
	}
	for k, v := range extra {
		cfg[k] = v
	}
	return cfg
}

func discordConfig(f *fakeIdP) map[string]any {
	return map[string]any{
		"preset": "discord", "client_id": clientID, "client_secret": secret,
		"authorize_url": f.srv.URL + "/oauth2/authorize", "token_url": f.srv.URL + "/api/oauth2/token",
		"userinfo_url": f.srv.URL + "/api/users/@me",
	}
}

func connect(t *testing.T, mode string, cfg map[string]any) providertest.Conn {
	t.Helper()
	var c providertest.Conn
	if mode == "grpc" {
		c = providertest.Open(t, New)
	} else {
		c = providertest.Direct(New)
	}
	if err := c.Configure(ctxT(t), providertest.RawConfig(t, cfg)); err != nil {
		t.Fatalf("Configure: %v", err)
	}
	return c
}

// browse runs Begin and follows the authorize URL as a browser would, up
// to the redirect back to the callback; it returns the callback's query,
// the kept flow state and the authorize URL's query.
func browse(t *testing.T, c providertest.Conn) (url.Values, []byte, url.Values) {
	t.Helper()
	res, err := c.Begin(ctxT(t), sdk.BeginRequest{CallbackURL: callbackURL, RequestID: "r1"})
	if err != nil {
		t.Fatalf("Begin: %v", err)
	}
	auth, _ := url.Parse(res.AuthURL)
	browser := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := browser.Get(res.AuthURL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	back, err := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusFound || err != nil || !strings.HasPrefix(back.String(), callbackURL) {
		t.Fatalf("authorize answered %d, Location %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	return back.Query(), res.State, auth.Query()
}

func signIn(t *testing.T, c providertest.Conn) (sdk.Identity, error) {
	t.Helper()
	q, st, _ := browse(t, c)
	return c.Complete(ctxT(t), sdk.CompleteRequest{Query: q, State: st, CallbackURL: callbackURL})
}

func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: %v, want %v", what, err, want)
	}
}

func octocat(f *fakeIdP) {
	f.user = map[string]any{"login": "octocat", "id": 583231, "name": nil, "email": "public@example.com", "html_url": "https://github.com/octocat", "plan": map[string]any{"name": "free"}}
}

// TestGitHub signs in through the github preset in both modes. The
// attack: GitHub's /user carries the public email the user typed, and
// /user/emails a primary that is not verified beside a verified
// secondary; handoff must not vouch for the primary (nor swap in the
// secondary), or anyone could claim a victim's address as their primary
// and be linked to the victim's account by email.
func TestGitHub(t *testing.T) {
	for _, mode := range []string{"direct", "grpc"} {
		t.Run(mode, func(t *testing.T) {
			f := newFake(t, "github")
			octocat(f)
			f.emails = []map[string]any{
				{"email": "victim@example.com", "primary": true, "verified": false, "visibility": "private"},
				{"email": "octo@example.com", "primary": false, "verified": true, "visibility": nil},
			}
			c := connect(t, mode, githubConfig(f, nil))
			q, st, auth := browse(t, c)
			if auth.Get("scope") != "read:user user:email" || auth.Get("code_challenge_method") != "S256" || auth.Get("redirect_uri") != callbackURL {
				t.Fatalf("authorize query %v", auth)
			}
			id, err := c.Complete(ctxT(t), sdk.CompleteRequest{Query: q, State: st, CallbackURL: callbackURL})
			if err != nil {
				t.Fatal(err)
			}
			if id.Subject != "583231" || id.Name != "octocat" || id.Email != "victim@example.com" || id.EmailVerified {
				t.Fatalf("identity %+v", id)
			}
			// GitHub's token answer has no expiry and no refresh token.
			if id.AccessToken != f.token || id.RefreshToken != "" || !id.AccessTokenExpiry.IsZero() {
				t.Fatalf("provider tokens: access %t, refresh %t, expiry %v", id.AccessToken == f.token, id.RefreshToken != "", id.AccessTokenExpiry)
			}
			if id.Claims["login"] != "octocat" || id.Claims["plan"] != nil {
				t.Errorf("claims %v", id.Claims)
			}

			// The primary verified: now GitHub vouches for it.
			f.emails[0]["verified"] = true
			f.user["name"] = "The Octocat"
			id, err = signIn(t, c)
			if err != nil || id.Email != "victim@example.com" || !id.EmailVerified || id.Name != "The Octocat" || id.Subject != "583231" {
				t.Fatalf("verified primary: %+v %v", id, err)
			}
		})
	}
}

// TestGitHubEmailsNotGranted: without the user:email scope, /user/emails
// answers 403; the public email is taken, never as verified.
func TestGitHubEmailsNotGranted(t *testing.T) {
	f := newFake(t, "github")
	octocat(f)
	f.emailsStatus = http.StatusForbidden
	c := connect(t, "direct", githubConfig(f, map[string]any{"scopes": []string{"read:user"}}))
	id, err := signIn(t, c)
	if err != nil || id.Email != "public@example.com" || id.EmailVerified {
		t.Fatalf("%+v %v", id, err)
	}
	f.emailsStatus = http.StatusBadGateway
	_, err = signIn(t, c)
	wantErr(t, "/user/emails answering 502", err, sdk.ErrUnavailable)
}

// TestGitHubEnterprise: base_url makes the endpoints
// BASE/login/oauth/... and BASE/api/v3/user(/emails).
func TestGitHubEnterprise(t *testing.T) {
	f := newFake(t, "github")
	octocat(f)
	f.emails = []map[string]any{{"email": "octo@corp.example", "primary": true, "verified": true}}
	c := connect(t, "grpc", map[string]any{"preset": "github", "base_url": f.srv.URL + "/", "client_id": clientID, "client_secret": secret})
	id, err := signIn(t, c)
	if err != nil || id.Email != "octo@corp.example" || !id.EmailVerified {
		t.Fatalf("%+v %v", id, err)
	}
	for _, p := range []string{"/login/oauth/authorize", "/login/oauth/access_token", "/api/v3/user", "/api/v3/user/emails"} {
		if !f.hit(p) {
			t.Errorf("GitHub Enterprise's %s was not called", p)
		}
	}
	if f.hit("/user") {
		t.Error("github.com's /user layout was called on GitHub Enterprise")
	}
}

// TestGitHubRefusedCode: GitHub refuses a bad or replayed code with a 200
// and error=bad_verification_code. The attack: a code played twice (from
// a log, a Referer) must not sign in, and the quirk's 200 must not be
// read as a token answer.
func TestGitHubRefusedCode(t *testing.T) {
	for _, mode := range []string{"direct", "grpc"} {
		t.Run(mode, func(t *testing.T) {
			f := newFake(t, "github")
			octocat(f)
			f.emails = []map[string]any{}
			c := connect(t, mode, githubConfig(f, nil))
			q, st, _ := browse(t, c)
			if _, err := c.Complete(ctxT(t), sdk.CompleteRequest{Query: q, State: st}); err != nil {
				t.Fatal(err)
			}
			_, err := c.Complete(ctxT(t), sdk.CompleteRequest{Query: q, State: st})
			wantErr(t, "the code played again", err, sdk.ErrInvalidCredentials)
			if !strings.Contains(err.Error(), "bad_verification_code") {
				t.Errorf("the error does not name GitHub's code: %v", err)
			}
		})
	}
}

// TestPKCE: the code_verifier goes with the code (the fake checks it
// against the challenge), a flow state with another verifier is refused,
// and pkce: false sends none.
func TestPKCE(t *testing.T) {
	f := newFake(t, "github")
	octocat(f)
	c := connect(t, "direct", githubConfig(f, nil))
	q, st, _ := browse(t, c)
	var kept flowState
	_ = json.Unmarshal(st, &kept)
	kept.Verifier = strings.Repeat("A", 43) // an attacker's code without the flow's verifier
	forged, _ := json.Marshal(kept)
	_, err := c.Complete(ctxT(t), sdk.CompleteRequest{Query: q, State: forged})
	wantErr(t, "another PKCE verifier", err, sdk.ErrInvalidCredentials)

	c = connect(t, "direct", githubConfig(f, map[string]any{"pkce": false}))
	_, _, auth := browse(t, c)
	if auth.Has("code_challenge") || auth.Has("code_challenge_method") {
		t.Fatalf("pkce false still sent a challenge: %v", auth)
	}
}

// TestDiscord signs in through the discord preset: Basic client auth,
// the id as subject, global_name before username, and the email vouched
// for only when verified is true.
func TestDiscord(t *testing.T) {
	for _, mode := range []string{"direct", "grpc"} {
		t.Run(mode, func(t *testing.T) {
			f := newFake(t, "discord")
			f.user = map[string]any{"id": "80351110224678912", "username": "nelly", "global_name": nil, "discriminator": "0", "email": "nelly@discord.example", "verified": false}
			c := connect(t, mode, discordConfig(f))
			q, st, auth := browse(t, c)
			if auth.Get("scope") != "identify email" || auth.Has("code_challenge") {
				t.Fatalf("authorize query %v", auth)
			}
			id, err := c.Complete(ctxT(t), sdk.CompleteRequest{Query: q, State: st})
			if err != nil || id.Subject != "80351110224678912" || id.Name != "nelly" || id.Email != "nelly@discord.example" || id.EmailVerified {
				t.Fatalf("unverified: %+v %v", id, err)
			}
			// The IdP's tokens travel to the host (over gRPC too), for the
			// session's providerAccessToken and the rest.
			if left := time.Until(id.AccessTokenExpiry); id.AccessToken != f.token || id.RefreshToken != "r-"+f.style || left < 604800*time.Second-time.Minute || left > 604800*time.Second {
				t.Fatalf("provider tokens: access %t, refresh %t, expiry in %v", id.AccessToken == f.token, id.RefreshToken == "r-"+f.style, left)
			}
			// Refresh trades the refresh token for a new access token; the
			// IdP keeping its refresh token, the old one stays. A wrong one
			// is the user's: invalid credentials.
			rr, err := c.Refresh(ctxT(t), sdk.RefreshRequest{RefreshToken: id.RefreshToken})
			if err != nil || rr.AccessToken != "refreshed-"+f.token || rr.RefreshToken != id.RefreshToken || time.Until(rr.AccessTokenExpiry) > time.Hour {
				t.Fatalf("Refresh: %t %t %v, %v", rr.AccessToken == "refreshed-"+f.token, rr.RefreshToken == id.RefreshToken, rr.AccessTokenExpiry, err)
			}
			_, err = c.Refresh(ctxT(t), sdk.RefreshRequest{RefreshToken: "r-stolen"})
			wantErr(t, "Refresh with a wrong token", err, sdk.ErrInvalidCredentials)
			f.user["verified"], f.user["global_name"] = true, "Nelly"
			id, err = signIn(t, c)
			if err != nil || !id.EmailVerified || id.Name != "Nelly" {
				t.Fatalf("verified: %+v %v", id, err)
			}
			f.user["email"] = nil // the email scope not granted
			id, err = signIn(t, c)
			if err != nil || id.Email != "" || id.EmailVerified {
				t.Fatalf("no email: %+v %v", id, err)
			}
		})
	}
}

// TestGeneric maps a nested userinfo answer through dotted paths.
func TestGeneric(t *testing.T) {
	f := newFake(t, "generic")
	f.user = map[string]any{"data": map[string]any{"user": map[string]any{"id": 42, "mail": "a@b.example", "mail_ok": "true", "names": []any{"Ada L."}}}}
	cfg := map[string]any{
		"client_id": clientID, "client_secret": secret, "scopes": []string{"profile"},
		"authorize_url": f.srv.URL + "/authorize?tenant=t1", "token_url": f.srv.URL + "/token", "userinfo_url": f.srv.URL + "/userinfo",
		"claims": map[string]any{"subject": "data.user.id", "email": "data.user.mail", "email_verified": "data.user.mail_ok", "name": "data.user.names.0"},
	}
	c := connect(t, "grpc", cfg)
	q, st, auth := browse(t, c)
	if auth.Get("tenant") != "t1" || auth.Get("code_challenge_method") != "S256" || auth.Get("scope") != "profile" {
		t.Fatalf("authorize query %v", auth)
	}
	id, err := c.Complete(ctxT(t), sdk.CompleteRequest{Query: q, State: st})
	if err != nil || id.Subject != "42" || id.Email != "a@b.example" || !id.EmailVerified || id.Name != "Ada L." {
		t.Fatalf("%+v %v", id, err)
	}
	f.user = map[string]any{"data": map[string]any{"user": map[string]any{"mail": "a@b.example"}}}
	_, err = signIn(t, c)
	wantErr(t, "no subject", err, sdk.ErrInvalidCredentials)
}

func TestLookup(t *testing.T) {
	var doc any
	_ = json.Unmarshal([]byte(`{"a":{"b":[{"c":"x"}],"d.e":"dotted"},"n":1}`), &doc)
	for path, want := range map[string]any{
		"a.b.0.c": "x", "a.d.e": "dotted", "n": 1.0, "a.b.1.c": nil, "a.b.-1": nil, "a.b.x": nil, "": nil, "n.x": nil, "zz": nil,
	} {
		if got := lookup(doc, path); got != want {
			t.Errorf("lookup(%q) = %v, want %v", path, got, want)
		}
	}
}

// TestCallbackRefused: a callback that is not this flow's, or the IdP's
// refusal, never signs in.
func TestCallbackRefused(t *testing.T) {
	f := newFake(t, "discord")
	f.user = map[string]any{"id": "1", "username": "u"}
	c := connect(t, "direct", discordConfig(f))
	q, st, _ := browse(t, c)
	for _, tc := range []struct {
		name  string
		query url.Values
		state []byte
		want  error
	}{
		{"another flow's state (login CSRF)", url.Values{"code": {q.Get("code")}, "state": {"attacker-state"}}, st, sdk.ErrInvalidCredentials},
		{"no state", url.Values{"code": {q.Get("code")}}, st, sdk.ErrInvalidRequest},
		{"no code", url.Values{"state": q["state"]}, st, sdk.ErrInvalidRequest},
		{"access denied", url.Values{"error": {"access_denied"}, "error_description": {"The resource owner or authorization server denied the request"}, "state": q["state"]}, st, sdk.ErrInvalidCredentials},
		{"no flow state", q, nil, sdk.ErrInvalidRequest},
		{"garbage flow state", q, []byte(`{"v":9}`), sdk.ErrInvalidRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.Complete(ctxT(t), sdk.CompleteRequest{Query: tc.query, State: tc.state})
			wantErr(t, tc.name, err, tc.want)
		})
	}
}

// unavailableCase breaks the fake (set) or the config (cfg) so that the
// sign-in must answer ErrUnavailable.
type unavailableCase struct {
	name string
	set  func(f *fakeIdP)
	cfg  func(cfg map[string]any)
}

// TestUnavailable: an IdP outage is ErrUnavailable (503), never invalid
// credentials.
func TestUnavailable(t *testing.T) {
	runUnavailable(t, []unavailableCase{
		{"token endpoint 500", func(f *fakeIdP) { f.tokenStatus = 500 }, nil},
		{"token endpoint 429", func(f *fakeIdP) { f.tokenStatus = 429 }, nil},
		{"user endpoint 503", func(f *fakeIdP) { f.userStatus = 503 }, nil},
		{"IdP down", func(f *fakeIdP) {}, func(cfg map[string]any) { cfg["token_url"] = "http://127.0.0.1:1/token" }},
	})
}

// TestRedirectsNotFollowed: the attack is an endpoint (or whoever holds
// its host) answering a redirect to a server of its choice; following it
// would hand that server the code, the client secret or the access
// token. The redirect is a 503 and the second server receives nothing.
func TestRedirectsNotFollowed(t *testing.T) {
	runUnavailable(t, []unavailableCase{
		{"token endpoint redirects", func(f *fakeIdP) {}, func(cfg map[string]any) { cfg["token_url"] = f2(cfg, "/redirect") }},
		{"user endpoint redirects", func(f *fakeIdP) {}, func(cfg map[string]any) { cfg["userinfo_url"] = f2(cfg, "/redirect") }},
		{"emails endpoint redirects", func(f *fakeIdP) {}, func(cfg map[string]any) { cfg["emails_url"] = f2(cfg, "/redirect") }},
	})
}

// TestClientRefused: the IdP refusing handoff's own client (a wrong
// secret, GitHub's incorrect_client_credentials; a callback URL that is
// not the registered one; Discord's invalid_client; a bare 401) is
// ErrMisconfigured, the operator's to fix, never the person's invalid
// credentials; and the error names the client_id, never the secret.
func TestClientRefused(t *testing.T) {
	for _, tc := range []struct {
		name, style string
		set         func(f *fakeIdP, cfg map[string]any)
	}{
		{"github wrong secret", "github", func(f *fakeIdP, cfg map[string]any) { cfg["client_secret"] = "wrong-secret" }},
		{"github redirect_uri_mismatch", "github", func(f *fakeIdP, cfg map[string]any) { f.tokenError = "redirect_uri_mismatch" }},
		{"github application_suspended", "github", func(f *fakeIdP, cfg map[string]any) { f.tokenError = "application_suspended" }},
		{"discord wrong secret", "discord", func(f *fakeIdP, cfg map[string]any) { cfg["client_secret"] = "wrong-secret" }},
		{"discord bare 401", "discord", func(f *fakeIdP, cfg map[string]any) { f.tokenStatus = http.StatusUnauthorized }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(t, tc.style)
			octocat(f)
			cfg := githubConfig(f, nil)
			if tc.style == "discord" {
				cfg = discordConfig(f)
			}
			tc.set(f, cfg)
			c := connect(t, "grpc", cfg)
			_, err := signIn(t, c)
			wantErr(t, tc.name, err, sdk.ErrMisconfigured)
			if !strings.Contains(err.Error(), clientID) || strings.Contains(err.Error(), "wrong-secret") || strings.Contains(err.Error(), secret) {
				t.Fatalf("the error should name the client_id and no secret: %v", err)
			}
		})
	}
}

func runUnavailable(t *testing.T, cases []unavailableCase) {
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("a redirect was followed to %s (Authorization %q)", r.URL, r.Header.Get("Authorization"))
	}))
	defer elsewhere.Close()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(t, "github")
			octocat(f)
			f.srv.Config.Handler = redirecting(f.srv.Config.Handler, elsewhere.URL)
			tc.set(f)
			cfg := githubConfig(f, nil)
			if tc.cfg != nil {
				tc.cfg(cfg)
			}
			c := connect(t, "grpc", cfg)
			_, err := signIn(t, c)
			wantErr(t, tc.name, err, sdk.ErrUnavailable)
		})
	}
}

// f2 is a path on the fake named by cfg's authorize_url.
func f2(cfg map[string]any, path string) string {
	u, _ := url.Parse(cfg["authorize_url"].(string))
	return u.Scheme + "://" + u.Host + path
}

// redirecting adds /redirect, which sends every request to target.
func redirecting(next http.Handler, target string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/redirect" {
			http.Redirect(w, r, target+"/stolen", http.StatusTemporaryRedirect)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// TestVerifyRefused: the kind has no direct flow; an access token a
// client brings could be any app's, so none is taken.
func TestVerifyRefused(t *testing.T) {
	f := newFake(t, "github")
	c := connect(t, "grpc", githubConfig(f, nil))
	_, err := c.Verify(ctxT(t), sdk.Request{Payload: json.RawMessage(`{"access_token":"gho_someone_elses"}`)})
	wantErr(t, "Verify", err, sdk.ErrInvalidRequest)
	if f.hit("/user") {
		t.Fatal("Verify called the IdP with a client's token")
	}
}

// TestConformance runs the providertest suite, directly and through the
// go-plugin gRPC pair, on each preset and the generic mode.
func TestConformance(t *testing.T) {
	f := newFake(t, "github")
	d := newFake(t, "discord")
	for name, cfg := range map[string]any{
		"github":  githubConfig(f, nil),
		"discord": discordConfig(d),
		"generic": map[string]any{"client_id": clientID, "authorize_url": f.srv.URL + "/authorize", "token_url": f.srv.URL + "/token", "userinfo_url": f.srv.URL + "/userinfo", "claims": map[string]any{"subject": "id"}},
	} {
		t.Run(name, func(t *testing.T) { providertest.Run(t, providertest.Suite{New: New, Config: cfg}) })
	}
}

func TestDescribe(t *testing.T) {
	info, err := New().Describe(context.Background())
	if err != nil || info.Name != "oauth2" || !info.ProvesIdentity || len(info.Flows) != 1 || info.Flows[0] != sdk.FlowRedirect {
		t.Fatalf("%+v %v", info, err)
	}
	_, err = New().(sdk.Redirector).Begin(context.Background(), sdk.BeginRequest{CallbackURL: callbackURL})
	wantErr(t, "Begin before Configure", err, sdk.ErrUnavailable)
}
