package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/handoffd/handoff/plugins/oidc/oidctest"
)

// The OP's clients: handoff's confidential web client (the redirect
// flow) and a mobile app's public client (its ID tokens come to the
// native flow as an extra audience).
const (
	auth0WebClient    = "handoff-web"
	auth0WebSecret    = "e2e-web-client-secret-7f3a"
	auth0MobileClient = "mobile-app"
	auth0MobileRedir  = "com.example.app:/oauth/callback"
)

var hexRE = regexp.MustCompile(`^[0-9a-f]+$`)

// oidcBrowser is a browser with a cookie jar that follows every redirect
// but the one to the app (appHost): that one it returns unfollowed, so the
// test reads handoff's redirect as a browser would before loading the
// app's page.
func oidcBrowser(appHost string) *http.Client {
	return oidctest.NewBrowser(func(u *url.URL) bool { return u.Host == appHost })
}

// oidcDo sends a JSON request with client c as a client SDK does (no
// key; a session when one is given) and returns the answer.
func oidcDo(t *testing.T, c *http.Client, method, u, session string, body any) (*http.Response, map[string]any) {
	t.Helper()
	hdr := map[string]string{}
	if session != "" {
		hdr["X-Appwrite-Session"] = session
	}
	resp, out, err := send(c, method, u, hdr, body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, out
}

// redirectError reads the error a failure redirect carries: Appwrite's
// {message, type, code} as JSON in the `error` query parameter.
func redirectError(t *testing.T, resp *http.Response, failure string) map[string]any {
	t.Helper()
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusMovedPermanently || !strings.HasPrefix(loc, failure+"?") {
		t.Fatalf("answered %d to %q, want a redirect to the failure URL %s", resp.StatusCode, loc, failure)
	}
	u, _ := url.Parse(loc)
	if u.Query().Get("secret") != "" || u.Query().Get("userId") != "" {
		t.Fatalf("the failure redirect carries a secret: %s", u.Redacted())
	}
	var e map[string]any
	if err := json.Unmarshal([]byte(u.Query().Get("error")), &e); err != nil {
		t.Fatalf("the failure redirect's error %q is not JSON: %v", u.Query().Get("error"), err)
	}
	return e
}

// TestAuth0Login is the seed's "External provider integration (Auth0)"
// through the real daemon and the built-in oidc plugin, against a real
// OpenID Provider (zitadel/oidc, package oidctest) on loopback.
//
// The provider is a plain `kind: oidc` with `issuer`, not `preset: auth0`:
// the preset derives the issuer https://<domain>/ and refuses an issuer
// of its own, and the loopback OP speaks plain http. The OP is set up as
// Auth0 behaves: profile and email claims in the ID token, a confidential
// web client for the redirect flow, and a native app's public client whose
// ID tokens the provider accepts as an extra audience.
//
// It runs the browser's redirect flow (handoff → the OP's authorize and
// login form → handoff's callback → the app's success URL with userId and
// secret → a session with the IdP's email and name), the native sign-in
// with an ID token and nonce, and the refusals: a success URL off the
// allow-list, a denied sign-in and a refused code (both to the failure
// URL with `error`), a replayed callback, a wrong nonce and a foreign
// audience.
func TestAuth0Login(t *testing.T) {
	op := oidctest.New(t, oidctest.Options{Clients: []oidctest.Client{
		{ID: auth0WebClient, Secret: auth0WebSecret, ClaimsInIDToken: true},
		{ID: auth0MobileClient, RedirectURIs: []string{auth0MobileRedir}, ClaimsInIDToken: true},
	}})
	alice := oidctest.DefaultUser

	// The app the browser comes back to. It is not loaded: the browser
	// stops at handoff's redirect to it.
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("the browser loaded the app's page %s", r.URL.Path)
	}))
	t.Cleanup(app.Close)
	appURL, _ := url.Parse(app.URL)
	success, failure := app.URL+"/auth/done", app.URL+"/auth/failed"

	secretFile := filepath.Join(t.TempDir(), "auth0_client_secret")
	if err := os.WriteFile(secretFile, []byte(auth0WebSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, fmt.Sprintf(`
redirect:
  allow: [%[1]q]
providers:
  - name: auth0
    kind: oidc
    config:
      issuer: %[2]s
      client_id: %[3]s
      client_secret_file: %[4]s
      audiences: [%[5]s]
    users: {create: true}
    deliver: {via: response}
`, app.URL+"/auth", op.Issuer, auth0WebClient, secretFile, auth0MobileClient))

	// The callback's port is known now: register it at the OP, as one
	// registers https://<handoff>/v1/account/sessions/oauth2/callback/auth0/default
	// among an Auth0 application's Allowed Callback URLs.
	callback := d.URL + "/v1/account/sessions/oauth2/callback/auth0/default"
	op.SetRedirectURIs(auth0WebClient, callback)

	_, list := oidcDo(t, http.DefaultClient, "GET", d.URL+"/v1/providers", "", nil)
	if ps, _ := list["providers"].([]any); len(ps) != 1 || fmt.Sprint(ps[0]) != fmt.Sprint(map[string]any{"name": "auth0", "kind": "oidc", "flows": []any{"direct", "redirect"}, "health": "up", "deliver": "response"}) {
		t.Fatalf("GET /v1/providers: %v", list)
	}

	begin := func(success, failure string) string {
		return d.URL + "/v1/account/tokens/oauth2/auth0?" + url.Values{"project": {"default"}, "success": {success}, "failure": {failure}}.Encode()
	}
	var leaks []string // what must never reach a log line

	// 1. The browser's redirect flow, as the Appwrite web SDK's
	// account.createOAuth2Token starts it.
	var userID string
	t.Run("redirect", func(t *testing.T) {
		br := oidcBrowser(appURL.Host)
		resp := oidctest.Login(t, br, begin(success, failure), alice.Username, alice.Password)
		resp.Body.Close()
		cb := resp.Request.URL // the OP's redirect to handoff's callback
		if resp.StatusCode != http.StatusMovedPermanently || !strings.HasPrefix(cb.String(), callback+"?") {
			t.Fatalf("the sign-in ended at %s with %d, want handoff's callback redirecting to the app", cb.Redacted(), resp.StatusCode)
		}
		loc, err := url.Parse(resp.Header.Get("Location"))
		if err != nil || !strings.HasPrefix(loc.String(), success+"?") {
			t.Fatalf("the callback redirected to %q, want the success URL", loc.Redacted())
		}
		userID = loc.Query().Get("userId")
		secret := loc.Query().Get("secret")
		if userID == "" || len(secret) != 64 || !hexRE.MatchString(secret) {
			t.Fatalf("the success redirect carries userId %q and a secret of %d characters, want a user and 64 hex", userID, len(secret))
		}
		if resp.Header.Get("Referrer-Policy") != "no-referrer" || !strings.Contains(resp.Header.Get("Cache-Control"), "no-store") {
			t.Fatalf("the success redirect's headers %v", resp.Header)
		}
		leaks = append(leaks, secret, cb.Query().Get("code"))

		// The app exchanges the secret in the browser: the session comes
		// as Appwrite's cookies, and the account is the IdP's person.
		sresp, session := oidcDo(t, br, "POST", d.URL+"/v1/account/sessions/token", "", map[string]any{"userId": userID, "secret": secret})
		if sresp.StatusCode != http.StatusCreated || session["userId"] != userID {
			t.Fatalf("exchange: %d %v", sresp.StatusCode, session)
		}
		for _, c := range sresp.Cookies() {
			leaks = append(leaks, c.Value)
		}
		aresp, account := oidcDo(t, br, "GET", d.URL+"/v1/account", "", nil)
		if aresp.StatusCode != http.StatusOK || account["$id"] != userID || account["email"] != alice.Email ||
			account["name"] != "Alice Liddell" || account["emailVerification"] != true {
			t.Fatalf("account: %d %v, want %s with the IdP's email and name", aresp.StatusCode, account, userID)
		}

		// The secret was one-time, and so is the callback: the flow was
		// taken, so a replay has no failure URL to go to and is a 400.
		again, body := oidcDo(t, http.DefaultClient, "POST", d.URL+"/v1/account/sessions/token", "", map[string]any{"userId": userID, "secret": secret})
		if again.StatusCode != http.StatusUnauthorized || body["type"] != "user_invalid_token" {
			t.Fatalf("second exchange: %d %v", again.StatusCode, body)
		}
		replay, body := oidcDo(t, oidcBrowser(appURL.Host), "GET", cb.String(), "", nil)
		if replay.StatusCode != http.StatusBadRequest || body["type"] != "user_oauth2_bad_request" {
			t.Fatalf("replayed callback: %d %v", replay.StatusCode, body)
		}
	})
	if userID == "" {
		t.FailNow()
	}

	// 2. Native sign-in: the mobile app signed in with the IdP itself and
	// sends the ID token with its nonce. Same subject, so the same user.
	t.Run("native", func(t *testing.T) {
		const nonce = "n-0S6_WzA2Mj"
		idToken := op.AppSignIn(t, auth0MobileClient, auth0MobileRedir, nonce, alice)
		leaks = append(leaks, idToken)
		verify := d.URL + "/v1/providers/auth0/verify"
		resp, token := oidcDo(t, http.DefaultClient, "POST", verify, "", map[string]any{"id_token": idToken, "nonce": nonce})
		secret, _ := token["secret"].(string)
		if resp.StatusCode != http.StatusCreated || token["userId"] != userID || len(secret) != 6 || !hexRE.MatchString(secret) {
			t.Fatalf("verify: %d %v, want a 6-hex secret for %s", resp.StatusCode, token, userID)
		}
		leaks = append(leaks, secret)
		sresp, session := oidcDo(t, http.DefaultClient, "POST", d.URL+"/v1/account/sessions/token", "", map[string]any{"userId": userID, "secret": secret})
		var fallback map[string]string
		_ = json.Unmarshal([]byte(sresp.Header.Get("X-Fallback-Cookies")), &fallback)
		cred := fallback["a_session_default"]
		if sresp.StatusCode != http.StatusCreated || session["userId"] != userID || cred == "" {
			t.Fatalf("exchange: %d %v, X-Fallback-Cookies %q", sresp.StatusCode, session, sresp.Header.Get("X-Fallback-Cookies"))
		}
		leaks = append(leaks, cred)
		aresp, account := oidcDo(t, http.DefaultClient, "GET", d.URL+"/v1/account", cred, nil)
		if aresp.StatusCode != http.StatusOK || account["$id"] != userID || account["email"] != alice.Email {
			t.Fatalf("account: %d %v", aresp.StatusCode, account)
		}

		for _, tc := range []struct {
			name    string
			payload map[string]any
			status  int
			typ     string
			msg     string
		}{
			{"wrong nonce", map[string]any{"id_token": idToken, "nonce": "another"}, 401, "user_invalid_credentials", "nonce"},
			{"no nonce", map[string]any{"id_token": idToken}, 401, "user_invalid_credentials", "nonce"},
			{"foreign audience", map[string]any{"id_token": op.Sign(t, op.Claims("someone-elses-app", alice))}, 401, "user_invalid_credentials", "audience"},
			{"tampered", map[string]any{"id_token": idToken[:len(idToken)-4] + "AAAA", "nonce": nonce}, 401, "user_invalid_credentials", "signature"},
			{"no id_token", map[string]any{"nonce": nonce}, 400, "general_argument_invalid", "id_token"},
		} {
			resp, body := oidcDo(t, http.DefaultClient, "POST", verify, "", tc.payload)
			if resp.StatusCode != tc.status || body["type"] != tc.typ || !strings.Contains(fmt.Sprint(body["message"]), tc.msg) {
				t.Errorf("%s: %d %v, want %d %s mentioning %s", tc.name, resp.StatusCode, body, tc.status, tc.typ, tc.msg)
			}
		}
	})

	// 3. Refusals in the redirect flow.
	t.Run("refusals", func(t *testing.T) {
		// A success URL off redirect.allow never reaches the IdP: the
		// browser goes to the (allowed) failure URL with the error.
		toFailure := func(resp *http.Response) bool {
			loc, err := url.Parse(resp.Header.Get("Location"))
			return resp.StatusCode == http.StatusMovedPermanently && err == nil && strings.HasPrefix(loc.String(), failure) &&
				strings.Contains(loc.Query().Get("error"), `"type":"project_invalid_success_url"`)
		}
		resp, _ := oidcDo(t, oidcBrowser(appURL.Host), "GET", begin("https://evil.example/auth/done", failure), "", nil)
		if !toFailure(resp) {
			t.Fatalf("success URL off the allow-list: %d %v", resp.StatusCode, resp.Header)
		}
		// Nor one beside the allowed path, also when dot segments (which
		// a browser resolves) make it look as if it were below it.
		for _, bad := range []string{app.URL + "/authz", app.URL + "/auth/../admin", app.URL + "/auth/%2e%2e/admin", app.URL + "/auth/./../admin"} {
			resp, _ = oidcDo(t, oidcBrowser(appURL.Host), "GET", begin(bad, failure), "", nil)
			if !toFailure(resp) {
				t.Errorf("success URL %s beside the allowed path: %d %v", bad, resp.StatusCode, resp.Header)
			}
		}

		// authorize opens a flow at the OP in a new browser and returns
		// the authorize query and that browser, which holds the cookie that
		// binds the flow to it.
		opHost := strings.TrimPrefix(op.Issuer, "http://")
		authorize := func() (url.Values, *http.Client) {
			t.Helper()
			br := oidctest.NewBrowser(func(u *url.URL) bool { return u.Host == opHost || u.Host == appURL.Host })
			resp, err := br.Get(begin(success, failure))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			auth, err := url.Parse(resp.Header.Get("Location"))
			if resp.StatusCode != http.StatusMovedPermanently || err != nil || !strings.HasPrefix(auth.String(), op.URL(oidctest.AuthorizePath)+"?") {
				t.Fatalf("begin: %d to %q, want the OP's authorize endpoint", resp.StatusCode, resp.Header.Get("Location"))
			}
			q := auth.Query()
			if q.Get("client_id") != auth0WebClient || q.Get("redirect_uri") != callback || q.Get("response_type") != "code" ||
				q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "" || q.Get("nonce") == "" || q.Get("state") == "" ||
				q.Get("scope") != "openid email profile" {
				t.Fatalf("authorize URL %s", auth)
			}
			return q, br
		}

		// The person declines at the IdP: it sends the browser back with
		// error=access_denied, which handoff forwards to the failure URL.
		q, br := authorize()
		deny := callback + "?" + url.Values{"error": {"access_denied"}, "error_description": {"User did not authorize the request"}, "state": {q.Get("state")}}.Encode()
		resp, err := br.Get(deny)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if e := redirectError(t, resp, failure); e["type"] != "user_oauth2_provider_error" || !strings.Contains(fmt.Sprint(e["message"]), "access_denied") {
			t.Fatalf("denied: error %v", e)
		}
		// That flow is spent: the same state again is a 400.
		again, body := oidcDo(t, oidcBrowser(appURL.Host), "GET", deny, "", nil)
		if again.StatusCode != http.StatusBadRequest || body["type"] != "user_oauth2_bad_request" {
			t.Fatalf("replayed state: %d %v", again.StatusCode, body)
		}

		// A forged code with a live state: the OP refuses it at the token
		// endpoint, and the browser goes to the failure URL.
		q, br = authorize()
		forged := callback + "?" + url.Values{"code": {"forged-code"}, "state": {q.Get("state")}}.Encode()
		resp, err = br.Get(forged)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if e := redirectError(t, resp, failure); e["type"] != "user_invalid_credentials" || !strings.Contains(fmt.Sprint(e["message"]), "refused the code") {
			t.Fatalf("forged code: error %v", e)
		}

		// A callback opened in another browser than the one that began
		// the flow (the attacker's own sign-in, sent to a victim: login
		// CSRF) mints nothing and goes to the failure URL.
		q, _ = authorize()
		stolen := callback + "?" + url.Values{"code": {"any-code"}, "state": {q.Get("state")}}.Encode()
		resp, err = oidcBrowser(appURL.Host).Get(stolen)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if e := redirectError(t, resp, failure); e["type"] != "user_oauth2_bad_request" || !strings.Contains(fmt.Sprint(e["message"]), "another browser") {
			t.Fatalf("callback in another browser: error %v", e)
		}

		// Identities are linked by signing in; there is no enrollment.
		status, enroll := call(t, d, "POST", "/v1/users/"+userID+"/providers/auth0", d.Key, "", map[string]any{"sub": "someone"})
		if status != http.StatusBadRequest || enroll["type"] != "provider_unsupported" {
			t.Fatalf("enroll: %d %v", status, enroll)
		}

		// A state handoff never issued is a 400, whatever the code.
		unknown, body := oidcDo(t, oidcBrowser(appURL.Host), "GET", callback+"?code=x&state=never-issued", "", nil)
		if unknown.StatusCode != http.StatusBadRequest || body["type"] != "user_oauth2_bad_request" {
			t.Fatalf("unknown state: %d %v", unknown.StatusCode, body)
		}
	})

	logs := d.logs.String()
	for _, s := range append(leaks, auth0WebSecret, alice.Password) {
		if s != "" && strings.Contains(logs, s) {
			t.Fatalf("a secret, code, token or password reached the daemon's log: %.12s…", s)
		}
	}
}
