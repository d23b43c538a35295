package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/handoffd/handoff/config"
	"github.com/handoffd/handoff/providers/sdk"
	"github.com/handoffd/handoff/tokenstore"
)

// envNoIdentity makes the echo plugin report ProvesIdentity false, as a
// captcha does (providers/internal/testverifier.EnvNoIdentity).
const envNoIdentity = "ECHO_NO_IDENTITY"

// TestSecretChannel is the allow-list on its own: every sign-in × mode ×
// proves-identity, plus the unset mode and one the switch does not know.
func TestSecretChannel(t *testing.T) {
	modes := []config.DeliveryMode{config.DeliverResponse, "", config.DeliverRedirect, config.DeliverWebhook, config.DeliverEmail, config.DeliverSMS, "pigeon"}
	want := map[bool]map[signIn][]channel{
		true: {
			directSignIn:   {channelBody, channelBody, channelNone, channelWebhook, channelEmail, channelSMS, channelNone},
			browserSignIn:  {channelLocation, channelLocation, channelLocation, channelWebhook, channelEmail, channelSMS, channelNone},
			browserSession: {channelCookie, channelCookie, channelCookie, channelNone, channelNone, channelNone, channelNone},
		},
		false: {
			directSignIn:   {channelNone, channelNone, channelNone, channelWebhook, channelEmail, channelSMS, channelNone},
			browserSignIn:  {channelNone, channelNone, channelNone, channelWebhook, channelEmail, channelSMS, channelNone},
			browserSession: {channelNone, channelNone, channelNone, channelNone, channelNone, channelNone, channelNone},
		},
	}
	for _, proves := range []bool{true, false} {
		for _, in := range []signIn{directSignIn, browserSignIn, browserSession} {
			for i, mode := range modes {
				if got := secretChannel(in, mode, proves); got != want[proves][in][i] {
					t.Errorf("secretChannel(%v, %q, proves %v) = %v, want %v", in, mode, proves, got, want[proves][in][i])
				}
			}
		}
	}
}

// openEnvelope reads a webhook body as an app's backend does: the
// Standard Webhooks envelope {type, timestamp, data}, nothing else, with
// the delivery as data.
func openEnvelope(body []byte) (delivery, error) {
	var env struct {
		Type      string    `json:"type"`
		Timestamp time.Time `json:"timestamp"`
		Data      *delivery `json:"data"`
	}
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	switch err := dec.Decode(&env); {
	case err != nil:
		return delivery{}, err
	case env.Type != "token.minted" || env.Data == nil:
		return delivery{}, fmt.Errorf("envelope type %q, data %v", env.Type, env.Data)
	case time.Since(env.Timestamp).Abs() > time.Minute:
		return delivery{}, fmt.Errorf("envelope timestamp %v", env.Timestamp)
	}
	return *env.Data, nil
}

// answer is everything an HTTP answer shows its caller.
type answer struct {
	status int
	header http.Header
	body   []byte
}

// leaks reports where in a the secret shows: body, any header (Location,
// Set-Cookie...), raw or URL-encoded.
func (a answer) leaks(secret string) string {
	if secret == "" {
		return ""
	}
	for _, s := range []string{secret, url.QueryEscape(secret)} {
		if strings.Contains(string(a.body), s) {
			return "body"
		}
		for k, vs := range a.header {
			for _, v := range vs {
				if strings.Contains(v, s) {
					return "header " + k
				}
			}
		}
	}
	return ""
}

// matrix is a daemon with one echo provider per mode × proves-identity,
// a user "victim" linked to each, a signed-webhook receiver and an SMTP
// server.
type matrix struct {
	s     *testServer
	app   *httptest.Server
	hooks chan delivery
	mails chan string
	texts chan url.Values
}

var matrixModes = []config.DeliveryMode{config.DeliverResponse, config.DeliverRedirect, config.DeliverWebhook, config.DeliverEmail, config.DeliverSMS}

func matrixName(mode config.DeliveryMode, proves bool) string {
	if proves {
		return string(mode) + "-proves"
	}
	return string(mode) + "-captchalike"
}

func newMatrix(t *testing.T) *matrix {
	const hookSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	m := &matrix{hooks: make(chan delivery, 8)}
	verifier, err := standardwebhooks.NewWebhook(hookSecret)
	if err != nil {
		t.Fatal(err)
	}
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		err := verifier.Verify(body, r.Header)
		d, derr := openEnvelope(body)
		if err != nil || derr != nil {
			t.Errorf("webhook: bad signature or body: %v %v", err, derr)
			w.WriteHeader(400)
			return
		}
		m.hooks <- d
	}))
	t.Cleanup(hook.Close)
	backend := &smtpBackend{msgs: make(chan string, 8)}
	m.mails = backend.msgs
	srv := smtp.NewServer(backend)
	srv.Domain, srv.AllowInsecureAuth = "localhost", true
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	m.app = httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(m.app.Close)
	tw := newFakeTwilio(t)
	m.texts = make(chan url.Values, 8)
	tw.sent = m.texts

	webhook := config.Deliver{Via: config.DeliverWebhook, Webhook: config.Webhook{URL: hook.URL, Secret: hookSecret, Attempts: 1, Timeout: 2 * time.Second}}
	email := config.Deliver{Via: config.DeliverEmail, Email: config.Email{SMTP: ln.Addr().String(), TLS: "none", From: "login@example.com", Subject: "Code", Template: "Code: {{.Secret}}\n"}}
	var ps []config.Provider
	for _, proves := range []bool{true, false} {
		for _, mode := range matrixModes {
			ps = append(ps, echoProvider(t, matrixName(mode, proves), func(p *config.Provider) {
				p.Users.Create = false
				switch mode {
				case config.DeliverEmail:
					p.Deliver = email
				case config.DeliverWebhook:
					p.Deliver = webhook
				case config.DeliverSMS:
					p.Deliver = twilioDeliver(tw.URL)
				default:
					p.Deliver.Via = mode
				}
				if !proves {
					p.Plugin.Env = map[string]string{envNoIdentity: "1"}
					if !mode.OutOfBand() {
						// serve refuses this (TestServeRefusesInBandNonProving);
						// start it as webhook and set the mode afterwards, to
						// attack the request path on its own.
						p.Deliver = webhook
					}
				}
			}))
		}
	}
	m.s = newTestServer(t, func(c *config.Config) {
		c.Providers = ps
		c.Redirect.Allow = []string{m.app.URL + "/auth"}
	})
	for _, mode := range matrixModes {
		m.s.d.providerSet().byName[matrixName(mode, false)].cfg.Deliver.Via = mode
	}
	if r := m.s.do(req{method: "POST", path: "/v1/users", key: true, body: map[string]any{"userId": "victim", "email": "victim@example.com", "phone": "+14155550123"}}); r.status != 201 {
		t.Fatalf("create user: %d %s", r.status, r.body)
	}
	for _, p := range ps {
		if r := m.s.do(req{method: "POST", path: "/v1/users/victim/providers/" + p.Name, key: true, body: map[string]any{}}); r.status != 201 {
			t.Fatalf("enroll %s: %d %s", p.Name, r.status, r.body)
		}
	}
	return m
}

// direct signs in as the victim with POST verify, as an anonymous client.
// The op records in the provider's KV that the verifier ran.
func (m *matrix) direct(t *testing.T, name string) answer {
	r := m.s.do(req{method: "POST", path: "/v1/providers/" + name + "/verify", body: map[string]any{"op": "kvput", "key": "ran", "value": "1", "subject": "victim"}})
	return answer{r.status, r.header, r.body}
}

// browser runs the redirect flow to its callback in one browser (cookies
// kept, redirects not followed), the IdP reporting the victim; begin is
// the answer to its first step when that was refused.
func (m *matrix) browser(t *testing.T, name string) (begin, callback answer) {
	return m.browserAt(t, "/v1/account/tokens/oauth2/", name)
}

// browserAt runs a redirect flow begun at start (createOAuth2Token's or
// createOAuth2Session's route) through its callback.
func (m *matrix) browserAt(t *testing.T, start, name string) (begin, callback answer) {
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	get := func(path string) answer {
		res, err := c.Get(m.s.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		body, _ := io.ReadAll(res.Body)
		return answer{res.StatusCode, res.Header, body}
	}
	begin = get(start + name + "?project=default&success=" + url.QueryEscape(m.app.URL+"/auth/ok") + "&failure=" + url.QueryEscape(m.app.URL+"/auth/fail"))
	loc, _ := url.Parse(begin.header.Get("Location"))
	if begin.status != 301 || loc.Path == "/auth/fail" {
		return begin, answer{}
	}
	callback = get("/v1/account/sessions/oauth2/callback/" + name + "/default?state=" + url.QueryEscape(loc.Query().Get("state")) + "&code=victim")
	return begin, callback
}

// delivered is the secret delivered out of band on ch since the last call,
// or "" when nothing was. A delivery is made before the answer is written
// (the first webhook attempt and the mail are synchronous), so nothing
// later is missed.
func (m *matrix) delivered(t *testing.T, ch channel) string {
	select {
	case d := <-m.hooks:
		if ch != channelWebhook || d.UserID != "victim" {
			t.Fatalf("a webhook delivered %+v", d)
		}
		return d.Secret
	case msg := <-m.mails:
		i := strings.Index(msg, "Code: ")
		if ch != channelEmail || i < 0 || !strings.Contains(msg, "victim@example.com") {
			t.Fatalf("a mail went out:\n%s", msg)
		}
		return strings.TrimSpace(msg[i+6 : i+6+strings.IndexByte(msg[i+6:], '\n')])
	case form := <-m.texts:
		code := smsCode.FindStringSubmatch(form.Get("Body"))
		if ch != channelSMS || code == nil || form.Get("To") != "+14155550123" {
			t.Fatalf("a text went out: %v", form)
		}
		return code[1]
	default:
		return ""
	}
}

// TestDeliveryMatrix signs the victim in through every flow × mode ×
// proves-identity, as an attacker who controls the request but neither the
// victim's mailbox nor the app's backend. The secret shows in an answer
// only where secretChannel allows it (the verify body for response, the
// success URL of the redirect flow for response and redirect, and only
// from a verifier that proves identity); everywhere else it is nowhere in
// the answer's body, headers or Location, and it reaches the signed webhook
// or the mail. Where it may go nowhere, the verifier is not even run.
func TestDeliveryMatrix(t *testing.T) {
	m := newMatrix(t)
	for _, proves := range []bool{true, false} {
		for _, mode := range matrixModes {
			name := matrixName(mode, proves)
			t.Run("direct/"+name, func(t *testing.T) {
				ch := secretChannel(directSignIn, mode, proves)
				a := m.direct(t, name)
				got := m.delivered(t, ch)
				switch ch {
				case channelBody:
					var tok map[string]any
					if a.status != 201 || json.Unmarshal(a.body, &tok) != nil || len(fmt.Sprint(tok["secret"])) != 6 {
						t.Fatalf("%d %s", a.status, a.body)
					}
					m.s.exchangeFor("victim", tok["secret"].(string))
				case channelWebhook, channelEmail, channelSMS:
					if a.status != 201 || !strings.Contains(string(a.body), `"secret":""`) || got == "" {
						t.Fatalf("%d %s; delivered %q", a.status, a.body, got)
					}
					if where := a.leaks(got); where != "" {
						t.Fatalf("the out-of-band secret is in the answer's %s: %s", where, a.body)
					}
					m.s.exchangeFor("victim", got)
				case channelNone:
					if a.status < 400 || strings.Contains(string(a.body), "secret") || got != "" {
						t.Fatalf("a refused sign-in answered %d %s; delivered %q", a.status, a.body, got)
					}
					m.noVerifierRun(t, name)
				default:
					t.Fatalf("channel %v in a direct sign-in", ch)
				}
			})
			t.Run("browser/"+name, func(t *testing.T) {
				ch := secretChannel(browserSignIn, mode, proves)
				begin, a := m.browser(t, name)
				got := m.delivered(t, ch)
				if ch == channelNone {
					// Refused at its start: to the failure URL, with the error.
					loc, _ := url.Parse(begin.header.Get("Location"))
					if begin.status != 301 || loc.Path != "/auth/fail" || !strings.Contains(loc.Query().Get("error"), `"type"`) ||
						strings.Contains(string(begin.body)+loc.String(), "secret") || got != "" {
						t.Fatalf("a refused flow began: %d %s %s; delivered %q", begin.status, loc, begin.body, got)
					}
					m.refusedCallback(t, name, mode)
					return
				}
				loc, err := url.Parse(a.header.Get("Location"))
				if a.status != 301 || err != nil || loc.Path != "/auth/ok" || loc.Query().Get("userId") != "victim" {
					t.Fatalf("callback %d %v %s", a.status, a.header, a.body)
				}
				switch ch {
				case channelLocation:
					got = loc.Query().Get("secret")
					if len(got) != 64 {
						t.Fatalf("no secret in %s", loc)
					}
				case channelWebhook, channelEmail, channelSMS:
					if loc.Query().Has("secret") || got == "" {
						t.Fatalf("callback to %s; delivered %q", loc, got)
					}
					if where := a.leaks(got); where != "" {
						t.Fatalf("the out-of-band secret is in the callback's %s", where)
					}
				default:
					t.Fatalf("channel %v in the redirect flow", ch)
				}
				m.s.exchangeFor("victim", got)
			})
			t.Run("session/"+name, func(t *testing.T) {
				ch := secretChannel(browserSession, mode, proves)
				begin, a := m.browserAt(t, "/v1/account/sessions/oauth2/", name)
				if got := m.delivered(t, ch); got != "" {
					t.Fatalf("a session flow delivered %q out of band", got)
				}
				switch ch {
				case channelNone:
					loc, _ := url.Parse(begin.header.Get("Location"))
					if begin.status != 301 || loc.Path != "/auth/fail" || !strings.Contains(loc.Query().Get("error"), "provider_unsupported") && !strings.Contains(loc.Query().Get("error"), "provider_unavailable") ||
						strings.Contains(strings.Join(begin.header.Values("Set-Cookie"), ";"), "a_session") {
						t.Fatalf("a refused session flow began: %d %s %v", begin.status, loc, begin.header)
					}
				case channelCookie:
					if a.status != 301 || a.header.Get("Location") != m.app.URL+"/auth/ok" {
						t.Fatalf("callback %d to %q, want the success URL with nothing added", a.status, a.header.Get("Location"))
					}
					var cookie string
					for _, c := range a.header.Values("Set-Cookie") {
						if strings.HasPrefix(c, "a_session_default=") {
							cookie, _, _ = strings.Cut(c, ";")
						}
					}
					r := m.s.do(req{method: "GET", path: "/v1/account", headers: map[string]string{"Cookie": cookie}})
					if r.status != 200 || r.json(t)["$id"] != "victim" {
						t.Fatalf("the session cookie %q: %d %s", cookie, r.status, r.body)
					}
				default:
					t.Fatalf("channel %v in the session flow", ch)
				}
			})
		}
	}
}

// noVerifierRun checks that a refused direct sign-in never reached the
// verifier (so it minted nothing).
func (m *matrix) noVerifierRun(t *testing.T, name string) {
	t.Helper()
	if _, err := m.s.d.core.KV("provider/"+name).Get(context.Background(), "ran"); !errors.Is(err, tokenstore.ErrNotFound) {
		t.Fatalf("the verifier of %s ran: %v", name, err)
	}
}

// refusedCallback attacks the callback on its own: a flow begun while the
// provider delivered out of band comes back after its mode became in-band
// (a plugin restarted with another Describe). It goes to the failure URL,
// with no secret and nothing delivered.
func (m *matrix) refusedCallback(t *testing.T, name string, mode config.DeliveryMode) {
	t.Helper()
	p := m.s.d.providerSet().byName[name]
	p.cfg.Deliver.Via = config.DeliverWebhook
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := c.Get(m.s.URL + "/v1/account/tokens/oauth2/" + name + "?project=default&success=" + url.QueryEscape(m.app.URL+"/auth/ok") + "&failure=" + url.QueryEscape(m.app.URL+"/auth/fail"))
	p.cfg.Deliver.Via = mode
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	state := beginState(t, res)
	res, err = c.Get(m.s.URL + "/v1/account/sessions/oauth2/callback/" + name + "/default?state=" + url.QueryEscape(state) + "&code=victim")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	loc, _ := url.Parse(res.Header.Get("Location"))
	if res.StatusCode != 301 || loc.Path != "/auth/fail" || loc.Query().Has("secret") || loc.Query().Has("userId") {
		t.Fatalf("callback of a refused provider: %d %s", res.StatusCode, loc)
	}
	if got := m.delivered(t, channelNone); got != "" {
		t.Fatalf("delivered %q", got)
	}
}

// TestServeRefusesInBandNonProving is the attack of issue 9: a verifier
// that does not prove identity (a captcha: anyone can solve one and name
// the victim) configured to deliver in band. The daemon does not start,
// and says which key and why.
func TestServeRefusesInBandNonProving(t *testing.T) {
	for _, via := range []config.DeliveryMode{config.DeliverRedirect, config.DeliverResponse, ""} {
		t.Run(string(via), func(t *testing.T) {
			cfg := config.Default()
			cfg.Data = t.TempDir()
			cfg.Providers = []config.Provider{
				echoProvider(t, "ok", nil),
				echoProvider(t, "captchalike", func(p *config.Provider) { p.Plugin.Env = map[string]string{envNoIdentity: "1"} }),
			}
			cfg.Providers[1].Deliver.Via = via
			d, err := New(context.Background(), Options{Config: cfg, OpenStore: testOpenStore})
			if err == nil {
				d.Close()
				t.Fatal("the daemon started")
			}
			var ps config.Problems
			if !errors.As(err, &ps) || len(ps) != 1 || ps[0].Key != "providers[1].deliver.via" || !strings.Contains(ps[0].Message, "does not prove identity") {
				t.Fatalf("error %v", err)
			}
		})
	}
}

// captchaLike is a built-in kind that does not prove identity, for
// CheckConfig, which asks the built-ins' factories in process.
type captchaLike struct{}

func (captchaLike) Describe(context.Context) (sdk.Info, error) {
	return sdk.Info{Name: "captchalike", Flows: []string{sdk.FlowDirect}}, nil
}
func (captchaLike) Configure(context.Context, json.RawMessage, sdk.Host) error { return nil }
func (captchaLike) Verify(context.Context, sdk.Request) (sdk.Identity, error) {
	return sdk.Identity{}, sdk.ErrInvalidCredentials
}

// TestCheckConfigBuiltins: `handoff config check` (and New, before
// starting anything) refuses a built-in kind that does not prove identity
// with an in-band delivery, from the kind's own Describe.
func TestCheckConfigBuiltins(t *testing.T) {
	builtins := map[string]sdk.Factory{"captchalike": func() sdk.Verifier { return captchaLike{} }}
	cfg := config.Default()
	webhook := config.Webhook{URL: "https://backend.example.com/hook", Secret: "whsec_c2VjcmV0", Timeout: time.Second, Attempts: 1}
	cfg.Providers = []config.Provider{
		config.Provider{Name: "a", Kind: "captchalike", Deliver: config.Deliver{Via: config.DeliverWebhook, Webhook: webhook}}.WithDefaults(),
		config.Provider{Name: "b", Kind: "captchalike", Deliver: config.Deliver{Via: config.DeliverRedirect}}.WithDefaults(),
		config.Provider{Name: "c", Kind: "captchalike"}.WithDefaults(),
		config.Provider{Name: "d", Kind: "unknown"}.WithDefaults(),
	}
	cfg.Tokens.Length = 1 // and Validate's own problems come too
	err := CheckConfig(context.Background(), cfg, builtins)
	var ps config.Problems
	if !errors.As(err, &ps) {
		t.Fatalf("error %v", err)
	}
	keys := map[string]string{}
	for _, p := range ps {
		keys[p.Key] = p.Message
	}
	if len(ps) != 3 || keys["tokens.length"] == "" || !strings.Contains(keys["providers[1].deliver.via"], `got "redirect"`) ||
		!strings.Contains(keys["providers[2].deliver.via"], `got "response"`) || !strings.Contains(keys["providers[2].deliver.via"], "captchalike") {
		t.Fatalf("problems:\n%v", err)
	}
}

// TestWebhookNeverFollowsRedirects: an app endpoint that answers 307
// (moved, or taken over) must not make the daemon re-post the signed
// secret where it points. A 3xx is a failed attempt, retried at the same
// URL and logged with its status, never with the secret.
func TestWebhookNeverFollowsRedirects(t *testing.T) {
	var elsewhere atomic.Int32
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { elsewhere.Add(1) }))
	defer other.Close()
	secrets := make(chan string, 4)
	moved := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		d, _ := openEnvelope(body)
		secrets <- d.Secret
		http.Redirect(w, r, other.URL+"/steal", http.StatusTemporaryRedirect)
	}))
	defer moved.Close()
	logs := &lockedBuffer{}
	s := newTestServer(t, func(c *config.Config) {
		c.Providers = []config.Provider{echoProvider(t, "hooked", func(p *config.Provider) {
			p.Deliver = config.Deliver{Via: config.DeliverWebhook, Webhook: config.Webhook{URL: moved.URL, Secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", Attempts: 2, Timeout: time.Second}}
		})}
	}, withLogs(logs))
	r := s.verify("hooked", map[string]any{"subject": "s1"}, nil)
	if r.status != 201 || r.json(t)["secret"] != "" {
		t.Fatalf("verify: %d %s", r.status, r.body)
	}
	var secret string
	for i := 0; i < 2; i++ { // the first attempt and its retry
		select {
		case secret = <-secrets:
		case <-time.After(10 * time.Second):
			t.Fatalf("attempt %d never came", i+1)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for strings.Count(logs.String(), "webhook attempt failed") < 2 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	out := logs.String()
	if n := elsewhere.Load(); n != 0 {
		t.Fatalf("the redirect target got %d posts", n)
	}
	if strings.Count(out, "webhook attempt failed") != 2 || !strings.Contains(out, "status 307") {
		t.Fatalf("logs:\n%s", out)
	}
	if secret == "" || strings.Contains(out, secret) {
		t.Fatalf("secret %q in logs:\n%s", secret, out)
	}
}

// TestNonUTF8RequestFacts is the anonymous 500 of issue 9: a User-Agent
// with the byte 0xff (and a callback query with %ff) sent through a real
// plugin process. The sign-in goes on as normal.
func TestNonUTF8RequestFacts(t *testing.T) {
	app := httptest.NewServer(http.NotFoundHandler())
	defer app.Close()
	s := newTestServer(t, func(c *config.Config) {
		c.Providers = []config.Provider{echoProvider(t, "echo", nil)}
		c.Redirect.Allow = []string{app.URL + "/auth"}
	})
	r := s.verify("echo", map[string]any{"subject": "ua"}, map[string]string{"User-Agent": "Mozilla/5.0 \xff\xfe"})
	if r.status != 201 || len(r.json(t)["secret"].(string)) != 6 {
		t.Fatalf("verify with a 0xff User-Agent: %d %s", r.status, r.body)
	}
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	hr, _ := http.NewRequest("GET", s.URL+"/v1/account/tokens/oauth2/echo?project=default&scopes[]=a%ff&success="+url.QueryEscape(app.URL+"/auth/ok")+"&failure="+url.QueryEscape(app.URL+"/auth/fail"), nil)
	hr.Header.Set("User-Agent", "\xff")
	res, err := c.Do(hr)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	state := beginState(t, res)
	hr, _ = http.NewRequest("GET", s.URL+"/v1/account/sessions/oauth2/callback/echo/default?state="+url.QueryEscape(state)+"&code=sub%ff&x%fe=%ff", nil)
	hr.Header.Set("User-Agent", "\xff")
	if res, err = c.Do(hr); err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	loc, _ := url.Parse(res.Header.Get("Location"))
	if res.StatusCode != 301 || loc.Path != "/auth/ok" || loc.Query().Get("secret") == "" {
		t.Fatalf("callback with %%ff: %d %s", res.StatusCode, loc)
	}
}

// TestGuardOnlyProvider is the README's example: a captcha-like verifier
// (it does not prove identity) with no deliver, guarding another
// provider. The daemon starts (the old rule refused it, and every guarded
// sign-in with it); the guard runs before the guarded verifier; and a
// sign-in at the guard itself is refused before its verifier runs, with
// nothing minted.
func TestGuardOnlyProvider(t *testing.T) {
	s := newTestServer(t, func(c *config.Config) {
		c.Providers = []config.Provider{
			echoProvider(t, "captchalike", func(p *config.Provider) { p.Plugin.Env = map[string]string{envNoIdentity: "1"} }),
			echoProvider(t, "guarded", func(p *config.Provider) { p.Guards = []string{"captchalike"} }),
		}
	})
	wantError(t, s.verify("guarded", map[string]any{"pass": false, "subject": "g"}, nil), 401, "user_invalid_credentials")
	r := s.verify("guarded", map[string]any{"pass": true, "subject": "g"}, nil)
	if r.status != 201 || len(fmt.Sprint(r.json(t)["secret"])) != 6 {
		t.Fatalf("guarded sign-in: %d %s", r.status, r.body)
	}
	r = s.verify("captchalike", map[string]any{"op": "kvput", "key": "ran", "value": "1", "subject": "victim", "pass": true}, nil)
	wantError(t, r, 400, "provider_unsupported")
	if !strings.Contains(string(r.body), "only guards") {
		t.Fatalf("answer %s", r.body)
	}
	if _, err := s.d.core.KV("provider/captchalike").Get(context.Background(), "ran"); !errors.Is(err, tokenstore.ErrNotFound) {
		t.Fatalf("the guard's verifier ran: %v", err)
	}
}

// TestWebhookGiveUp is the silent loss of issue 10: the client got 201,
// every attempt at the app's backend failed, and the secret was dropped
// without a trace. Now the last failure is one ERROR line with the last
// status (never the secret) and onGiveUp is called once, whether the
// attempts run out in the background, the only attempt fails in the
// request, or a shutdown cuts the retries short.
func TestWebhookGiveUp(t *testing.T) {
	const secret = "0a1b2c"
	var posts atomic.Int32
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		posts.Add(1)
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer hook.Close()
	for _, tc := range []struct {
		name     string
		attempts int
		shutdown bool // close the background after the first attempt
		posts    int32
		sendErr  bool
		status   int
	}{
		{"background retries run out", 3, false, 3, false, 503},
		{"the only attempt fails", 1, false, 1, true, 503},
		{"shutdown stops the retries", 5, true, 1, false, 503},
	} {
		t.Run(tc.name, func(t *testing.T) {
			posts.Store(0)
			logs := &lockedBuffer{}
			log := slog.New(slog.NewTextHandler(logs, nil)).With("provider", "hooked")
			w, err := newWebhookSender(config.Webhook{URL: hook.URL, Secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", Timeout: time.Second, Attempts: tc.attempts}, log)
			if err != nil {
				t.Fatal(err)
			}
			gaveUp := make(chan webhookGiveUp, 2)
			w.onGiveUp = func(g webhookGiveUp) { gaveUp <- g }
			bg := newBackground()
			err = w.send(context.Background(), bg, delivery{UserID: "u1", Secret: secret, Provider: "hooked"})
			if (err != nil) != tc.sendErr {
				t.Fatalf("send = %v", err)
			}
			if tc.shutdown {
				bg.Close()
			}
			var g webhookGiveUp
			select {
			case g = <-gaveUp:
			case <-time.After(15 * time.Second):
				t.Fatal("onGiveUp was never called")
			}
			bg.Close()
			if g.Status != tc.status || g.UserID != "u1" || g.Provider != "hooked" || g.Attempts != tc.attempts || !strings.HasPrefix(g.WebhookID, "msg_") {
				t.Errorf("give-up %+v", g)
			}
			if n := posts.Load(); n != tc.posts {
				t.Errorf("%d posts, want %d", n, tc.posts)
			}
			if len(gaveUp) != 0 {
				t.Error("onGiveUp was called twice")
			}
			out := logs.String()
			if strings.Count(out, "level=ERROR") != 1 || !strings.Contains(out, "webhook delivery given up") ||
				!strings.Contains(out, "last_status=503") || !strings.Contains(out, "webhook_id="+g.WebhookID) || !strings.Contains(out, "user_id=u1") {
				t.Errorf("logs:\n%s", out)
			}
			if strings.Contains(out, secret) {
				t.Errorf("the secret is in the logs:\n%s", out)
			}
		})
	}
}
