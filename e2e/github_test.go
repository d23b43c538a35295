package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// fakeGHE is a loopback GitHub Enterprise Server as the oauth2 kind's
// github preset meets it through base_url: the authorize page approves at
// once, the token endpoint answers form-encoded (and a bad code with a 200
// and error=bad_verification_code), and the REST API under /api/v3 wants
// the token and a User-Agent.
type fakeGHE struct {
	mu     sync.Mutex
	codes  map[string]string // code -> redirect_uri
	refuse bool              // the token endpoint refuses every code
	emails string            // /user/emails as JSON
}

func (g *fakeGHE) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	g.mu.Lock()
	defer g.mu.Unlock()
	switch r.URL.Path {
	case "/login/oauth/authorize":
		q := r.URL.Query()
		code := fmt.Sprintf("code%d", len(g.codes))
		g.codes[code] = q.Get("redirect_uri")
		http.Redirect(w, r, q.Get("redirect_uri")+"?"+url.Values{"code": {code}, "state": {q.Get("state")}}.Encode(), http.StatusFound)
	case "/login/oauth/access_token":
		_ = r.ParseForm()
		uri, ok := g.codes[r.PostForm.Get("code")]
		delete(g.codes, r.PostForm.Get("code"))
		w.Header().Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
		if g.refuse || !ok || uri != r.PostForm.Get("redirect_uri") || r.PostForm.Get("client_secret") != "ghe-secret" || r.PostForm.Get("code_verifier") == "" {
			_, _ = w.Write([]byte("error=bad_verification_code&error_description=The+code+passed+is+incorrect+or+expired."))
			return
		}
		_, _ = w.Write([]byte("access_token=gho_e2e&scope=read%3Auser%2Cuser%3Aemail&token_type=bearer"))
	case "/api/v3/user", "/api/v3/user/emails":
		if r.Header.Get("Authorization") != "Bearer gho_e2e" || r.Header.Get("User-Agent") == "" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		if strings.HasSuffix(r.URL.Path, "/emails") {
			_, _ = w.Write([]byte(g.emails))
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"login": "monalisa", "id": 1, "name": "Mona Lisa Octocat", "email": nil})
	default:
		http.NotFound(w, r)
	}
}

// TestGitHubLogin runs createOAuth2Token's browser flow through the real
// daemon and the built-in oauth2 plugin (preset github, GitHub Enterprise
// Server by base_url) to GET /v1/account: the account carries GitHub's
// numeric id as the identity, the name and the primary email of
// /user/emails. A refused code (GitHub's 200 with bad_verification_code)
// goes to the failure URL as invalid credentials.
func TestGitHubLogin(t *testing.T) {
	ghe := &fakeGHE{codes: map[string]string{}, emails: `[{"email":"mona@ghe.example","primary":true,"verified":true,"visibility":"private"}]`}
	idp := httptest.NewServer(ghe)
	t.Cleanup(idp.Close)
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("the browser loaded the app's page %s", r.URL.Path)
	}))
	t.Cleanup(app.Close)
	appURL, _ := url.Parse(app.URL)
	success, failure := app.URL+"/auth/done", app.URL+"/auth/failed"
	secretFile := filepath.Join(t.TempDir(), "github_client_secret")
	if err := os.WriteFile(secretFile, []byte("ghe-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, fmt.Sprintf(`
redirect:
  allow: [%q]
providers:
  - name: github
    kind: oauth2
    config:
      preset: github
      base_url: %s
      client_id: Iv1.e2e
      client_secret_file: %s
    users: {create: true}
`, app.URL+"/auth", idp.URL, secretFile))
	begin := d.URL + "/v1/account/tokens/oauth2/github?" + url.Values{"project": {"default"}, "success": {success}, "failure": {failure}}.Encode()

	br := oidcBrowser(appURL.Host)
	resp, err := br.Get(begin)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusMovedPermanently || !strings.HasPrefix(loc.String(), success+"?") {
		t.Fatalf("the sign-in ended with %d to %q, want the success URL", resp.StatusCode, loc.Redacted())
	}
	userID, secret := loc.Query().Get("userId"), loc.Query().Get("secret")
	sresp, session := oidcDo(t, br, "POST", d.URL+"/v1/account/sessions/token", "", map[string]any{"userId": userID, "secret": secret})
	if sresp.StatusCode != http.StatusCreated || session["userId"] != userID {
		t.Fatalf("exchange: %d %v", sresp.StatusCode, session)
	}
	aresp, account := oidcDo(t, br, "GET", d.URL+"/v1/account", "", nil)
	if aresp.StatusCode != http.StatusOK || account["$id"] != userID || account["email"] != "mona@ghe.example" || account["name"] != "Mona Lisa Octocat" {
		t.Fatalf("account: %d %v", aresp.StatusCode, account)
	}

	ghe.mu.Lock()
	ghe.refuse = true
	ghe.mu.Unlock()
	resp, err = oidcBrowser(appURL.Host).Get(begin)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if e := redirectError(t, resp, failure); e["type"] != "user_invalid_credentials" || !strings.Contains(fmt.Sprint(e["message"]), "bad_verification_code") {
		t.Fatalf("refused code: error %v", e)
	}
	if strings.Contains(d.logs.String(), "gho_e2e") || strings.Contains(d.logs.String(), "ghe-secret") {
		t.Fatal("a token or the client secret reached the log")
	}
}
