package e2e

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/handoffd/handoff/plugins/oidc/oidctest"
)

// webSDKSessionURL is the URL the appwrite web SDK's
// account.createOAuth2Session sets as window.location.href
// (sdk-for-web src/services/account.ts; the same in the npm appwrite
// 27.0.0 and 28.0.0 builds): the endpoint and
// /account/sessions/oauth2/{provider}, then success, failure, the scopes
// flattened as scopes[0], scopes[1]…, and project last, appended one by
// one with URLSearchParams.
func webSDKSessionURL(endpoint, provider, project, success, failure string, scopes []string) string {
	u, _ := url.Parse(endpoint + "/account/sessions/oauth2/" + provider)
	var q []string
	add := func(k, v string) { q = append(q, url.QueryEscape(k)+"="+url.QueryEscape(v)) }
	add("success", success)
	add("failure", failure)
	for i, s := range scopes {
		add(fmt.Sprintf("scopes[%d]", i), s)
	}
	add("project", project)
	u.RawQuery = strings.Join(q, "&")
	return u.String()
}

// TestOAuth2SessionLogin is Appwrite's createOAuth2Session through the
// real daemon, the built-in oidc plugin and a real OpenID Provider on
// loopback: the browser goes from the web SDK's URL to the OP's login
// form, back to handoff's callback, which sets the session cookies and
// redirects to the app's success URL as given (no userId, no secret);
// with those cookies alone the app's next call, GET /v1/account, is the
// IdP's person. The web SDK's response format (28.0.0 sends 2.3.0) gets
// no warning, and no cookie value reaches the daemon's log.
func TestOAuth2SessionLogin(t *testing.T) {
	op := oidctest.New(t, oidctest.Options{Clients: []oidctest.Client{
		{ID: auth0WebClient, Secret: auth0WebSecret, ClaimsInIDToken: true},
	}})
	alice := oidctest.DefaultUser
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("the browser loaded the app's page %s", r.URL.Path)
	}))
	t.Cleanup(app.Close)
	appURL, _ := url.Parse(app.URL)
	success, failure := app.URL+"/auth/done?from=sdk", app.URL+"/auth/failed"

	secretFile := filepath.Join(t.TempDir(), "client_secret")
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
    users: {create: true}
    deliver: {via: response}
`, app.URL+"/auth", op.Issuer, auth0WebClient, secretFile))
	op.SetRedirectURIs(auth0WebClient, d.URL+"/v1/account/sessions/oauth2/callback/auth0/default")

	br := oidcBrowser(appURL.Host)
	start := webSDKSessionURL(d.URL+"/v1", "auth0", "default", success, failure, []string{"openid", "email", "profile"})
	resp := oidctest.Login(t, br, start, alice.Username, alice.Password)
	resp.Body.Close()
	if resp.StatusCode != http.StatusMovedPermanently || resp.Header.Get("Location") != success {
		t.Fatalf("the callback answered %d to %q, want 301 to the success URL as given", resp.StatusCode, resp.Header.Get("Location"))
	}
	var leaks []string
	for _, c := range resp.Cookies() {
		if strings.HasPrefix(c.Name, "a_session_default") {
			leaks = append(leaks, c.Value)
		}
	}
	if len(leaks) != 2 {
		t.Fatalf("the callback set %d session cookies, want a_session_default and its _legacy twin: %v", len(leaks), resp.Header.Values("Set-Cookie"))
	}

	// The app's page calls the API with credentials: 'include', as the
	// web SDK does; the browser sends the cookies it was given.
	aresp, account := oidcDo(t, br, "GET", d.URL+"/v1/account", "", nil)
	if aresp.StatusCode != http.StatusOK || account["email"] != alice.Email || account["name"] != "Alice Liddell" {
		t.Fatalf("account: %d %v, want the IdP's person", aresp.StatusCode, account)
	}
	sresp, session, err := send(br, "GET", d.URL+"/v1/account/sessions/current", map[string]string{"X-Appwrite-Response-Format": "2.3.0"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if sresp.StatusCode != http.StatusOK || sresp.Header.Get("X-Appwrite-Warning") != "" {
		t.Fatalf("current session with the web SDK's response format: %d, warning %q", sresp.StatusCode, sresp.Header.Get("X-Appwrite-Warning"))
	}
	// Appwrite's session model carries the provider, the identity's
	// subject and the IdP's tokens, for the session's owner.
	access, _ := session["providerAccessToken"].(string)
	if session["provider"] != "auth0" || session["providerUid"] != alice.ID || access == "" || session["providerAccessTokenExpiry"] == "" {
		t.Fatalf("session provider %v uid %v (want auth0 %s), access token %t, expiry %v", session["provider"], session["providerUid"], alice.ID, access != "", session["providerAccessTokenExpiry"])
	}
	leaks = append(leaks, access)
	// The store holds the IdP's access token only sealed.
	wantNotInFiles(t, d.Data, access)

	// Signing out clears the cookies; the browser is a guest again.
	out, _ := oidcDo(t, br, "DELETE", d.URL+"/v1/account/sessions/current", "", nil)
	if out.StatusCode != http.StatusNoContent {
		t.Fatalf("sign out: %d", out.StatusCode)
	}
	if again, _ := oidcDo(t, br, "GET", d.URL+"/v1/account", "", nil); again.StatusCode != http.StatusUnauthorized {
		t.Fatalf("account after sign-out: %d", again.StatusCode)
	}

	logs := d.logs.String()
	for _, s := range append(leaks, auth0WebSecret, alice.Password) {
		if s != "" && strings.Contains(logs, s) {
			t.Fatalf("a cookie, secret or password reached the daemon's log: %.12s…", s)
		}
	}
}

// wantNotInFiles fails if any file under dir holds secret in plain text.
func wantNotInFiles(t *testing.T, dir, secret string) {
	t.Helper()
	err := filepath.WalkDir(dir, func(path string, e os.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		raw, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if bytes.Contains(raw, []byte(secret)) {
			t.Errorf("%s holds the IdP's access token in plain text", filepath.Base(path))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
