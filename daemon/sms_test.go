package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/handoffd/handoff/config"
)

const (
	twilioSID   = "AC0123456789abcdef0123456789abcdef"
	twilioToken = "tw-auth-token-not-a-secret-elsewhere"
	twilioFrom  = "+15005550006"
)

// fakeTwilio is a loopback Twilio Messages API: it checks the path, the
// basic auth and the form fields as Twilio does, and answers 201 with a
// sid, or Twilio's 400 error JSON for a number it is told to refuse.
type fakeTwilio struct {
	*httptest.Server
	mu     sync.Mutex
	texts  []url.Values
	refuse string          // a To answered with error 21211
	sent   chan url.Values // when set, every text accepted goes here too
	t      *testing.T
}

func newFakeTwilio(t *testing.T) *fakeTwilio {
	f := &fakeTwilio{t: t}
	f.Server = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeTwilio) serve(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	user, pass, ok := r.BasicAuth()
	if r.Method != "POST" || r.URL.Path != "/2010-04-01/Accounts/"+twilioSID+"/Messages.json" {
		f.t.Errorf("twilio: %s %s", r.Method, r.URL.Path)
		w.WriteHeader(404)
		return
	}
	if !ok || user != twilioSID || pass != twilioToken {
		w.WriteHeader(401)
		fmt.Fprint(w, `{"code":20003,"message":"Authenticate","more_info":"https://www.twilio.com/docs/errors/20003","status":401}`)
		return
	}
	if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct != "application/x-www-form-urlencoded" || r.ParseForm() != nil {
		f.t.Errorf("twilio: content type %q", r.Header.Get("Content-Type"))
		w.WriteHeader(400)
		return
	}
	form := r.PostForm
	if form.Get("To") == "" || form.Get("Body") == "" || (form.Get("From") == "") == (form.Get("MessagingServiceSid") == "") {
		f.t.Errorf("twilio: form %v", form)
		w.WriteHeader(400)
		fmt.Fprint(w, `{"code":21604,"message":"A 'To' phone number is required.","status":400}`)
		return
	}
	if form.Get("To") == f.refuse {
		w.WriteHeader(400)
		fmt.Fprint(w, `{"code":21211,"message":"The 'To' number is not a valid phone number.","more_info":"https://www.twilio.com/docs/errors/21211","status":400}`)
		return
	}
	f.mu.Lock()
	f.texts = append(f.texts, form)
	f.mu.Unlock()
	if f.sent != nil {
		f.sent <- form
	}
	w.WriteHeader(201)
	fmt.Fprint(w, `{"sid":"SM0123456789abcdef0123456789abcdef","status":"queued"}`)
}

// last is the last text's form, or nil.
func (f *fakeTwilio) last() url.Values {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.texts) == 0 {
		return nil
	}
	return f.texts[len(f.texts)-1]
}

var smsCode = regexp.MustCompile(`code is (\S+)`)

// smsUser creates a user with a phone and links it to provider name.
func (s *testServer) smsUser(id, phone, name string) {
	s.t.Helper()
	body := map[string]any{"userId": id, "email": id + "@example.com"}
	if phone != "" {
		body["phone"] = phone
	}
	if r := s.do(req{method: "POST", path: "/v1/users", key: true, body: body}); r.status != 201 {
		s.t.Fatalf("create user: %d %s", r.status, r.body)
	}
	if r := s.do(req{method: "POST", path: "/v1/users/" + id + "/providers/" + name, key: true, body: map[string]any{}}); r.status != 201 {
		s.t.Fatalf("enroll: %d %s", r.status, r.body)
	}
}

func twilioDeliver(base string) config.Deliver {
	return config.Deliver{Via: config.DeliverSMS, SMS: config.SMS{Provider: config.SMSTwilio, AccountSID: twilioSID, AuthToken: twilioToken, From: twilioFrom, BaseURL: base}}
}

// TestSMSTwilio texts the code through the Twilio fake, which checks the
// form and the basic auth, and the texted code signs the user in. A
// number Twilio refuses answers 503 with its error code logged, and
// neither the code nor the auth token is in the log.
func TestSMSTwilio(t *testing.T) {
	tw := newFakeTwilio(t)
	logs := &lockedBuffer{}
	s := newTestServer(t, func(c *config.Config) {
		c.Providers = []config.Provider{echoProvider(t, "texted", func(p *config.Provider) {
			p.Users.Create = false
			p.Deliver = twilioDeliver(tw.URL)
		})}
	}, withLogs(logs))
	s.smsUser("phoneuser", "+14155550123", "texted")
	s.smsUser("badnumber", "+14155550999", "texted")
	tw.refuse = "+14155550999"

	r := s.verify("texted", map[string]any{"subject": "phoneuser"}, nil)
	if r.status != 201 || r.json(t)["secret"] != "" {
		t.Fatalf("verify: %d %s", r.status, r.body)
	}
	form := tw.last()
	m := smsCode.FindStringSubmatch(form.Get("Body"))
	if form.Get("To") != "+14155550123" || form.Get("From") != twilioFrom || m == nil {
		t.Fatalf("texted %v", form)
	}
	if strings.Contains(string(r.body), m[1]) {
		t.Fatalf("the texted code is in the answer: %s", r.body)
	}
	s.exchangeFor("phoneuser", m[1])

	wantError(t, s.verify("texted", map[string]any{"subject": "badnumber"}, nil), 503, "provider_delivery_failed")
	if !strings.Contains(logs.String(), "twilio_code=21211") {
		t.Fatalf("the Twilio error code is not logged:\n%s", logs)
	}
	if strings.Contains(logs.String(), twilioToken) || strings.Contains(logs.String(), m[1]) {
		t.Fatalf("a secret reached the log:\n%s", logs)
	}
	mfs := scrape(t, s)
	for result, want := range map[string]float64{"ok": 1, "failed": 1} {
		if got, _ := metricValue(mfs, "handoff_deliveries_total", map[string]string{"channel": "sms", "result": result}); got != want {
			t.Errorf("handoff_deliveries_total{channel=sms,result=%s} = %v, want %v", result, got, want)
		}
	}
}

// TestSMSTwilioMessagingService sends with a messaging service in place
// of a From number, and a wrong auth token fails the send.
func TestSMSTwilioMessagingService(t *testing.T) {
	tw := newFakeTwilio(t)
	s := newTestServer(t, func(c *config.Config) {
		c.Providers = []config.Provider{
			echoProvider(t, "svc", func(p *config.Provider) {
				p.Deliver = twilioDeliver(tw.URL)
				p.Deliver.SMS.From, p.Deliver.SMS.MessagingServiceSID = "", "MG0123456789abcdef0123456789abcdef"
			}),
			echoProvider(t, "wrongauth", func(p *config.Provider) {
				p.Deliver = twilioDeliver(tw.URL)
				p.Deliver.SMS.AuthToken = "wrong"
			}),
		}
	})
	s.smsUser("u1", "+447700900123", "svc")
	s.do(req{method: "POST", path: "/v1/users/u1/providers/wrongauth", key: true, body: map[string]any{}})
	if r := s.verify("svc", map[string]any{"subject": "u1"}, nil); r.status != 201 {
		t.Fatalf("verify: %d %s", r.status, r.body)
	}
	if f := tw.last(); f.Get("MessagingServiceSid") != "MG0123456789abcdef0123456789abcdef" || f.Has("From") {
		t.Fatalf("texted %v", f)
	}
	wantError(t, s.verify("wrongauth", map[string]any{"subject": "u1"}, nil), 503, "provider_delivery_failed")
}

// TestSMSHTTP posts the text to the app's gateway, signed per Standard
// Webhooks; the gateway checks the signature, and the code in the body
// signs the user in. A gateway that redirects is not followed.
func TestSMSHTTP(t *testing.T) {
	const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	verifier, _ := standardwebhooks.NewWebhook(secret)
	texts := make(chan map[string]any, 2)
	followed := false
	elsewhere := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { followed = true }))
	defer elsewhere.Close()
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/redirect" {
			http.Redirect(w, r, elsewhere.URL, http.StatusTemporaryRedirect)
			return
		}
		body, _ := io.ReadAll(r.Body)
		var env struct {
			Type string         `json:"type"`
			Data map[string]any `json:"data"`
		}
		if err := verifier.Verify(body, r.Header); err != nil || json.Unmarshal(body, &env) != nil || env.Type != "sms.send" {
			t.Errorf("sms sink: %v %s", err, body)
			w.WriteHeader(400)
			return
		}
		texts <- env.Data
		w.WriteHeader(204)
	}))
	defer sink.Close()
	gateway := func(url string) config.Deliver {
		return config.Deliver{Via: config.DeliverSMS, SMS: config.SMS{Provider: config.SMSHTTP, URL: url, Secret: secret, Template: "Code {{.Secret}} for {{.UserID}}"}}
	}
	s := newTestServer(t, func(c *config.Config) {
		c.Providers = []config.Provider{
			echoProvider(t, "gw", func(p *config.Provider) { p.Deliver = gateway(sink.URL + "/sms") }),
			echoProvider(t, "gwredirect", func(p *config.Provider) { p.Deliver = gateway(sink.URL + "/redirect") }),
		}
	})
	s.smsUser("u1", "+4915112345678", "gw")
	if r := s.verify("gw", map[string]any{"subject": "u1"}, nil); r.status != 201 {
		t.Fatalf("verify: %d %s", r.status, r.body)
	}
	d := <-texts
	body, _ := d["body"].(string)
	if d["to"] != "+4915112345678" || d["userId"] != "u1" || !strings.HasPrefix(body, "Code ") || !strings.HasSuffix(body, " for u1") {
		t.Fatalf("text %v", d)
	}
	s.exchangeFor("u1", strings.Fields(body)[1])

	s.do(req{method: "POST", path: "/v1/users/u1/providers/gwredirect", key: true, body: map[string]any{}})
	wantError(t, s.verify("gwredirect", map[string]any{"subject": "u1"}, nil), 503, "provider_delivery_failed")
	if followed {
		t.Fatal("the signed text followed a redirect")
	}
}

// TestSMSPerNumber floods one phone: the 6th text in an hour is refused
// 429 before anything is minted or sent, while another number is
// unaffected. Each attempt comes from a new client address, so only the
// per-number count stops it.
func TestSMSPerNumber(t *testing.T) {
	tw := newFakeTwilio(t)
	s := newTestServer(t, smsFloodConfig(t, tw))
	floodNumber(t, tw, s, s)
}

// TestSMSPerNumberReplicas floods one phone through two daemons on one
// PostgreSQL store, alternating: the count is the store's, so the 6th
// text is refused whichever replica is asked.
func TestSMSPerNumberReplicas(t *testing.T) {
	tw := newFakeTwilio(t)
	a, _, notice := newPostgresServer(t, false, smsFloodConfig(t, tw))
	if a.key = keyRE.FindString(notice.String()); a.key == "" {
		t.Fatalf("no bootstrap key in %q", notice)
	}
	d, err := New(context.Background(), Options{Config: a.d.cfg, OpenStore: testOpenStore, Notice: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(d.Handler())
	t.Cleanup(func() {
		srv.Close()
		d.Close()
	})
	floodNumber(t, tw, a, &testServer{Server: srv, d: d, t: t})
}

func smsFloodConfig(t *testing.T, tw *fakeTwilio) func(*config.Config) {
	return func(c *config.Config) {
		c.HTTP.TrustedProxies = []string{"127.0.0.1/32"} // X-Forwarded-For counts
		c.Providers = []config.Provider{echoProvider(t, "texted", func(p *config.Provider) { p.Deliver = twilioDeliver(tw.URL) })}
	}
}

// floodNumber sends six texts to one number, alternating between a and b,
// then one to another number.
func floodNumber(t *testing.T, tw *fakeTwilio, a, b *testServer) {
	a.smsUser("victim", "+14155550100", "texted")
	a.smsUser("other", "+14155550200", "texted")
	for i := 1; i <= 6; i++ {
		s := a
		if i%2 == 0 {
			s = b
		}
		r := s.verify("texted", map[string]any{"subject": "victim"}, map[string]string{"X-Forwarded-For": fmt.Sprintf("203.0.113.%d", i)})
		if i <= 5 && r.status != 201 {
			t.Fatalf("text %d: %d %s", i, r.status, r.body)
		}
		if i == 6 {
			wantError(t, r, 429, "general_rate_limit_exceeded")
		}
	}
	tw.mu.Lock()
	sent := len(tw.texts)
	tw.mu.Unlock()
	if sent != 5 {
		t.Fatalf("%d texts reached the phone, want 5", sent)
	}
	if r := b.verify("texted", map[string]any{"subject": "other"}, nil); r.status != 201 {
		t.Fatalf("another number: %d %s", r.status, r.body)
	}
	limited, servers := 0.0, []*testServer{a}
	if b != a {
		servers = append(servers, b)
	}
	for _, s := range servers {
		n, _ := metricValue(scrape(t, s), "handoff_rate_limited_total", map[string]string{"route": "POST /v1/providers/{name}/verify"})
		limited += n
	}
	if limited != 1 {
		t.Fatalf("handoff_rate_limited_total{route=verify} = %v, want 1", limited)
	}
}

// TestEmailHTMLEscapes renders the default HTML part with a user id that
// is markup, as a hostile value would be: html/template escapes it, and
// the link's & is &amp; in the attribute, so a mail client opens the link
// as sent.
func TestEmailHTMLEscapes(t *testing.T) {
	e, err := newEmailSender(config.Email{Link: "https://app.example.com/auth/magic"})
	if err != nil || e.html == nil {
		t.Fatalf("%v %v", e, err)
	}
	msg := delivery{UserID: `"><script>alert(1)</script>`, Secret: "s3cr3t", Expire: "soon"}
	var html strings.Builder
	if err := e.html.Execute(&html, emailData{delivery: msg, Link: magicLink(e.cfg.Link, msg)}); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(html.String(), "<script>") || !strings.Contains(html.String(), `href="https://app.example.com/auth/magic?secret=s3cr3t&amp;userId=`) {
		t.Fatalf("html part:\n%s", html.String())
	}
}

// TestSMSNoPhone: a user without a phone, or whose number is not E.164
// (Appwrite accepts "+1234" on POST /v1/users; no SMS network does), gets
// 400 user_phone_not_found, and no text goes out.
func TestSMSNoPhone(t *testing.T) {
	tw := newFakeTwilio(t)
	s := newTestServer(t, func(c *config.Config) {
		c.Providers = []config.Provider{echoProvider(t, "texted", func(p *config.Provider) { p.Deliver = twilioDeliver(tw.URL) })}
	})
	s.smsUser("nophone", "", "texted")
	s.smsUser("short", "+1234", "texted")
	for _, u := range []string{"nophone", "short"} {
		wantError(t, s.verify("texted", map[string]any{"subject": u}, nil), 400, "user_phone_not_found")
	}
	if tw.last() != nil {
		t.Fatalf("texted %v", tw.last())
	}
}

// TestMagicURLEmail mails a magic URL: the mail is multipart/alternative
// with a text and an HTML part, both carrying the link on the allowed
// prefix with userId and a 64-character secret, and the app exchanges it
// as Appwrite's updateMagicURLSession does (PUT
// /v1/account/sessions/magic-url), then reads GET /v1/account.
func TestMagicURLEmail(t *testing.T) {
	backend := &smtpBackend{msgs: make(chan string, 4)}
	srv := smtp.NewServer(backend)
	srv.Domain, srv.AllowInsecureAuth = "localhost", true
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Close()
	const link = "https://app.example.com/auth/magic?lang=en"
	s := newTestServer(t, func(c *config.Config) {
		c.Redirect.Allow = []string{"https://app.example.com/auth"}
		c.Providers = []config.Provider{echoProvider(t, "magic", func(p *config.Provider) {
			p.Users.Create = false
			p.Deliver = config.Deliver{Via: config.DeliverEmail, Email: config.Email{SMTP: ln.Addr().String(), TLS: "none", From: "login@example.com", Subject: "Sign in", Link: link}}
		})}
	})
	s.createUser("mailuser", "mail.user@example.com")
	s.do(req{method: "POST", path: "/v1/users/mailuser/providers/magic", key: true, body: map[string]any{}})
	if r := s.verify("magic", map[string]any{"subject": "mailuser"}, nil); r.status != 201 || r.json(t)["secret"] != "" {
		t.Fatalf("verify: %d %s", r.status, r.body)
	}
	var raw string
	select {
	case raw = <-backend.msgs:
	case <-time.After(10 * time.Second):
		t.Fatal("no mail")
	}
	parts := mailParts(t, raw[strings.Index(raw, "\n")+1:])
	var links []*url.URL
	for _, typ := range []string{"text/plain", "text/html"} {
		body, ok := parts[typ]
		if !ok {
			t.Fatalf("no %s part in:\n%s", typ, raw)
		}
		if typ == "text/html" {
			body = strings.ReplaceAll(body, "&amp;", "&")
		}
		found := regexp.MustCompile(`https://app\.example\.com/auth/magic\?[^\s"<]+`).FindString(body)
		u, err := url.Parse(found)
		if err != nil || found == "" {
			t.Fatalf("no link in the %s part:\n%s", typ, body)
		}
		links = append(links, u)
	}
	q := links[0].Query()
	if *links[0] != *links[1] || q.Get("userId") != "mailuser" || len(q.Get("secret")) != 64 || q.Get("lang") != "en" ||
		!(config.Redirect{Allow: []string{"https://app.example.com/auth"}}).Allows(links[0].String()) {
		t.Fatalf("links %v %v", links[0], links[1])
	}
	r := s.do(req{method: "PUT", path: "/v1/account/sessions/magic-url", body: map[string]any{"userId": q.Get("userId"), "secret": q.Get("secret")}})
	if r.status != 201 {
		t.Fatalf("magic-url exchange: %d %s", r.status, r.body)
	}
	var cookie string
	for _, c := range (&http.Response{Header: r.header}).Cookies() {
		if c.Name == "a_session_default" {
			cookie = c.Name + "=" + c.Value
		}
	}
	acc := s.do(req{method: "GET", path: "/v1/account", headers: map[string]string{"Cookie": cookie}})
	if acc.status != 200 || acc.json(t)["$id"] != "mailuser" {
		t.Fatalf("account: %d %s", acc.status, acc.body)
	}
}

// mailParts reads a multipart/alternative mail into its parts' decoded
// bodies by content type.
func mailParts(t *testing.T, raw string) map[string]string {
	t.Helper()
	msg, err := mail.ReadMessage(strings.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	typ, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil || typ != "multipart/alternative" {
		t.Fatalf("content type %q: %v", msg.Header.Get("Content-Type"), err)
	}
	out := map[string]string{}
	mr := multipart.NewReader(msg.Body, params["boundary"])
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(p) // NextPart decodes quoted-printable
		ct, _, _ := mime.ParseMediaType(p.Header.Get("Content-Type"))
		out[ct] = string(body)
	}
}
