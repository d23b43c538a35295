package daemon

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/handoffd/handoff/config"
	"github.com/handoffd/handoff/providers"
)

// echoPlugin builds the test plugin providers/internal/testplugins/echo
// once: a verifier whose payload picks what it does (ok, an error code,
// panic, hang, crash, host KV calls).
var (
	echoOnce sync.Once
	echoPath string
	echoSum  string
	echoErr  error
)

func echoPlugin(t testing.TB) (path, sum string) {
	t.Helper()
	echoOnce.Do(func() {
		dir, err := os.MkdirTemp("", "handoff-echo")
		if err != nil {
			echoErr = err
			return
		}
		echoPath = filepath.Join(dir, "echo")
		if out, err := exec.Command("go", "build", "-o", echoPath, "../providers/internal/testplugins/echo").CombinedOutput(); err != nil {
			echoErr = &exec.ExitError{Stderr: out}
			return
		}
		raw, err := os.ReadFile(echoPath)
		if err != nil {
			echoErr = err
			return
		}
		h := sha256.Sum256(raw)
		echoSum = hex.EncodeToString(h[:])
	})
	if echoErr != nil {
		t.Fatalf("build echo plugin: %v", echoErr)
	}
	return echoPath, echoSum
}

// lockedBuffer collects the daemon's log lines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// echoProvider configures the echo plugin as a third-party provider.
func echoProvider(t testing.TB, name string, change func(*config.Provider)) config.Provider {
	path, sum := echoPlugin(t)
	p := config.Provider{Name: name, Plugin: &config.Plugin{Path: path, SHA256: sum}, Users: config.Users{Create: true}, Timeout: 2 * time.Second}
	if change != nil {
		change(&p)
	}
	return p.WithDefaults()
}

func (s *testServer) verify(name string, payload any, headers map[string]string) resp {
	s.t.Helper()
	return s.do(req{method: "POST", path: "/v1/providers/" + name + "/verify", body: payload, headers: headers})
}

// exchangeFor exchanges a secret as a key caller and returns the
// credential.
func (s *testServer) exchangeFor(userID, secret string) string {
	s.t.Helper()
	r := s.do(req{method: "POST", path: "/v1/account/sessions/token", key: true, body: map[string]any{"userId": userID, "secret": secret}})
	if r.status != 201 {
		s.t.Fatalf("exchange: %d %s", r.status, r.body)
	}
	return r.json(s.t)["secret"].(string)
}

func TestProviderFlow(t *testing.T) {
	logs := &lockedBuffer{}
	s := newTestServer(t, func(c *config.Config) {
		c.Providers = []config.Provider{
			echoProvider(t, "echo", nil),
			echoProvider(t, "guard", nil),
			echoProvider(t, "guarded", func(p *config.Provider) { p.Guards = []string{"guard"} }),
			echoProvider(t, "closed", func(p *config.Provider) { p.Users.Create = false }),
			echoProvider(t, "slow", func(p *config.Provider) { p.Timeout = 300 * time.Millisecond }),
			echoProvider(t, "pinned", func(p *config.Provider) { p.Plugin.SHA256 = strings.Repeat("0", 64); p.Optional = true }),
		}
	}, withLogs(logs))

	var secrets []string
	t.Run("list", func(t *testing.T) {
		r := s.do(req{method: "GET", path: "/v1/providers"})
		var out struct {
			Total     int            `json:"total"`
			Providers []providerInfo `json:"providers"`
		}
		if err := json.Unmarshal(r.body, &out); err != nil || out.Total != 6 {
			t.Fatalf("%d %s", r.status, r.body)
		}
		health := map[string]providers.Health{}
		for _, p := range out.Providers {
			health[p.Name] = p.Health
			if p.LastError != nil {
				t.Errorf("a guest sees lastError: %s", r.body)
			}
		}
		if health["echo"] != providers.HealthUp || health["pinned"] != providers.HealthRestarting {
			t.Fatalf("health %v", health)
		}
		r = s.do(req{method: "GET", path: "/v1/providers", key: true})
		if !strings.Contains(string(r.body), "sha256") && !strings.Contains(string(r.body), "checksum") {
			t.Errorf("a key caller should see why pinned failed: %s", r.body)
		}
	})
	t.Run("verify mints and the secret exchanges", func(t *testing.T) {
		r := s.verify("echo", map[string]any{"subject": "sub-1"}, nil)
		if r.status != 201 {
			t.Fatalf("%d %s", r.status, r.body)
		}
		tok := r.json(t)
		secret := tok["secret"].(string)
		secrets = append(secrets, secret)
		cred := s.exchangeFor(tok["userId"].(string), secret)
		me := s.do(req{method: "GET", path: "/v1/account", headers: map[string]string{"X-Appwrite-Session": cred}})
		if me.status != 200 || me.json(t)["$id"] != tok["userId"] {
			t.Fatalf("account: %d %s", me.status, me.body)
		}
		// The session carries the provider and the identity's subject.
		cur := s.do(req{method: "GET", path: "/v1/account/sessions/current", headers: map[string]string{"X-Appwrite-Session": cred}}).json(t)
		if cur["provider"] != "echo" || cur["providerUid"] != "sub-1" {
			t.Fatalf("session provider %v, providerUid %v; want echo, sub-1", cur["provider"], cur["providerUid"])
		}
		// The same subject maps back to the same user.
		again := s.verify("echo", map[string]any{"subject": "sub-1"}, nil).json(t)
		if again["userId"] != tok["userId"] {
			t.Fatalf("subject mapped to %v then %v", tok["userId"], again["userId"])
		}
	})
	t.Run("error codes", func(t *testing.T) {
		for _, c := range []struct {
			code, typ string
			status    int
		}{
			{"invalid_credentials", "user_invalid_credentials", 401},
			{"invalid_request", "general_argument_invalid", 400},
			{"unavailable", "provider_unavailable", 503},
			{"internal", "general_server_error", 500},
		} {
			wantError(t, s.verify("echo", map[string]any{"op": "error", "code": c.code}, nil), c.status, c.typ)
		}
		wantError(t, s.verify("echo", "[1]", nil), 400, "general_argument_invalid")
		wantError(t, s.verify("nope", map[string]any{}, nil), 404, "provider_not_found")
	})
	t.Run("panic answers 500 and the plugin keeps serving", func(t *testing.T) {
		wantError(t, s.verify("echo", map[string]any{"op": "panic"}, nil), 500, "general_server_error")
		if r := s.verify("echo", map[string]any{"subject": "after-panic"}, nil); r.status != 201 {
			t.Fatalf("after panic: %d %s", r.status, r.body)
		}
	})
	t.Run("a hanging plugin answers within its deadline", func(t *testing.T) {
		start := time.Now()
		wantError(t, s.verify("slow", map[string]any{"op": "hang"}, nil), 503, "provider_unavailable")
		if took := time.Since(start); took > 2*time.Second {
			t.Fatalf("took %v with a 300ms deadline", took)
		}
	})
	t.Run("a crashed plugin is 503 and then comes back", func(t *testing.T) {
		wantError(t, s.verify("echo", map[string]any{"op": "crash"}, nil), 503, "provider_unavailable")
		deadline := time.Now().Add(10 * time.Second)
		for {
			r := s.verify("echo", map[string]any{"subject": "after-crash"}, nil)
			if r.status == 201 {
				break
			}
			if r.status != 503 || time.Now().After(deadline) {
				t.Fatalf("no recovery: %d %s", r.status, r.body)
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
	t.Run("guards run first", func(t *testing.T) {
		wantError(t, s.verify("guarded", map[string]any{"pass": false, "subject": "g"}, nil), 401, "user_invalid_credentials")
		if r := s.verify("guarded", map[string]any{"pass": true, "subject": "g"}, nil); r.status != 201 {
			t.Fatalf("guard passed: %d %s", r.status, r.body)
		}
	})
	t.Run("a checksum mismatch refuses only that provider", func(t *testing.T) {
		wantError(t, s.verify("pinned", map[string]any{}, nil), 503, "provider_unavailable")
	})
	t.Run("no user without create; enroll links", func(t *testing.T) {
		wantError(t, s.verify("closed", map[string]any{"subject": "u-closed"}, nil), 401, "user_unauthorized")
		s.createUser("closeduser", "")
		r := s.do(req{method: "POST", path: "/v1/users/closeduser/providers/closed", key: true, body: map[string]any{"template": "x"}})
		if r.status != 201 || r.json(t)["enrolled"] != true {
			t.Fatalf("enroll: %d %s", r.status, r.body)
		}
		// The echo plugin enrolls with the user id as its subject.
		r = s.verify("closed", map[string]any{"subject": "closeduser"}, nil)
		if r.status != 201 || r.json(t)["userId"] != "closeduser" {
			t.Fatalf("verify after enroll: %d %s", r.status, r.body)
		}
		wantError(t, s.do(req{method: "POST", path: "/v1/users/ghost/providers/closed", key: true, body: map[string]any{}}), 404, "user_not_found")
		wantError(t, s.do(req{method: "POST", path: "/v1/users/closeduser/providers/closed", body: map[string]any{}}), 401, "general_unauthorized_scope")
	})
	t.Run("host KV is namespaced per provider", func(t *testing.T) {
		if r := s.verify("echo", map[string]any{"op": "kvput", "key": "k", "value": "from-echo"}, nil); r.status != 201 {
			t.Fatalf("%d %s", r.status, r.body)
		}
		r := s.verify("echo", map[string]any{"op": "kvget", "key": "k"}, nil)
		if r.status != 201 {
			t.Fatalf("%d %s", r.status, r.body)
		}
		wantError(t, s.verify("guard", map[string]any{"op": "kvget", "key": "k"}, nil), 500, "general_server_error")
	})
	t.Run("no secret in the logs", func(t *testing.T) {
		out := logs.String()
		for _, sec := range secrets {
			if strings.Contains(out, sec) {
				t.Fatalf("secret %q in logs", sec)
			}
		}
		if !strings.Contains(out, "/v1/providers/echo/verify") {
			t.Fatalf("the logs were not captured: %q", out)
		}
	})
}

// withLogs sends a test server's logs to w.
func withLogs(w io.Writer) func(*config.Config) {
	return func(c *config.Config) {
		testLogger = slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
}

func TestRedirectFlow(t *testing.T) {
	app := httptest.NewServer(http.NotFoundHandler())
	defer app.Close()
	s := newTestServer(t, func(c *config.Config) {
		c.Providers = []config.Provider{echoProvider(t, "idp", func(p *config.Provider) { p.Deliver.Via = "redirect" })}
		c.Redirect.Allow = []string{app.URL + "/auth"}
	})
	// browser is one browser: it keeps cookies and does not follow redirects.
	browser := func() func(path string) *http.Response {
		jar, _ := cookiejar.New(nil)
		c := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		return func(path string) *http.Response {
			t.Helper()
			res, err := c.Get(s.URL + path)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			return res
		}
	}
	get := browser()
	begin := "/v1/account/tokens/oauth2/idp?project=default&success=" + url.QueryEscape(app.URL+"/auth/ok?keep=1") + "&failure=" + url.QueryEscape(app.URL+"/auth/fail")
	res := get(begin)
	if res.StatusCode != 301 {
		t.Fatalf("begin: %d", res.StatusCode)
	}
	authURL, _ := url.Parse(res.Header.Get("Location"))
	state := authURL.Query().Get("state")
	if state == "" || !strings.HasSuffix(authURL.Query().Get("redirect_uri"), "/v1/account/sessions/oauth2/callback/idp/default") {
		t.Fatalf("authorize URL %s", authURL)
	}
	callback := "/v1/account/sessions/oauth2/callback/idp/default?state=" + url.QueryEscape(state) + "&code=subject-42&idp_token=" + idpAccessToken
	res = get(callback)
	loc, _ := url.Parse(res.Header.Get("Location"))
	if res.StatusCode != 301 || loc.Path != "/auth/ok" || loc.Query().Get("keep") != "1" || len(loc.Query().Get("secret")) != 64 {
		t.Fatalf("callback: %d %s", res.StatusCode, loc)
	}
	cred := s.exchangeFor(loc.Query().Get("userId"), loc.Query().Get("secret"))
	if r := s.do(req{method: "GET", path: "/v1/account", headers: map[string]string{"X-Appwrite-Session": cred}}); r.status != 200 {
		t.Fatalf("account: %d", r.status)
	}
	// The session the token opens carries the provider, the identity's
	// subject and the IdP's tokens, which crossed the token (sealed).
	sess := s.do(req{method: "GET", path: "/v1/account/sessions/current", headers: map[string]string{"X-Appwrite-Session": cred}}).json(t)
	if sess["provider"] != "idp" || sess["providerUid"] != "subject-42" || sess["providerAccessToken"] != idpAccessToken || sess["providerRefreshToken"] != "refresh-"+idpAccessToken {
		t.Fatalf("the exchanged session: provider %v uid %v, access token %t, refresh token %t", sess["provider"], sess["providerUid"], sess["providerAccessToken"] == idpAccessToken, sess["providerRefreshToken"] == "refresh-"+idpAccessToken)
	}
	// A state is good for one callback.
	wantError(t, s.do(req{method: "GET", path: callback}), 400, "user_oauth2_bad_request")

	// A callback opened in another browser than the one that began the
	// flow (a login CSRF: the attacker's callback in the victim's browser)
	// mints nothing and goes to the failure URL.
	state3 := beginState(t, get(begin))
	res = browser()("/v1/account/sessions/oauth2/callback/idp/default?state=" + url.QueryEscape(state3) + "&code=attacker")
	loc, _ = url.Parse(res.Header.Get("Location"))
	if loc.Path != "/auth/fail" || loc.Query().Get("secret") != "" || !strings.Contains(loc.Query().Get("error"), "another browser") {
		t.Fatalf("callback in another browser: %d %s", res.StatusCode, loc)
	}
	wantError(t, s.do(req{method: "GET", path: "/v1/account/sessions/oauth2/callback/idp/default?state=" + url.QueryEscape(state3)}), 400, "user_oauth2_bad_request")

	// A callback the plugin refuses goes to the failure URL with the error.
	state2 := beginState(t, get(begin))
	res = get("/v1/account/sessions/oauth2/callback/idp/default?state=" + url.QueryEscape(state2))
	loc, _ = url.Parse(res.Header.Get("Location"))
	var e map[string]any
	if loc.Path != "/auth/fail" || json.Unmarshal([]byte(loc.Query().Get("error")), &e) != nil || e["type"] != "general_argument_invalid" {
		t.Fatalf("failure redirect %s", loc)
	}
	// A bad success URL with a good failure URL goes to the failure URL
	// with the error, as any refusal after a good failure URL does; with
	// no good failure URL it answers JSON.
	for _, bad := range []string{"https://evil.example/auth/ok", app.URL + "/authx", "javascript:alert(1)", app.URL + "/auth/../admin", app.URL + "/auth/%2E%2e/admin"} {
		res := get("/v1/account/tokens/oauth2/idp?success=" + url.QueryEscape(bad) + "&failure=" + url.QueryEscape(app.URL+"/auth/fail"))
		loc, _ := url.Parse(res.Header.Get("Location"))
		if res.StatusCode != 301 || loc.Path != "/auth/fail" || !strings.Contains(loc.Query().Get("error"), "project_invalid_success_url") {
			t.Fatalf("bad success URL %s: %d %s", bad, res.StatusCode, loc)
		}
		r := s.do(req{method: "GET", path: "/v1/account/tokens/oauth2/idp?success=" + url.QueryEscape(bad) + "&failure=" + url.QueryEscape(bad)})
		wantError(t, r, 400, "project_invalid_success_url")
	}
}

func beginState(t *testing.T, res *http.Response) string {
	t.Helper()
	u, err := url.Parse(res.Header.Get("Location"))
	if err != nil || u.Query().Get("state") == "" {
		t.Fatalf("begin: %d %v", res.StatusCode, res.Header)
	}
	return u.Query().Get("state")
}

func TestWebhookDelivery(t *testing.T) {
	const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	verifier, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan delivery, 4)
	var mu sync.Mutex
	failFirst := 2
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := verifier.Verify(body, r.Header); err != nil {
			t.Errorf("webhook signature: %v", err)
			w.WriteHeader(400)
			return
		}
		mu.Lock()
		fail := failFirst > 0
		failFirst--
		mu.Unlock()
		if fail {
			w.WriteHeader(503)
			return
		}
		d, err := openEnvelope(body)
		if err != nil {
			t.Errorf("webhook body %s: %v", body, err)
		}
		got <- d
	}))
	defer hook.Close()
	s := newTestServer(t, func(c *config.Config) {
		c.Providers = []config.Provider{echoProvider(t, "hooked", func(p *config.Provider) {
			p.Deliver = config.Deliver{Via: "webhook", Webhook: config.Webhook{URL: hook.URL, Secret: secret, Attempts: 5, Timeout: time.Second}}
		})}
	})
	r := s.verify("hooked", map[string]any{"subject": "hooked-1"}, nil)
	if r.status != 201 || r.json(t)["secret"] != "" {
		t.Fatalf("verify: %d %s", r.status, r.body)
	}
	userID := r.json(t)["userId"].(string)
	select {
	case d := <-got:
		if d.UserID != userID || d.Provider != "hooked" || len(d.Secret) != 6 || d.Expire == "" {
			t.Fatalf("delivery %+v", d)
		}
		s.exchangeFor(d.UserID, d.Secret)
	case <-time.After(10 * time.Second):
		t.Fatal("the webhook never arrived after retries")
	}
}

// smtpBackend is a test SMTP server that keeps what it receives.
type smtpBackend struct{ msgs chan string }

func (b *smtpBackend) NewSession(*smtp.Conn) (smtp.Session, error) { return &smtpSession{b: b}, nil }

type smtpSession struct {
	b  *smtpBackend
	to string
}

func (s *smtpSession) Mail(string, *smtp.MailOptions) error { return nil }
func (s *smtpSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.to = to
	return nil
}

func (s *smtpSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	s.b.msgs <- "To-Envelope: " + s.to + "\n" + string(b)
	return err
}
func (s *smtpSession) Reset()        {}
func (s *smtpSession) Logout() error { return nil }

func TestEmailDelivery(t *testing.T) {
	backend := &smtpBackend{msgs: make(chan string, 4)}
	srv := smtp.NewServer(backend)
	srv.Domain = "localhost"
	srv.AllowInsecureAuth = true
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Close()
	s := newTestServer(t, func(c *config.Config) {
		c.Providers = []config.Provider{echoProvider(t, "mailed", func(p *config.Provider) {
			p.Users.Create = false
			p.Deliver = config.Deliver{Via: "email", Email: config.Email{SMTP: ln.Addr().String(), TLS: "none", From: "login@example.com", Subject: "Your code", Template: "Code: {{.Secret}} for {{.UserID}}\n"}}
		})}
	})
	s.createUser("mailuser", "mail.user@example.com")
	if r := s.do(req{method: "POST", path: "/v1/users/mailuser/providers/mailed", key: true, body: map[string]any{}}); r.status != 201 {
		t.Fatalf("enroll: %d %s", r.status, r.body)
	}
	r := s.verify("mailed", map[string]any{"subject": "mailuser"}, nil)
	if r.status != 201 || r.json(t)["secret"] != "" {
		t.Fatalf("verify: %d %s", r.status, r.body)
	}
	select {
	case msg := <-backend.msgs:
		if !strings.Contains(msg, "To-Envelope: mail.user@example.com") || !strings.Contains(msg, "Subject: Your code") {
			t.Fatalf("mail:\n%s", msg)
		}
		i := strings.Index(msg, "Code: ")
		if i < 0 {
			t.Fatalf("no code in mail:\n%s", msg)
		}
		s.exchangeFor("mailuser", msg[i+6:i+12])
	case <-time.After(10 * time.Second):
		t.Fatal("no mail")
	}
}

// TestFlowBindingCookie: over https the binding cookie is Secure and
// SameSite=None, so it comes back with an IdP's cross-site form POST
// (form_post); over plain http it is Lax.
func TestFlowBindingCookie(t *testing.T) {
	r := httptest.NewRequest("GET", "/v1/account/tokens/oauth2/idp", nil)
	plain := newTestServer(t).d.flowBinding(r, "idp", "st", "v", 600)
	if plain.Secure || plain.SameSite != http.SameSiteLaxMode || !plain.HttpOnly || plain.Name != flowCookie("st") {
		t.Fatalf("over http: %+v", plain)
	}
	tls := newTestServer(t, func(c *config.Config) { c.PublicURL = "https://auth.example.com" }).d.flowBinding(r, "idp", "st", "v", 600)
	if !tls.Secure || tls.SameSite != http.SameSiteNoneMode || !tls.HttpOnly {
		t.Fatalf("over https: %+v", tls)
	}
	if flowCookie("st") == flowCookie("st2") {
		t.Fatal("two flows share a cookie")
	}
}
