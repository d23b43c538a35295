package daemon

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/handoffd/handoff/config"
)

// TestOAuth2SessionFlow is Appwrite's createOAuth2Session: the callback
// opens the session itself, sets a_session_<project> (and its _legacy
// twin) in the browser and redirects to the success URL as it was given,
// with no secret in it. The attacks of the token flow apply unchanged: a
// callback opened in another browser (login CSRF), a replayed state, a bad
// success URL, and a provider that delivers out of band, at the start or
// by the callback (its sign-ins may not skip that channel by landing in
// the browser's cookies). A second sign-in replaces the browser's session.
func TestOAuth2SessionFlow(t *testing.T) {
	app := httptest.NewServer(http.NotFoundHandler())
	defer app.Close()
	auditPath := filepath.Join(t.TempDir(), "audit.jsonl")
	s := newTestServer(t, func(c *config.Config) {
		c.Providers = []config.Provider{
			echoProvider(t, "idp", func(p *config.Provider) { p.Deliver.Via = "redirect" }),
			echoProvider(t, "hooked", func(p *config.Provider) {
				p.Deliver = config.Deliver{Via: "webhook", Webhook: config.Webhook{URL: app.URL + "/hook", Secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", Attempts: 1}}
			}),
		}
		c.Redirect.Allow = []string{app.URL + "/auth"}
		c.Audit.Sink, c.Audit.Path = config.AuditFile, auditPath
	})
	type browser struct {
		*http.Client
		jar *cookiejar.Jar
	}
	newBrowser := func() browser {
		jar, _ := cookiejar.New(nil)
		return browser{&http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}, jar}
	}
	get := func(b browser, path string) *http.Response {
		t.Helper()
		res, err := b.Get(s.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res
	}
	success := app.URL + "/auth/ok?keep=1"
	begin := "/v1/account/sessions/oauth2/idp?project=default&success=" + url.QueryEscape(success) + "&failure=" + url.QueryEscape(app.URL+"/auth/fail") + "&scopes%5B0%5D=email"
	b := newBrowser()
	state := beginState(t, get(b, begin))
	callback := "/v1/account/sessions/oauth2/callback/idp/default?state=" + url.QueryEscape(state) + "&code=session-subject&idp_token=" + idpAccessToken
	res := get(b, callback)
	if res.StatusCode != 301 || res.Header.Get("Location") != success {
		t.Fatalf("callback: %d to %q, want 301 to the success URL as given (%s)", res.StatusCode, res.Header.Get("Location"), success)
	}
	if res.Header.Get("X-Fallback-Cookies") != "" || res.Header.Get("Referrer-Policy") != "no-referrer" || !strings.Contains(res.Header.Get("Cache-Control"), "no-store") {
		t.Fatalf("callback headers: %v", res.Header)
	}
	cookies := map[string]string{}
	for _, line := range res.Header.Values("Set-Cookie") {
		name, _, _ := strings.Cut(line, "=")
		cookies[name] = strings.ToLower(line)
	}
	for _, name := range []string{"a_session_default", "a_session_default_legacy"} {
		c := cookies[name]
		if !strings.Contains(c, "; path=/") || !strings.Contains(c, "; httponly") || !strings.Contains(c, "; expires=") || strings.Contains(c, "domain=") || strings.Contains(c, "; secure") {
			t.Errorf("cookie %s: %q (want path=/, httponly, expires; no domain on an IP host; no secure over http)", name, c)
		}
	}
	if !strings.Contains(cookies["a_session_default"], "samesite=none") || strings.Contains(cookies["a_session_default_legacy"], "samesite") {
		t.Errorf("samesite: %q / %q", cookies["a_session_default"], cookies["a_session_default_legacy"])
	}
	// The browser is now signed in, by its cookies alone.
	acct := get(b, "/v1/account")
	if acct.StatusCode != 200 {
		t.Fatalf("GET /v1/account with the cookies: %d", acct.StatusCode)
	}
	wantProviderSession(t, s, b, "session-subject")
	wantRefresh(t, s, b)
	// A state is good for one callback.
	wantError(t, s.do(req{method: "GET", path: callback}), 400, "user_oauth2_bad_request")

	// A second sign-in in the same browser replaces its session, as
	// Appwrite's does: the old credential stops working.
	u, _ := url.Parse(s.URL)
	oldCred := ""
	for _, c := range b.jar.Cookies(u) {
		if c.Name == "a_session_default" {
			oldCred, _ = url.QueryUnescape(c.Value)
		}
	}
	state = beginState(t, get(b, begin))
	if res := get(b, "/v1/account/sessions/oauth2/callback/idp/default?state="+url.QueryEscape(state)+"&code=session-subject"); res.Header.Get("Location") != success {
		t.Fatalf("second sign-in: %d %s", res.StatusCode, res.Header.Get("Location"))
	}
	wantError(t, s.do(req{method: "GET", path: "/v1/account", headers: map[string]string{"X-Appwrite-Session": oldCred}}), 401, "general_unauthorized_scope")
	if get(b, "/v1/account").StatusCode != 200 {
		t.Fatal("the new session does not work")
	}

	// Login CSRF: the attacker begins a flow, and opens its callback in
	// the victim's browser. No session is set there; it goes to failure.
	attacker, victim := newBrowser(), newBrowser()
	state = beginState(t, get(attacker, begin))
	res = get(victim, "/v1/account/sessions/oauth2/callback/idp/default?state="+url.QueryEscape(state)+"&code=attacker")
	loc, _ := url.Parse(res.Header.Get("Location"))
	if loc.Path != "/auth/fail" || !strings.Contains(loc.Query().Get("error"), "another browser") || len(res.Header.Values("Set-Cookie")) != 1 {
		t.Fatalf("callback in another browser: %d %s %v", res.StatusCode, loc, res.Header.Values("Set-Cookie"))
	}
	if get(victim, "/v1/account").StatusCode != 401 {
		t.Fatal("the victim's browser was signed in")
	}

	// A plugin's refusal goes to the failure URL with Appwrite's error.
	state = beginState(t, get(b, begin))
	res = get(b, "/v1/account/sessions/oauth2/callback/idp/default?state="+url.QueryEscape(state))
	loc, _ = url.Parse(res.Header.Get("Location"))
	var e map[string]any
	if loc.Path != "/auth/fail" || json.Unmarshal([]byte(loc.Query().Get("error")), &e) != nil || e["type"] != "general_argument_invalid" {
		t.Fatalf("failure redirect %s", loc)
	}
	for _, c := range res.Header.Values("Set-Cookie") {
		if strings.HasPrefix(c, "a_session") {
			t.Fatalf("a refused sign-in set a session cookie: %s", c)
		}
	}

	// Bad success URLs: to the failure URL when it is good, JSON otherwise;
	// a missing one is refused (Appwrite's default is its console, which
	// this daemon does not have).
	for _, bad := range []string{"", "https://evil.example/auth/ok", app.URL + "/authx", app.URL + "/auth/../admin"} {
		res := get(newBrowser(), "/v1/account/sessions/oauth2/idp?success="+url.QueryEscape(bad)+"&failure="+url.QueryEscape(app.URL+"/auth/fail"))
		loc, _ := url.Parse(res.Header.Get("Location"))
		if res.StatusCode != 301 || loc.Path != "/auth/fail" || !strings.Contains(loc.Query().Get("error"), "project_invalid_success_url") {
			t.Fatalf("bad success URL %q: %d %s", bad, res.StatusCode, loc)
		}
		wantError(t, s.do(req{method: "GET", path: "/v1/account/sessions/oauth2/idp?success=" + url.QueryEscape(bad)}), 400, "project_invalid_success_url")
	}

	// A flow begun while the provider could open sessions, whose provider
	// then delivers out of band (a reload, a plugin's new Describe), is
	// refused at the callback too: the channel is decided again there.
	state = beginState(t, get(b, begin))
	s.d.providerSet().byName["idp"].cfg.Deliver.Via = config.DeliverWebhook
	res = get(b, "/v1/account/sessions/oauth2/callback/idp/default?state="+url.QueryEscape(state)+"&code=session-subject")
	s.d.providerSet().byName["idp"].cfg.Deliver.Via = config.DeliverRedirect
	loc, _ = url.Parse(res.Header.Get("Location"))
	if loc.Path != "/auth/fail" || strings.Contains(strings.Join(res.Header.Values("Set-Cookie"), ";"), "a_session") {
		t.Fatalf("callback after the switch: %d %s %v", res.StatusCode, loc, res.Header.Values("Set-Cookie"))
	}

	// A provider that delivers out of band opens no session in the browser.
	r := s.do(req{method: "GET", path: "/v1/account/sessions/oauth2/hooked?success=" + url.QueryEscape(success)})
	wantError(t, r, 400, "provider_unsupported")

	s.d.Close()
	var created, failed int
	for _, ev := range readAudit(t, auditPath) {
		switch {
		case ev["event"] == "session.created" && ev["provider"] == "idp":
			created++
		case ev["event"] == "oauth2.failed" && ev["reason"] == "binding_cookie_missing":
			failed++
		}
	}
	if created != 2 || failed != 1 {
		t.Fatalf("audit: %d session.created with the provider (want 2), %d oauth2.failed binding_cookie_missing (want 1)", created, failed)
	}
}

// idpAccessToken is the IdP's access token the echo plugin reports.
const idpAccessToken = "idp-access-token-in-the-clear-MARKER"

// wantProviderSession checks the browser b's current session: it carries
// the provider, the identity's subject uid and the IdP's tokens, for its
// owner and for a key holder listing the user's sessions; the bolt file
// holds neither token in plain text; and no log line does.
func wantProviderSession(t *testing.T, s *testServer, b interface {
	Get(string) (*http.Response, error)
}, uid string) {
	t.Helper()
	res, err := b.Get(s.URL + "/v1/account/sessions/current")
	if err != nil {
		t.Fatal(err)
	}
	var sess map[string]any
	err = json.NewDecoder(res.Body).Decode(&sess)
	res.Body.Close()
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("current session: %d %v", res.StatusCode, err)
	}
	want := map[string]any{"provider": "idp", "providerUid": uid, "providerAccessToken": idpAccessToken,
		"providerRefreshToken": "refresh-" + idpAccessToken, "providerAccessTokenExpiry": "2030-01-02T03:04:05.000+00:00"}
	for k, v := range want {
		if sess[k] != v {
			t.Errorf("the owner's session model: %s = %v, want %v", k, sess[k], v)
		}
	}
	list := s.do(req{method: "GET", path: "/v1/users/" + sess["userId"].(string) + "/sessions", key: true}).json(t)
	var found bool
	for _, m := range list["sessions"].([]any) {
		m := m.(map[string]any)
		found = found || (m["$id"] == sess["$id"] && m["providerAccessToken"] == idpAccessToken && m["providerUid"] == uid)
	}
	if !found {
		t.Errorf("the key holder's list lacks the session with its provider tokens: %v", list)
	}
	err = filepath.WalkDir(s.d.cfg.Data, func(path string, e os.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		raw, err := os.ReadFile(path)
		if err == nil && bytes.Contains(raw, []byte(idpAccessToken)) {
			t.Errorf("%s holds the IdP's access token in plain text", filepath.Base(path))
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// wantRefresh is Appwrite's updateSession on the browser b's session: the
// plugin trades the refresh token for a new access token, which the model
// shows and the store keeps (sealed); the refresh token the IdP did not
// replace stays; the expiry is pushed out. A session without IdP tokens is answered as it is, and
// another user's session is not found.
func wantRefresh(t *testing.T, s *testServer, b interface {
	Do(*http.Request) (*http.Response, error)
}) {
	t.Helper()
	patch := func(path string) (int, map[string]any) {
		t.Helper()
		rq, _ := http.NewRequest("PATCH", s.URL+path, nil)
		rq.Header.Set("X-Appwrite-Project", "default")
		res, err := b.Do(rq)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var m map[string]any
		_ = json.NewDecoder(res.Body).Decode(&m)
		return res.StatusCode, m
	}
	get := func() map[string]any {
		t.Helper()
		rq, _ := http.NewRequest("GET", s.URL+"/v1/account/sessions/current", nil)
		res, err := b.Do(rq)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var m map[string]any
		_ = json.NewDecoder(res.Body).Decode(&m)
		return m
	}
	before := get()
	time.Sleep(2 * time.Millisecond) // the model's times have milliseconds
	status, m := patch("/v1/account/sessions/current")
	if e, _ := m["expire"].(string); e <= before["expire"].(string) {
		t.Errorf("updateSession did not push the expiry out: %v, was %v", m["expire"], before["expire"])
	}
	if status != 200 || m["providerAccessToken"] != "refreshed-"+idpAccessToken || m["providerRefreshToken"] != "refresh-"+idpAccessToken ||
		m["providerAccessTokenExpiry"] != "2031-01-02T03:04:05.000+00:00" || m["current"] != true {
		t.Fatalf("updateSession: %d %v", status, m)
	}
	again := get()
	if again["providerAccessToken"] != "refreshed-"+idpAccessToken {
		t.Fatalf("the refreshed token was not kept: %v", again["providerAccessToken"])
	}
	if status, m := patch("/v1/account/sessions/no-such-session"); status != 404 || m["type"] != "user_session_not_found" {
		t.Fatalf("updateSession of an unknown session: %d %v", status, m)
	}
	// A server-made session has no IdP tokens: answered as it is.
	other := s.do(req{method: "POST", path: "/v1/users/" + again["userId"].(string) + "/sessions", key: true}).json(t)
	if status, m := patch("/v1/account/sessions/" + other["$id"].(string)); status != 200 || m["providerAccessToken"] != "" || m["provider"] != "server" {
		t.Fatalf("updateSession of a session without IdP tokens: %d %v", status, m)
	}
}
