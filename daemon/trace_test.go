package daemon

import (
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/handoffd/handoff/config"
)

// TestSignInFailureTrace: refusals that used to leave no trace, or a
// trace without its cause, each leave one WARN line with the reason and
// cause, and an audit event: a mail server that refuses the connection
// (the SMTP cause was dropped), a webhook that answers 500, a webhook
// whose every background retry failed after the client got 201, and
// OAuth2 callbacks refused for a missing binding cookie or an IdP error.
func TestSignInFailureTrace(t *testing.T) {
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.Addr().String()
	dead.Close() // nothing listens here: connection refused
	broken := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(500) }))
	defer broken.Close()
	app := httptest.NewServer(http.NotFoundHandler())
	defer app.Close()
	const whsec = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	auditPath := filepath.Join(t.TempDir(), "audit.jsonl")
	logs := &lockedBuffer{}
	s := newTestServer(t, func(c *config.Config) {
		c.Providers = []config.Provider{
			echoProvider(t, "mailed", func(p *config.Provider) {
				p.Deliver = config.Deliver{Via: "email", Email: config.Email{SMTP: deadAddr, TLS: "none", From: "login@example.com", Subject: "code"}}
			}),
			echoProvider(t, "hook1", func(p *config.Provider) {
				p.Deliver = config.Deliver{Via: "webhook", Webhook: config.Webhook{URL: broken.URL, Secret: whsec, Attempts: 1, Timeout: time.Second}}
			}),
			echoProvider(t, "hook2", func(p *config.Provider) {
				p.Deliver = config.Deliver{Via: "webhook", Webhook: config.Webhook{URL: broken.URL, Secret: whsec, Attempts: 2, Timeout: time.Second}}
			}),
			echoProvider(t, "idp", func(p *config.Provider) { p.Deliver.Via = "redirect" }),
		}
		c.Redirect.Allow = []string{app.URL + "/auth"}
		c.Audit.Sink, c.Audit.Path = config.AuditFile, auditPath
	}, withLogs(logs))

	s.createUser("mailme", "mail.me@example.com")
	if r := s.do(req{method: "POST", path: "/v1/users/mailme/providers/mailed", key: true, body: map[string]any{}}); r.status != 201 {
		t.Fatalf("enroll: %d %s", r.status, r.body)
	}
	mail := s.verify("mailed", map[string]any{"subject": "mailme"}, nil)
	wantError(t, mail, 503, "provider_delivery_failed")
	hook1 := s.verify("hook1", map[string]any{"subject": "h1"}, nil)
	wantError(t, hook1, 503, "provider_delivery_failed")
	hook2 := s.verify("hook2", map[string]any{"subject": "h2"}, nil)
	if hook2.status != 201 {
		t.Fatalf("hook2: the first attempt failed and the rest go on in the background, want 201: %d %s", hook2.status, hook2.body)
	}
	waitFor(t, func() bool { return strings.Count(logs.String(), "webhook delivery given up") == 2 }) // hook1 on the request, hook2 in the background

	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	get := func(c *http.Client, path string) *http.Response {
		t.Helper()
		res, err := c.Get(s.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res
	}
	begin := "/v1/account/tokens/oauth2/idp?project=default&success=" + url.QueryEscape(app.URL+"/auth/ok") + "&failure=" + url.QueryEscape(app.URL+"/auth/fail")
	other := &http.Client{CheckRedirect: browser.CheckRedirect}
	state := beginState(t, get(browser, begin))
	if loc := get(other, "/v1/account/sessions/oauth2/callback/idp/default?code=x&state="+url.QueryEscape(state)).Header.Get("Location"); !strings.HasPrefix(loc, app.URL+"/auth/fail") {
		t.Fatalf("callback without the binding cookie went to %s", loc)
	}
	state = beginState(t, get(browser, begin))
	if loc := get(browser, "/v1/account/sessions/oauth2/callback/idp/default?error=access_denied&state="+url.QueryEscape(state)).Header.Get("Location"); !strings.HasPrefix(loc, app.URL+"/auth/fail") {
		t.Fatalf("callback with an IdP error went to %s", loc)
	}

	mfs := scrape(t, s)
	for labels, want := range map[[2]string]float64{{"email", "failed"}: 1, {"webhook", "failed"}: 2, {"webhook", "ok"}: 0} {
		if got, _ := metricValue(mfs, "handoff_deliveries_total", map[string]string{"channel": labels[0], "result": labels[1]}); got != want {
			t.Errorf("handoff_deliveries_total%v = %v, want %v", labels, got, want)
		}
	}
	if got, _ := metricValue(mfs, "handoff_oauth2_failures_total", map[string]string{"provider": "idp", "reason": "idp_error"}); got != 1 {
		t.Errorf("handoff_oauth2_failures_total{idp,idp_error} = %v", got)
	}
	s.d.Close()
	out := logs.String()
	for _, c := range []struct{ what, line, cause string }{
		{"smtp refused", "level=WARN msg=verify.failed request_id=" + mail.header.Get("X-Request-Id") + " provider=mailed user_id=mailme reason=delivery_failed", "connection refused"},
		{"webhook 500", "level=WARN msg=verify.failed request_id=" + hook1.header.Get("X-Request-Id") + " provider=hook1", "status 500"},
		{"webhook retries spent", "level=WARN msg=verify.failed request_id=" + hook2.header.Get("X-Request-Id") + " provider=hook2", "status 500"},
		{"no binding cookie", "level=WARN msg=oauth2.failed", "reason=binding_cookie_missing"},
		{"idp error", "level=WARN msg=oauth2.failed", "reason=idp_error"},
	} {
		found := false
		for _, l := range strings.Split(out, "\n") {
			if strings.Contains(l, c.line) && strings.Contains(l, c.cause) {
				found = true
			}
		}
		if !found {
			t.Errorf("%s: no WARN line with %q and %q in:\n%s", c.what, c.line, c.cause, out)
		}
	}
	reasons := map[string]int{}
	for _, ev := range readAudit(t, auditPath) {
		if ev["outcome"] == "failure" {
			reasons[ev["event"].(string)+" "+ev["provider"].(string)+" "+ev["reason"].(string)]++
		}
	}
	for _, want := range []string{
		"verify.failed mailed delivery_failed", "verify.failed hook1 delivery_failed", "verify.failed hook2 delivery_failed",
		"oauth2.failed idp binding_cookie_missing", "oauth2.failed idp idp_error",
	} {
		if reasons[want] != 1 {
			t.Errorf("audit: %d events %q, want 1 (all failures: %v)", reasons[want], want, reasons)
		}
	}
}

// TestProviderEvents: an optional provider that fails its start is recorded as
// provider.down with its state, and a plugin crash as provider.down then
// provider.up once it is back, in the audit log and as WARN lines.
func TestProviderEvents(t *testing.T) {
	auditPath := filepath.Join(t.TempDir(), "audit.jsonl")
	logs := &lockedBuffer{}
	s := newTestServer(t, func(c *config.Config) {
		c.Providers = []config.Provider{
			echoProvider(t, "echo", nil),
			echoProvider(t, "pinned", func(p *config.Provider) { p.Plugin.SHA256 = strings.Repeat("0", 64); p.Optional = true }),
		}
		c.Audit.Sink, c.Audit.Path = config.AuditFile, auditPath
	}, withLogs(logs))
	wantError(t, s.verify("echo", map[string]any{"op": "crash"}, nil), 503, "provider_unavailable")
	waitFor(t, func() bool { return s.verify("echo", map[string]any{"subject": "back"}, nil).status == 201 })
	waitFor(t, func() bool { return strings.Contains(logs.String(), `msg=provider.down request_id="" provider=echo`) })
	time.Sleep(300 * time.Millisecond) // one more poll: provider.up
	s.d.Close()
	var got []string
	for _, ev := range readAudit(t, auditPath) {
		if strings.HasPrefix(ev["event"].(string), "provider.") {
			got = append(got, ev["event"].(string)+" "+ev["provider"].(string)+" "+ev["reason"].(string))
		}
	}
	want := []string{"provider.up echo ", "provider.down pinned restarting", "provider.down echo restarting", "provider.up echo "}
	if len(got) != 4 || got[2] != want[2] && got[2] != "provider.down echo restarted" || got[3] != want[3] ||
		!(got[0] == want[0] && got[1] == want[1] || got[0] == want[1] && got[1] == want[0]) {
		t.Fatalf("provider events %q, want %q", got, want)
	}
	if !strings.Contains(logs.String(), "level=WARN msg=provider.down request_id=\"\" provider=pinned user_id=\"\" reason=restarting") {
		t.Fatalf("no WARN line for the failed provider:\n%s", logs.String())
	}
}

// TestBeginRefusalRedirects: once the browser flow names an allowed
// failure URL, a refusal at its start (a 429, an unknown provider) sends
// the browser there with Appwrite's error parameter, not to a JSON page on
// the API's origin; without an allowed failure URL it stays JSON.
func TestBeginRefusalRedirects(t *testing.T) {
	app := httptest.NewServer(http.NotFoundHandler())
	defer app.Close()
	s := newTestServer(t, func(c *config.Config) {
		c.Providers = []config.Provider{echoProvider(t, "idp", func(p *config.Provider) { p.Deliver.Via = "redirect" })}
		c.Redirect.Allow = []string{app.URL + "/auth"}
		c.Limits.OAuth2 = 1
	})
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	begin := func(provider, failure string) (int, *url.URL) {
		t.Helper()
		res, err := client.Get(s.URL + "/v1/account/tokens/oauth2/" + provider + "?project=default&success=" + url.QueryEscape(app.URL+"/auth/ok") + "&failure=" + url.QueryEscape(failure))
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		loc, _ := url.Parse(res.Header.Get("Location"))
		return res.StatusCode, loc
	}
	if code, loc := begin("idp", app.URL+"/auth/fail"); code != 301 || loc.Query().Get("state") == "" {
		t.Fatalf("first begin: %d %s", code, loc)
	}
	for _, c := range []struct{ provider, typ string }{{"idp", "general_rate_limit_exceeded"}, {"nope", "provider_not_found"}} {
		code, loc := begin(c.provider, app.URL+"/auth/fail")
		if code != 301 || loc.Path != "/auth/fail" || !strings.Contains(loc.Query().Get("error"), `"type":"`+c.typ+`"`) {
			t.Errorf("%s: %d %s, want a redirect to the failure URL with %s", c.provider, code, loc, c.typ)
		}
	}
	if code, _ := begin("idp", "https://evil.example/fail"); code != 429 {
		t.Errorf("a refusal without an allowed failure URL answered %d, want 429 JSON", code)
	}
}
