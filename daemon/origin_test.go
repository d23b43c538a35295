package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/handoffd/handoff/config"
)

// doHost sends r with the Host header set to host (which s.do cannot set:
// Go's client takes Request.Host, not a Host header).
func (s *testServer) doHost(host string, r req) resp {
	s.t.Helper()
	var body io.Reader
	if r.body != nil {
		raw, _ := json.Marshal(r.body)
		body = bytes.NewReader(raw)
	}
	hr, err := http.NewRequest(r.method, s.URL+r.path, body)
	if err != nil {
		s.t.Fatal(err)
	}
	hr.Host = host
	hr.Header.Set("Content-Type", "application/json")
	hr.Header.Set("X-Appwrite-Project", "default")
	for k, v := range r.headers {
		hr.Header.Set(k, v)
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := client.Do(hr)
	if err != nil {
		s.t.Fatal(err)
	}
	defer res.Body.Close()
	out, _ := io.ReadAll(res.Body)
	return resp{status: res.StatusCode, header: res.Header, body: out}
}

// TestHostHeaderInjection is the attack on the cookie Domain: today's main
// built "; domain=.<Host>" into a raw Set-Cookie, so a Host of
// "api.example.com;samesite=strict;x=" added attributes of the client's
// choosing. The Domain now comes from public_url (or the listen address).
func TestHostHeaderInjection(t *testing.T) {
	exchange := func(s *testServer, host string) []string {
		t.Helper()
		s.createUser("u1", "u1@example.com")
		r := s.doHost(host, req{method: "POST", path: "/v1/account/sessions/token", body: map[string]any{"userId": "u1", "secret": s.mint("u1", nil)}})
		if r.status != 201 {
			t.Fatalf("exchange with Host %q: %d %s", host, r.status, r.body)
		}
		return r.header.Values("Set-Cookie")
	}
	for _, host := range []string{"api.example.com;samesite=strict;x=", "api.example.com; secure", "evil.example"} {
		t.Run("no public_url/"+host, func(t *testing.T) {
			for _, c := range exchange(newTestServer(t), host) {
				low := strings.ToLower(c)
				if strings.Contains(low, "domain=") || strings.Contains(low, "samesite=strict") || strings.Contains(low, "x=;") || strings.Contains(low, "secure") {
					t.Fatalf("Host %q reached the cookie: %q", host, c)
				}
			}
		})
		t.Run("public_url/"+host, func(t *testing.T) {
			s := newTestServer(t, func(c *config.Config) { c.PublicURL = "https://auth.example.com/" })
			for _, c := range exchange(s, host) {
				if !strings.Contains(c, "; path=/; domain=.auth.example.com; secure; httponly") || strings.Contains(c, "api.") ||
					strings.Contains(c, "evil") || strings.Contains(c, "samesite=strict") {
					t.Fatalf("cookie %q", c)
				}
			}
		})
	}
}

// TestSameSiteFromPublicURL: whether X-Fallback-Cookies goes out compares
// the Origin with public_url's host, not with the Host the client wrote.
func TestSameSiteFromPublicURL(t *testing.T) {
	s := newTestServer(t, func(c *config.Config) {
		c.PublicURL = "https://api.example.com"
		c.CORS.Origins = []string{"https://app.example.com", "https://partner.test"}
	})
	s.createUser("u1", "u1@example.com")
	for origin, fallback := range map[string]bool{"https://partner.test": true, "https://app.example.com": false} {
		r := s.doHost("partner.test", req{method: "POST", path: "/v1/account/sessions/token", headers: map[string]string{"Origin": origin},
			body: map[string]any{"userId": "u1", "secret": s.mint("u1", nil)}})
		if r.status != 201 || (r.header.Get("X-Fallback-Cookies") != "") != fallback {
			t.Fatalf("Origin %s, Host partner.test: %d, X-Fallback-Cookies %q, want it %v", origin, r.status, r.header.Get("X-Fallback-Cookies"), fallback)
		}
	}
}

// TestCallbackURLIgnoresHost: the redirect_uri handed to the IdP comes
// from public_url, or the address the daemon listens on; a Host of the
// client's choosing does not move it (today's main used the Host).
func TestCallbackURLIgnoresHost(t *testing.T) {
	idp := func(c *config.Config) {
		c.Providers = []config.Provider{echoProvider(t, "idp", func(p *config.Provider) { p.Deliver.Via = "redirect" })}
		c.Redirect.Allow = []string{"https://app.example.com/auth"}
	}
	begin := "/v1/account/tokens/oauth2/idp?success=" + url.QueryEscape("https://app.example.com/auth/ok") + "&failure=" + url.QueryEscape("https://app.example.com/auth/fail")
	redirectURI := func(t *testing.T, s *testServer) string {
		t.Helper()
		r := s.doHost("evil.example", req{method: "GET", path: begin})
		loc, err := url.Parse(r.header.Get("Location"))
		if r.status != 301 || err != nil {
			t.Fatalf("begin: %d %s", r.status, r.body)
		}
		return loc.Query().Get("redirect_uri")
	}

	s := newTestServer(t, idp, func(c *config.Config) { c.PublicURL = "https://auth.example.com" })
	if got := redirectURI(t, s); got != "https://auth.example.com/v1/account/sessions/oauth2/callback/idp/default" {
		t.Fatalf("redirect_uri %q", got)
	}

	// Without public_url: the address Serve listens on.
	s = newTestServer(t, idp)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.d.Serve(ctx, ln) }()
	defer func() { cancel(); <-done }()
	s.URL = "http://" + ln.Addr().String()
	if got, want := redirectURI(t, s), s.URL+"/v1/account/sessions/oauth2/callback/idp/default"; got != want {
		t.Fatalf("redirect_uri %q, want %q", got, want)
	}
}

// addrListener is a loopback listener that reports another address, as a
// listener on a public interface would.
type addrListener struct {
	net.Listener
	addr net.Addr
}

func (l addrListener) Addr() net.Addr { return l.addr }

// TestServeNeedsPublicURL: a plugin whose config says nothing of redirects
// (deliver.via response, not kind oidc, so config check passes) but that
// offers the redirect flow makes serve refuse a non-loopback listener
// without public_url; loopback, or public_url set, serves.
func TestServeNeedsPublicURL(t *testing.T) {
	serve := func(t *testing.T, s *testServer, public bool) error {
		t.Helper()
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		var l net.Listener = ln
		if public {
			l = addrListener{ln, &net.TCPAddr{IP: net.IPv4zero, Port: ln.Addr().(*net.TCPAddr).Port}}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		defer cancel()
		return s.d.Serve(ctx, l)
	}
	provider := func(c *config.Config) {
		c.Listen = ":8080"
		c.Providers = []config.Provider{echoProvider(t, "idp", nil)}
	}
	s := newTestServer(t, provider)
	err := serve(t, s, true)
	if err == nil || !strings.Contains(err.Error(), "public_url") || !strings.Contains(err.Error(), "provider idp") {
		t.Fatalf("Serve on 0.0.0.0 without public_url = %v", err)
	}
	if err := serve(t, s, false); err != nil {
		t.Fatalf("Serve on loopback: %v", err)
	}
	s = newTestServer(t, provider, func(c *config.Config) { c.PublicURL = "https://auth.example.com" })
	if err := serve(t, s, true); err != nil {
		t.Fatalf("Serve with public_url: %v", err)
	}
}

// TestLoginCSRF is the attack on the exchange: a page on another site
// posts a form (urlencoded, or text/plain carrying JSON) with the
// attacker's userId and secret to sign the victim's browser in to the
// attacker's account. It gets a 403, no session, and the token stays
// unused. Requests without Origin, from the API's own origin or from
// cors.origins pass; "Origin: null" does not.
func TestLoginCSRF(t *testing.T) {
	s := newTestServer(t, func(c *config.Config) { c.CORS.Origins = []string{"https://app.example.com"} })
	s.createUser("u1", "u1@example.com")
	secret := s.mint("u1", nil)
	form := url.Values{"userId": {"u1"}, "secret": {secret}}.Encode()
	plain := `{"userId":"u1","secret":"` + secret + `"}`
	for _, tc := range []struct{ name, origin, ctype, body string }{
		{"urlencoded form", "https://evil.example", "application/x-www-form-urlencoded", form},
		{"text/plain form", "https://evil.example", "text/plain", plain},
		{"multipart-looking", "https://evil.example", "text/plain; charset=utf-8", plain},
		{"null origin", "null", "application/x-www-form-urlencoded", form},
		{"same host, other port", "http://127.0.0.1:1", "application/x-www-form-urlencoded", form},
		{"listed origin's sibling", "https://app.example.com.evil.example", "text/plain", plain},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := s.do(req{method: "POST", path: "/v1/account/sessions/token", body: tc.body, headers: map[string]string{
				"Origin": tc.origin, "Content-Type": tc.ctype, "X-Appwrite-Project": "",
			}})
			wantError(t, r, 403, "general_unknown_origin")
			if len(r.header.Values("Set-Cookie")) != 0 {
				t.Fatalf("cookies %q", r.header.Values("Set-Cookie"))
			}
		})
	}
	if r := s.do(req{method: "GET", path: "/v1/users/u1/sessions", key: true}); r.status != 200 || r.json(t)["total"] != float64(0) {
		t.Fatalf("sessions after the attack: %d %s", r.status, r.body)
	}
	// Other state-changing methods too: a cross-site logout.
	wantError(t, s.do(req{method: "DELETE", path: "/v1/account/sessions", headers: map[string]string{"Origin": "https://evil.example"}}), 403, "general_unknown_origin")

	// The token was not consumed: the victim's own page (a listed origin)
	// still exchanges it, and so do the API's own origin and a server SDK.
	for _, origin := range []string{"https://app.example.com", s.URL, ""} {
		r := s.do(req{method: "POST", path: "/v1/account/sessions/token", headers: map[string]string{"Origin": origin}, body: map[string]any{"userId": "u1", "secret": secret}})
		if r.status != 201 {
			t.Fatalf("Origin %q: %d %s", origin, r.status, r.body)
		}
		secret = s.mint("u1", nil)
	}
	// A GET from anywhere is not refused (CORS keeps its answer from the page).
	if r := s.do(req{method: "GET", path: "/v1/providers", headers: map[string]string{"Origin": "https://evil.example"}}); r.status != 200 {
		t.Fatalf("GET with a foreign Origin: %d", r.status)
	}
	// The OAuth2 callback takes an IdP's cross-site form_post: it is
	// guarded by its state and binding cookie, not by Origin.
	r := s.do(req{method: "POST", path: "/v1/account/sessions/oauth2/callback/idp/default", body: "state=x", headers: map[string]string{
		"Origin": "https://idp.example", "Content-Type": "application/x-www-form-urlencoded",
	}})
	if r.status == 403 {
		t.Fatalf("form_post callback refused by Origin: %s", r.body)
	}
}

// TestListenHostPort: without public_url the daemon names itself by the
// configured listen host (a name stays a name, for the browser's cookies)
// and the port actually bound.
func TestListenHostPort(t *testing.T) {
	for _, tc := range []struct{ listen, bound, want string }{
		{"127.0.0.1:0", "127.0.0.1:43210", "127.0.0.1:43210"},
		{"localhost:8080", "127.0.0.1:8080", "localhost:8080"},
		{"[::1]:0", "[::1]:5555", "[::1]:5555"},
		{":8080", "[::]:8080", "[::]:8080"},
	} {
		bound, err := net.ResolveTCPAddr("tcp", tc.bound)
		if err != nil {
			t.Fatal(err)
		}
		if got := listenHostPort(tc.listen, bound); got != tc.want {
			t.Errorf("listenHostPort(%q, %s) = %q, want %q", tc.listen, tc.bound, got, tc.want)
		}
	}
}
