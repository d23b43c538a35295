package e2e

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/handoffd/handoff/plugins/oidc/oidctest"
)

// TestOIDCClaimPolicyAndVerifiedLink drives the real daemon and oidc
// plugin against a loopback OP: a provider whose require the sign-in
// fails (alice has no hd claim: a personal account where a Workspace
// domain is required) sends the browser to the failure URL with a reason
// naming the claim and mints nothing; a provider with link_by_email links
// alice's verified email to the existing user and leaves that user's
// emailVerification true.
func TestOIDCClaimPolicyAndVerifiedLink(t *testing.T) {
	op := oidctest.New(t, oidctest.Options{Clients: []oidctest.Client{
		{ID: auth0WebClient, Secret: auth0WebSecret, ClaimsInIDToken: true},
	}})
	alice := oidctest.DefaultUser
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("the browser loaded the app's page %s", r.URL.Path)
	}))
	t.Cleanup(app.Close)
	appURL, _ := url.Parse(app.URL)
	success, failure := app.URL+"/auth/done", app.URL+"/auth/failed"
	d := startDaemon(t, fmt.Sprintf(`
redirect:
  allow: [%[1]q]
providers:
  - name: workspace
    kind: oidc
    config:
      issuer: %[2]s
      client_id: %[3]s
      client_secret: %[4]s
      require: {email_verified: true, hd: example.com}
    users: {create: true}
  - name: auth0
    kind: oidc
    config:
      issuer: %[2]s
      client_id: %[3]s
      client_secret: %[4]s
      require: {email_verified: true}
    users: {link_by_email: true}
`, app.URL+"/auth", op.Issuer, auth0WebClient, auth0WebSecret))
	op.SetRedirectURIs(auth0WebClient, d.URL+"/v1/account/sessions/oauth2/callback/workspace/default", d.URL+"/v1/account/sessions/oauth2/callback/auth0/default")
	begin := func(name string) string {
		return d.URL + "/v1/account/tokens/oauth2/" + name + "?" + url.Values{"project": {"default"}, "success": {success}, "failure": {failure}}.Encode()
	}

	resp := oidctest.Login(t, oidcBrowser(appURL.Host), begin("workspace"), alice.Username, alice.Password)
	resp.Body.Close()
	if e := redirectError(t, resp, failure); e["type"] != "user_invalid_credentials" || !strings.Contains(fmt.Sprint(e["message"]), `"hd"`) {
		t.Fatalf("a sign-in failing require: error %v, want user_invalid_credentials naming hd", e)
	}
	if status, users := call(t, d, "GET", "/v1/users", d.Key, "", nil); status != http.StatusOK || fmt.Sprint(users["total"]) != "0" {
		t.Fatalf("the refused sign-in made a user: %d %v", status, users)
	}

	status, owner := call(t, d, "POST", "/v1/users", d.Key, "", map[string]any{"userId": "owner", "email": alice.Email})
	if status != http.StatusCreated || owner["emailVerification"] != false {
		t.Fatalf("POST /v1/users: %d %v", status, owner)
	}
	resp = oidctest.Login(t, oidcBrowser(appURL.Host), begin("auth0"), alice.Username, alice.Password)
	resp.Body.Close()
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || !strings.HasPrefix(loc.String(), success+"?") || loc.Query().Get("userId") != "owner" {
		t.Fatalf("the linking sign-in redirected to %q, want the success URL for owner", loc.Redacted())
	}
	status, got := call(t, d, "GET", "/v1/users/owner", d.Key, "", nil)
	if status != http.StatusOK || got["emailVerification"] != true {
		t.Fatalf("GET /v1/users/owner after a link by a verified email: %d %v, want emailVerification true", status, got)
	}
}
