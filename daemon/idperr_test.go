package daemon

import (
	"encoding/json"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"github.com/handoffd/handoff/config"
)

// TestIdPRefusedClient: a provider whose IdP refuses handoff's client
// credentials (the plugin answers sdk.ErrMisconfigured, as the oidc plugin
// does for invalid_client) is reported to the operator as that: the
// callback's WARN line and audit event carry reason idp_invalid_client and
// the plugin's message, the failures series counts it, and GET
// /v1/providers shows it to a key holder as lastCallError. The browser
// only learns that the provider is unavailable, and a caller without a
// key sees nothing of it. A direct sign-in refused so answers the same,
// recorded with reason provider_misconfigured. Before, ErrMisconfigured did
// not exist: it was "provider_unavailable" everywhere, with nothing naming
// the credentials.
func TestIdPRefusedClient(t *testing.T) {
	app := httptest.NewServer(http.NotFoundHandler())
	defer app.Close()
	auditPath := filepath.Join(t.TempDir(), "audit.jsonl")
	logs := &lockedBuffer{}
	s := newTestServer(t, func(c *config.Config) {
		c.Providers = []config.Provider{
			echoProvider(t, "idp", func(p *config.Provider) { p.Deliver.Via = "redirect" }),
			echoProvider(t, "direct", nil),
		}
		c.Redirect.Allow = []string{app.URL + "/auth"}
		c.Audit.Sink, c.Audit.Path = config.AuditFile, auditPath
	}, withLogs(logs))

	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	get := func(path string) *http.Response {
		t.Helper()
		res, err := browser.Get(s.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res
	}
	failure := app.URL + "/auth/fail"
	begin := "/v1/account/tokens/oauth2/idp?project=default&success=" + url.QueryEscape(app.URL+"/auth/ok") + "&failure=" + url.QueryEscape(failure)
	state := beginState(t, get(begin))
	res := get("/v1/account/sessions/oauth2/callback/idp/default?code=misconfigured&state=" + url.QueryEscape(state))
	loc, _ := url.Parse(res.Header.Get("Location"))
	if res.StatusCode != http.StatusMovedPermanently || !strings.HasPrefix(loc.String(), failure+"?") {
		t.Fatalf("the callback answered %d to %q, want the failure URL", res.StatusCode, loc)
	}
	var ae map[string]any
	if err := json.Unmarshal([]byte(loc.Query().Get("error")), &ae); err != nil {
		t.Fatal(err)
	}
	if ae["type"] != "provider_unavailable" || ae["code"] != float64(503) || strings.Contains(loc.String(), "client") {
		t.Fatalf("the browser was told %v: want the generic provider_unavailable, nothing about the client", ae)
	}

	// A direct sign-in whose provider is refused its config answers the
	// same 503, with reason provider_misconfigured.
	direct := s.verify("direct", map[string]any{"op": "error", "code": "misconfigured", "message": "siteverify refused the secret key"}, nil)
	wantError(t, direct, 503, "provider_unavailable")
	if strings.Contains(string(direct.body), "secret key") {
		t.Fatalf("the client was told %s", direct.body)
	}

	// The operator's view: the key holder's provider list.
	var list struct {
		Providers []providerInfo `json:"providers"`
	}
	r := s.do(req{method: "GET", path: "/v1/providers", key: true})
	if err := json.Unmarshal(r.body, &list); err != nil || len(list.Providers) != 2 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	want := map[string]string{"idp": "refused the client credentials (invalid_client)", "direct": "siteverify refused the secret key"}
	for _, p := range list.Providers {
		if p.Health != "up" || p.LastCallError == nil || !strings.Contains(*p.LastCallError, want[p.Name]) || p.LastCallErrorAt == nil {
			t.Fatalf("a key holder sees %s", r.body)
		}
	}
	r = s.do(req{method: "GET", path: "/v1/providers"})
	if r.status != 200 || strings.Contains(string(r.body), "invalid_client") || strings.Contains(string(r.body), "lastCallError") {
		t.Fatalf("a guest sees %s", r.body)
	}
	mfs := scrape(t, s)
	if got, _ := metricValue(mfs, "handoff_oauth2_failures_total", map[string]string{"provider": "idp", "reason": "idp_invalid_client"}); got != 1 {
		t.Errorf("handoff_oauth2_failures_total{idp,idp_invalid_client} = %v", got)
	}

	s.d.Close()
	found := false
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, "level=WARN msg=oauth2.failed request_id="+res.Header.Get("X-Request-Id")+" provider=idp") &&
			strings.Contains(l, "reason=idp_invalid_client") && strings.Contains(l, "(invalid_client)") {
			found = true
		}
	}
	if !found {
		t.Errorf("no oauth2.failed WARN line with reason idp_invalid_client and the cause in:\n%s", logs.String())
	}
	if !strings.Contains(logs.String(), "level=WARN msg=verify.failed request_id="+direct.header.Get("X-Request-Id")+" provider=direct user_id=\"\" reason=provider_misconfigured") {
		t.Errorf("no verify.failed WARN line with reason provider_misconfigured in:\n%s", logs.String())
	}
	n := 0
	for _, ev := range readAudit(t, auditPath) {
		if ev["event"] == "oauth2.failed" {
			n++
			if ev["reason"] != "idp_invalid_client" || ev["provider"] != "idp" || ev["request_id"] != res.Header.Get("X-Request-Id") {
				t.Errorf("audit event %v", ev)
			}
		}
	}
	if n != 1 {
		t.Errorf("%d oauth2.failed audit events, want 1", n)
	}
}
