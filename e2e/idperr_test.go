package e2e

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/handoffd/handoff/plugins/oidc/oidctest"
)

// TestOIDCWrongClientSecret: handoff is deployed with a client_secret the
// IdP (the real OP, zitadel/oidc) does not take. A browser's sign-in ends
// at the failure URL with the generic provider_unavailable (the person is
// not told about the secret); the operator gets an ERROR line from the
// plugin saying the IdP refused the client credentials, with
// invalid_client and the client_id and without the secret, the
// oauth2.failed WARN line carries reason idp_invalid_client, and GET
// /v1/providers shows the refusal to a key holder, not to a guest. Before,
// all the operator saw was "provider unavailable".
func TestOIDCWrongClientSecret(t *testing.T) {
	const wrongSecret = "e2e-wrong-client-secret-51c8"
	op := oidctest.New(t, oidctest.Options{Clients: []oidctest.Client{{ID: auth0WebClient, Secret: auth0WebSecret, ClaimsInIDToken: true}}})
	alice := oidctest.DefaultUser
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("the browser loaded the app's page %s", r.URL.Path)
	}))
	t.Cleanup(app.Close)
	appURL, _ := url.Parse(app.URL)
	success, failure := app.URL+"/auth/done", app.URL+"/auth/failed"
	d := startDaemon(t, fmt.Sprintf(`
redirect:
  allow: [%q]
providers:
  - name: auth0
    kind: oidc
    config:
      issuer: %s
      client_id: %s
      client_secret: %s
    users: {create: true}
    deliver: {via: response}
`, app.URL+"/auth", op.Issuer, auth0WebClient, wrongSecret))
	callback := d.URL + "/v1/account/sessions/oauth2/callback/auth0/default"
	op.SetRedirectURIs(auth0WebClient, callback)

	begin := d.URL + "/v1/account/tokens/oauth2/auth0?" + url.Values{"project": {"default"}, "success": {success}, "failure": {failure}}.Encode()
	resp := oidctest.Login(t, oidcBrowser(appURL.Host), begin, alice.Username, alice.Password)
	resp.Body.Close()
	code := resp.Request.URL.Query().Get("code") // the OP's redirect to the callback
	e := redirectError(t, resp, failure)
	if e["type"] != "provider_unavailable" || e["code"] != float64(503) {
		t.Fatalf("the browser was told %v, want the generic provider_unavailable", e)
	}
	if msg := fmt.Sprint(e["message"]); strings.Contains(msg, "client") || strings.Contains(msg, "secret") {
		t.Fatalf("the browser was told about the client credentials: %q", msg)
	}

	// The operator's log: the plugin's ERROR, re-logged by the host under
	// the provider's name, and the sign-in's WARN line.
	var errLine, warnLine string
	deadline := time.Now().Add(5 * time.Second)
	for (errLine == "" || warnLine == "") && time.Now().Before(deadline) {
		for _, l := range strings.Split(d.logs.String(), "\n") {
			switch {
			case strings.Contains(l, "level=ERROR") && strings.Contains(l, "refused the client credentials"):
				errLine = l
			case strings.Contains(l, "level=WARN msg=oauth2.failed"):
				warnLine = l
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("the operator's lines:\n%s\n%s", errLine, warnLine)
	for _, want := range []string{"provider=auth0", "client_id=" + auth0WebClient, "error=invalid_client"} {
		if !strings.Contains(errLine, want) {
			t.Errorf("the ERROR line %q lacks %q", errLine, want)
		}
	}
	for _, want := range []string{"provider=auth0", "reason=idp_invalid_client", "(invalid_client)"} {
		if !strings.Contains(warnLine, want) {
			t.Errorf("the oauth2.failed line %q lacks %q", warnLine, want)
		}
	}

	// GET /v1/providers: a key holder sees why, a guest does not.
	status, list := call(t, d, "GET", "/v1/providers", d.Key, "", nil)
	ps, _ := list["providers"].([]any)
	if status != 200 || len(ps) != 1 {
		t.Fatalf("GET /v1/providers with a key: %d %v", status, list)
	}
	p, _ := ps[0].(map[string]any)
	t.Logf("GET /v1/providers with a key: %v", p)
	if last := fmt.Sprint(p["lastCallError"]); p["health"] != "up" || !strings.Contains(last, "refused the client credentials (invalid_client)") || !strings.Contains(last, auth0WebClient) || p["lastCallErrorAt"] == nil {
		t.Fatalf("a key holder sees %v", p)
	}
	status, list = call(t, d, "GET", "/v1/providers", "", "", nil)
	if status != 200 || strings.Contains(fmt.Sprint(list), "invalid_client") {
		t.Fatalf("a guest sees %d %v", status, list)
	}

	d.stop(t)
	logs := d.logs.String()
	for _, s := range []string{wrongSecret, auth0WebSecret, code, alice.Password} {
		if s != "" && strings.Contains(logs, s) {
			t.Errorf("the log holds a secret (%.6s…)", s)
		}
	}
}
