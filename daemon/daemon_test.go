package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/handoffd/handoff/config"
	"github.com/handoffd/handoff/tokenstore"
)

// testServer is a daemon on a real bolt file behind an httptest server.
type testServer struct {
	*httptest.Server
	d   *Daemon
	key string
	t   *testing.T
}

var keyRE = regexp.MustCompile(`standard_[0-9a-f]+`)

// testLogger is the logger of the next newTestServer (see withLogs).
var testLogger *slog.Logger

func newTestServer(t *testing.T, change ...func(*config.Config)) *testServer {
	t.Helper()
	cfg := config.Default()
	cfg.Data = t.TempDir()
	for _, c := range change {
		c(&cfg)
	}
	var notice bytes.Buffer
	d, err := New(context.Background(), Options{Config: cfg, OpenStore: testOpenStore, Notice: &notice, Logger: testLogger})
	testLogger = nil
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(d.Handler())
	t.Cleanup(func() {
		srv.Close()
		d.Close()
	})
	key := keyRE.FindString(notice.String())
	if key == "" {
		t.Fatalf("no bootstrap key in %q", notice.String())
	}
	return &testServer{Server: srv, d: d, key: key, t: t}
}

// req describes one request.
type req struct {
	method, path string
	body         any
	headers      map[string]string
	key          bool // send the API key
}

type resp struct {
	status int
	header http.Header
	body   []byte
}

func (r resp) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("body %q: %v", r.body, err)
	}
	return m
}

func (s *testServer) do(r req) resp {
	s.t.Helper()
	var body io.Reader
	switch b := r.body.(type) {
	case nil:
	case string:
		body = strings.NewReader(b)
	default:
		raw, _ := json.Marshal(b)
		body = bytes.NewReader(raw)
	}
	hr, err := http.NewRequest(r.method, s.URL+r.path, body)
	if err != nil {
		s.t.Fatal(err)
	}
	hr.Header.Set("Content-Type", "application/json")
	hr.Header.Set("X-Appwrite-Project", "default")
	if r.key {
		hr.Header.Set("X-Appwrite-Key", s.key)
	}
	for k, v := range r.headers {
		if v == "" {
			hr.Header.Del(k)
		} else {
			hr.Header.Set(k, v)
		}
	}
	res, err := http.DefaultClient.Do(hr)
	if err != nil {
		s.t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	return resp{status: res.StatusCode, header: res.Header, body: raw}
}

// wantError checks an Appwrite error answer.
func wantError(t *testing.T, r resp, status int, typ string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d; body %s", r.status, status, r.body)
	}
	m := r.json(t)
	if m["type"] != typ || m["code"] != float64(status) || m["version"] != AppwriteVersion || m["message"] == "" {
		t.Fatalf("error body %s, want type %s code %d", r.body, typ, status)
	}
}

func (s *testServer) createUser(id, email string) map[string]any {
	s.t.Helper()
	r := s.do(req{method: "POST", path: "/v1/users", key: true, body: map[string]any{"userId": id, "email": email, "name": "N " + id}})
	if r.status != 201 {
		s.t.Fatalf("create user: %d %s", r.status, r.body)
	}
	return r.json(s.t)
}

func (s *testServer) mint(userID string, body map[string]any) string {
	s.t.Helper()
	r := s.do(req{method: "POST", path: "/v1/users/" + userID + "/tokens", key: true, body: body})
	if r.status != 201 {
		s.t.Fatalf("mint: %d %s", r.status, r.body)
	}
	return r.json(s.t)["secret"].(string)
}

// login mints and exchanges as a key caller and returns the credential.
func (s *testServer) login(userID string) string {
	s.t.Helper()
	secret := s.mint(userID, nil)
	r := s.do(req{method: "POST", path: "/v1/account/sessions/token", key: true, body: map[string]any{"userId": userID, "secret": secret}})
	if r.status != 201 {
		s.t.Fatalf("exchange: %d %s", r.status, r.body)
	}
	return r.json(s.t)["secret"].(string)
}

// TestStoreFigures: /metrics carries the store's own figures, bolt's
// commits and PostgreSQL's round trips and pool, next to the core's step
// latencies.
func TestStoreFigures(t *testing.T) {
	onEachStore(t, nil, func(t *testing.T, s *testServer) {
		s.createUser("u1", "u1@example.com")
		s.login("u1")
		mfs := scrape(t, s)
		value := func(name string) float64 {
			t.Helper()
			v, ok := metricValue(mfs, "handoff_store_"+name, nil)
			if !ok {
				t.Fatalf("/metrics has no handoff_store_%s", name)
			}
			return v
		}
		if strings.HasSuffix(t.Name(), "bolt") {
			if commits, steps := value("commits_total"), value("committed_steps_total"); commits < 3 || steps < commits {
				t.Errorf("commits %v, committed steps %v: want the user, the mint and the exchange", commits, steps)
			}
			return
		}
		if steps, trips := value("steps_total"), value("round_trips_total"); steps < 3 || trips < steps {
			t.Errorf("steps %v, round trips %v: want the user, the mint and the exchange, a round trip each at least", steps, trips)
		}
		if conns := value("pool_conns"); conns < 1 {
			t.Errorf("pool_conns = %v, want the open pool", conns)
		}
		value("grouped_steps_total")
	})
}

func TestUnknownRoute(t *testing.T) {
	s := newTestServer(t)
	for _, r := range []req{{method: "GET", path: "/v1/nope"}, {method: "PUT", path: "/v1/account/sessions/token"}, {method: "PATCH", path: "/v1/users"}} {
		wantError(t, s.do(r), 404, "general_route_not_found")
	}
}

func TestUsersAPI(t *testing.T) {
	s := newTestServer(t)
	u := s.createUser("alice", "Alice@Example.com")
	if u["$id"] != "alice" || u["email"] != "alice@example.com" || u["status"] != true {
		t.Fatalf("user %v", u)
	}
	wantKeys(t, u, "$id", "$createdAt", "$updatedAt", "name", "registration", "status", "labels", "passwordUpdate", "email", "phone", "emailVerification", "phoneVerification", "mfa", "prefs", "targets", "accessedAt")
	if !regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00$`).MatchString(u["$createdAt"].(string)) {
		t.Errorf("$createdAt %q is not Appwrite's format", u["$createdAt"])
	}
	if raw := s.do(req{method: "GET", path: "/v1/users/alice", key: true}); !bytes.Contains(raw.body, []byte(`"prefs":{}`)) {
		t.Errorf("empty prefs must be {}: %s", raw.body)
	}
	s.createUser("bob", "bob@example.com")
	s.createUser("carol", "carol@example.org")
	unique := s.createUser("unique()", "")
	if !regexp.MustCompile(`^[0-9a-f]{20}$`).MatchString(unique["$id"].(string)) {
		t.Errorf("unique() id %v", unique["$id"])
	}

	cases := []struct {
		name   string
		r      req
		status int
		typ    string
	}{
		{"duplicate id", req{method: "POST", path: "/v1/users", key: true, body: map[string]any{"userId": "alice"}}, 409, "user_already_exists"},
		{"duplicate email", req{method: "POST", path: "/v1/users", key: true, body: map[string]any{"userId": "x", "email": "ALICE@example.com"}}, 409, "user_already_exists"},
		{"bad id", req{method: "POST", path: "/v1/users", key: true, body: map[string]any{"userId": "_bad"}}, 400, "general_argument_invalid"},
		{"missing id", req{method: "POST", path: "/v1/users", key: true, body: map[string]any{}}, 400, "general_argument_invalid"},
		{"bad email", req{method: "POST", path: "/v1/users", key: true, body: map[string]any{"userId": "y", "email": "nope"}}, 400, "general_argument_invalid"},
		{"bad phone", req{method: "POST", path: "/v1/users", key: true, body: map[string]any{"userId": "y", "phone": "12345"}}, 400, "general_argument_invalid"},
		{"password refused", req{method: "POST", path: "/v1/users", key: true, body: map[string]any{"userId": "y", "password": "hunter22"}}, 400, "general_argument_invalid"},
		{"body not json", req{method: "POST", path: "/v1/users", key: true, body: "{"}, 400, "general_argument_invalid"},
		{"no key", req{method: "GET", path: "/v1/users"}, 401, "general_unauthorized_scope"},
		{"unknown key", req{method: "GET", path: "/v1/users", headers: map[string]string{"X-Appwrite-Key": "standard_00"}}, 401, "general_unauthorized_scope"},
		{"key without project", req{method: "GET", path: "/v1/users", key: true, headers: map[string]string{"X-Appwrite-Project": ""}}, 403, "project_id_missing"},
		{"other project", req{method: "GET", path: "/v1/users", key: true, headers: map[string]string{"X-Appwrite-Project": "other"}}, 404, "project_not_found"},
		{"get unknown", req{method: "GET", path: "/v1/users/nobody", key: true}, 404, "user_not_found"},
		{"delete unknown", req{method: "DELETE", path: "/v1/users/nobody", key: true}, 404, "user_not_found"},
		{"bad query", req{method: "GET", path: "/v1/users?queries[0]=nope", key: true}, 400, "general_query_invalid"},
		{"bad query attribute", req{method: "GET", path: "/v1/users?queries[0]=" + url.QueryEscape(`{"method":"equal","attribute":"secret","values":["x"]}`), key: true}, 400, "general_query_invalid"},
		{"unknown cursor", req{method: "GET", path: "/v1/users?queries[0]=" + url.QueryEscape(`{"method":"cursorAfter","values":["ghost"]}`), key: true}, 400, "general_cursor_not_found"},
		{"body too large", req{method: "POST", path: "/v1/users", key: true, body: `{"userId":"big","name":"` + strings.Repeat("a", 70<<10) + `"}`}, 413, "general_argument_invalid"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { wantError(t, s.do(c.r), c.status, c.typ) })
	}

	list := func(qs ...string) map[string]any {
		v := url.Values{}
		for i, q := range qs {
			v.Set("queries["+string(rune('0'+i))+"]", q)
		}
		r := s.do(req{method: "GET", path: "/v1/users?" + v.Encode(), key: true})
		if r.status != 200 {
			t.Fatalf("list %v: %d %s", qs, r.status, r.body)
		}
		return r.json(t)
	}
	ids := func(m map[string]any) string {
		var out []string
		for _, u := range m["users"].([]any) {
			out = append(out, u.(map[string]any)["$id"].(string))
		}
		return strings.Join(out, ",")
	}
	t.Run("list", func(t *testing.T) {
		all := list()
		if all["total"] != float64(4) || !strings.HasPrefix(ids(all), "alice,bob,carol") {
			t.Fatalf("all: %v %s", all["total"], ids(all))
		}
		if got := ids(list(`{"method":"equal","attribute":"email","values":["bob@example.com","carol@example.org"]}`)); got != "bob,carol" {
			t.Errorf("equal: %s", got)
		}
		page := list(`{"method":"limit","values":[1]}`, `{"method":"offset","values":[1]}`)
		if ids(page) != "bob" || page["total"] != float64(4) {
			t.Errorf("limit+offset: %s total %v", ids(page), page["total"])
		}
		if got := ids(list(`{"method":"cursorAfter","values":["bob"]}`, `{"method":"limit","values":[1]}`)); got != "carol" {
			t.Errorf("cursorAfter: %s", got)
		}
		r := s.do(req{method: "GET", path: "/v1/users?search=example.org", key: true})
		if got := ids(r.json(t)); got != "carol" {
			t.Errorf("search: %s", got)
		}
		r = s.do(req{method: "GET", path: "/v1/users?total=false", key: true})
		if r.json(t)["total"] != float64(0) {
			t.Errorf("total=false: %s", r.body)
		}
	})
	t.Run("delete", func(t *testing.T) {
		if r := s.do(req{method: "DELETE", path: "/v1/users/carol", key: true, body: "{}"}); r.status != 204 || len(r.body) != 0 {
			t.Fatalf("delete: %d %s", r.status, r.body)
		}
		wantError(t, s.do(req{method: "GET", path: "/v1/users/carol", key: true}), 404, "user_not_found")
	})
}

func wantKeys(t *testing.T, m map[string]any, keys ...string) {
	t.Helper()
	for _, k := range keys {
		if _, ok := m[k]; !ok {
			t.Errorf("missing key %q in %v", k, m)
		}
	}
	if len(m) != len(keys) {
		t.Errorf("got %d keys, want %d: %v", len(m), len(keys), m)
	}
}

func TestCreateToken(t *testing.T) {
	s := newTestServer(t)
	s.createUser("u1", "")
	r := s.do(req{method: "POST", path: "/v1/users/u1/tokens", key: true})
	if r.status != 201 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	tok := r.json(t)
	wantKeys(t, tok, "$id", "$createdAt", "userId", "secret", "expire", "phrase")
	if !regexp.MustCompile(`^[0-9a-f]{6}$`).MatchString(tok["secret"].(string)) || tok["phrase"] != "" || tok["userId"] != "u1" {
		t.Fatalf("token %v", tok)
	}
	if got := s.mint("u1", map[string]any{"length": "12"}); len(got) != 12 {
		t.Errorf("numeric string length: %q", got)
	}
	if got := s.mint("u1", map[string]any{"length": 128, "expire": 31536000}); len(got) != 128 {
		t.Errorf("length 128: %d", len(got))
	}
	for _, c := range []struct {
		name string
		body map[string]any
		msg  string
	}{
		{"length 3", map[string]any{"length": 3}, "Invalid `length` param: Value must be a valid range between 4 and 128"},
		{"length 129", map[string]any{"length": 129}, "Invalid `length` param: Value must be a valid range between 4 and 128"},
		{"length 12.5", map[string]any{"length": 12.5}, "Invalid `length` param: Value must be a valid range between 4 and 128"},
		{"length abc", map[string]any{"length": "abc"}, "Invalid `length` param: Value must be a valid range between 4 and 128"},
		{"expire 59", map[string]any{"expire": 59}, "Invalid `expire` param: Value must be a valid range between 60 and 31,536,000"},
		{"expire huge", map[string]any{"expire": 999999999999999}, "Invalid `expire` param: Value must be a valid range between 60 and 31,536,000"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := s.do(req{method: "POST", path: "/v1/users/u1/tokens", key: true, body: c.body})
			wantError(t, r, 400, "general_argument_invalid")
			if m := r.json(t)["message"]; m != c.msg {
				t.Errorf("message %q, want %q", m, c.msg)
			}
		})
	}
	// Params are checked before the user is looked up.
	wantError(t, s.do(req{method: "POST", path: "/v1/users/ghost/tokens", key: true, body: map[string]any{"length": 1}}), 400, "general_argument_invalid")
	wantError(t, s.do(req{method: "POST", path: "/v1/users/ghost/tokens", key: true}), 404, "user_not_found")
	wantError(t, s.do(req{method: "POST", path: "/v1/users/u1/tokens"}), 401, "general_unauthorized_scope")
}

func TestExchangeAndSessions(t *testing.T) {
	s := newTestServer(t)
	s.createUser("u1", "u1@example.com")
	secret := s.mint("u1", nil)

	// A browser-style client (no key, no Origin): cookies plus fallback.
	r := s.do(req{method: "POST", path: "/v1/account/sessions/token", body: map[string]any{"userId": "u1", "secret": secret}})
	if r.status != 201 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	sess := r.json(t)
	if sess["secret"] != "" || sess["current"] != true || sess["provider"] != "token" {
		t.Fatalf("session %v", sess)
	}
	wantKeys(t, sess, "$id", "$createdAt", "$updatedAt", "userId", "expire", "provider", "providerUid", "providerAccessToken",
		"providerAccessTokenExpiry", "providerRefreshToken", "ip", "osCode", "osName", "osVersion", "clientType", "clientCode",
		"clientName", "clientVersion", "clientEngine", "clientEngineVersion", "deviceName", "deviceBrand", "deviceModel",
		"countryCode", "countryName", "current", "factors", "secret", "mfaUpdatedAt")
	cookies := r.header.Values("Set-Cookie")
	if len(cookies) != 2 || !strings.HasPrefix(cookies[0], "a_session_default_legacy=") || !strings.HasPrefix(cookies[1], "a_session_default=") ||
		!strings.Contains(cookies[1], "samesite=None") || strings.Contains(cookies[0], "samesite") || !strings.Contains(cookies[0], "httponly") ||
		strings.Contains(cookies[0], "domain=") {
		t.Fatalf("cookies %q", cookies)
	}
	var fallback map[string]string
	if err := json.Unmarshal([]byte(r.header.Get("X-Fallback-Cookies")), &fallback); err != nil {
		t.Fatalf("X-Fallback-Cookies %q", r.header.Get("X-Fallback-Cookies"))
	}
	cred := fallback["a_session_default"]
	if uid, _, ok := tokenstore.ParseCredential(cred); !ok || uid != "u1" {
		t.Fatalf("credential %q", cred)
	}
	cookieValue := strings.TrimPrefix(strings.Split(cookies[1], ";")[0], "a_session_default=")

	// Reuse, a wrong secret, an unknown user: the same 401.
	for _, body := range []map[string]any{{"userId": "u1", "secret": secret}, {"userId": "u1", "secret": "000000"}, {"userId": "ghost", "secret": secret}} {
		wantError(t, s.do(req{method: "POST", path: "/v1/account/sessions/token", key: true, body: body}), 401, "user_invalid_token")
	}
	wantError(t, s.do(req{method: "POST", path: "/v1/account/sessions/token", body: map[string]any{"userId": "u1"}}), 400, "general_argument_invalid")
	wantError(t, s.do(req{method: "POST", path: "/v1/account/sessions/token", body: map[string]any{"userId": "u1", "secret": ""}}), 400, "general_argument_invalid")

	// Every way of presenting the credential authenticates GET /account.
	for name, h := range map[string]map[string]string{
		"cookie":           {"Cookie": "a_session_default=" + cookieValue},
		"legacy cookie":    {"Cookie": "a_session_default_legacy=" + cookieValue},
		"raw cookie":       {"Cookie": "a_session_default=" + cred},
		"session header":   {"X-Appwrite-Session": cred},
		"nuvix header":     {"X-Nuvix-Session": cred, "X-Nuvix-Project": "default", "X-Appwrite-Project": ""},
		"fallback cookies": {"X-Fallback-Cookies": `{"a_session_default":"` + cred + `"}`},
	} {
		t.Run(name, func(t *testing.T) {
			r := s.do(req{method: "GET", path: "/v1/account", headers: h})
			if r.status != 200 || r.json(t)["$id"] != "u1" {
				t.Fatalf("%d %s", r.status, r.body)
			}
		})
	}
	auth := map[string]string{"X-Appwrite-Session": cred}
	wantError(t, s.do(req{method: "GET", path: "/v1/account"}), 401, "general_unauthorized_scope")
	wantError(t, s.do(req{method: "GET", path: "/v1/account", headers: map[string]string{"X-Appwrite-Session": "garbage"}}), 401, "general_unauthorized_scope")
	// A logged-in client may not exchange again.
	second := s.mint("u1", nil)
	wantError(t, s.do(req{method: "POST", path: "/v1/account/sessions/token", headers: auth, body: map[string]any{"userId": "u1", "secret": second}}), 401, "user_session_already_exists")

	// A same-site browser gets cookies but no fallback header.
	r = s.do(req{method: "POST", path: "/v1/account/sessions/token", headers: map[string]string{"Origin": s.URL}, body: map[string]any{"userId": "u1", "secret": second}})
	if r.status != 201 || r.header.Get("X-Fallback-Cookies") != "" {
		t.Fatalf("same-site: %d fallback %q", r.status, r.header.Get("X-Fallback-Cookies"))
	}
	secondID := r.json(t)["$id"].(string)

	r = s.do(req{method: "GET", path: "/v1/account/sessions", headers: auth})
	list := r.json(t)
	if list["total"] != float64(2) {
		t.Fatalf("sessions %s", r.body)
	}
	for _, x := range list["sessions"].([]any) {
		m := x.(map[string]any)
		if m["secret"] != "" || (m["$id"] == sess["$id"]) != (m["current"] == true) {
			t.Errorf("session in list %v", m)
		}
	}
	if r := s.do(req{method: "GET", path: "/v1/account/sessions/current", headers: auth}); r.json(t)["$id"] != sess["$id"] {
		t.Errorf("current: %s", r.body)
	}
	wantError(t, s.do(req{method: "GET", path: "/v1/account/sessions/nope", headers: auth}), 404, "user_session_not_found")
	if r := s.do(req{method: "DELETE", path: "/v1/account/sessions/" + secondID, headers: auth}); r.status != 204 || len(r.header.Values("Set-Cookie")) != 0 {
		t.Fatalf("delete other: %d %q", r.status, r.header.Values("Set-Cookie"))
	}
	r = s.do(req{method: "DELETE", path: "/v1/account/sessions/current", headers: auth})
	if r.status != 204 || r.header.Get("X-Fallback-Cookies") != "[]" || len(r.header.Values("Set-Cookie")) != 2 || !strings.HasPrefix(r.header.Values("Set-Cookie")[0], "a_session_default_legacy=;") {
		t.Fatalf("logout: %d %v", r.status, r.header)
	}
	wantError(t, s.do(req{method: "GET", path: "/v1/account", headers: auth}), 401, "general_unauthorized_scope")
}

// TestFallbackCookies: X-Fallback-Cookies is what json.Marshal makes of
// the map {cookie name: credential}, byte for byte, whatever the
// credential holds.
func TestFallbackCookies(t *testing.T) {
	d := &Daemon{cfg: config.Config{Project: "My-Project.1"}}
	for _, cred := range []string{"", "eyJpZCI6InUxIn0=", "a+b/c==", `<"\&>`, "\u2028\x00\xff"} {
		want, _ := json.Marshal(map[string]string{d.cookieName(): cred})
		if got := d.fallbackCookies(cred); got != string(want) {
			t.Errorf("fallbackCookies(%q) = %s, want %s", cred, got, want)
		}
	}
}

func TestJWT(t *testing.T) {
	s := newTestServer(t)
	s.createUser("u1", "")
	cred := s.login("u1")
	auth := map[string]string{"X-Appwrite-Session": cred}
	r := s.do(req{method: "POST", path: "/v1/account/jwts", headers: auth})
	if r.status != 201 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	jwt := r.json(t)["jwt"].(string)
	if r := s.do(req{method: "GET", path: "/v1/account", headers: map[string]string{"X-Appwrite-JWT": jwt}}); r.status != 200 {
		t.Fatalf("jwt auth: %d %s", r.status, r.body)
	}
	if r := s.do(req{method: "POST", path: "/v1/account/jwt", headers: auth, body: map[string]any{"duration": 60}}); r.status != 201 {
		t.Fatalf("alias: %d %s", r.status, r.body)
	}
	wantError(t, s.do(req{method: "POST", path: "/v1/account/jwts", headers: auth, body: map[string]any{"duration": 3601}}), 400, "general_argument_invalid")
	wantError(t, s.do(req{method: "POST", path: "/v1/account/jwts", headers: map[string]string{"X-Appwrite-JWT": jwt}}), 403, "user_jwt_creation_denied")
	wantError(t, s.do(req{method: "GET", path: "/v1/account", headers: map[string]string{"X-Appwrite-JWT": jwt, "X-Appwrite-Session": cred}}), 403, "user_jwt_and_cookie_set")
	wantError(t, s.do(req{method: "GET", path: "/v1/account", headers: map[string]string{"X-Appwrite-JWT": jwt[:len(jwt)-4] + "AAAA"}}), 401, "user_jwt_invalid")
	wantError(t, s.do(req{method: "GET", path: "/v1/account", headers: map[string]string{"X-Nuvix-JWT": "not.a.jwt"}}), 401, "user_jwt_invalid")
	wantError(t, s.do(req{method: "POST", path: "/v1/account/jwts"}), 401, "general_unauthorized_scope")

	r = s.do(req{method: "GET", path: "/.well-known/jwks.json"})
	var set struct {
		Keys []map[string]string `json:"keys"`
	}
	if err := json.Unmarshal(r.body, &set); err != nil || len(set.Keys) != 1 || set.Keys[0]["kty"] != "OKP" || set.Keys[0]["crv"] != "Ed25519" {
		t.Fatalf("jwks %s", r.body)
	}
	// The JWT dies with its session.
	if r := s.do(req{method: "DELETE", path: "/v1/users/u1/sessions", key: true}); r.status != 204 {
		t.Fatalf("delete user sessions: %d", r.status)
	}
	wantError(t, s.do(req{method: "GET", path: "/v1/account", headers: map[string]string{"X-Appwrite-JWT": jwt}}), 401, "general_unauthorized_scope")
}

func TestUserSessionsAPI(t *testing.T) {
	s := newTestServer(t)
	s.createUser("u1", "")
	s.login("u1")
	r := s.do(req{method: "POST", path: "/v1/users/u1/sessions", key: true})
	if r.status != 201 || r.json(t)["provider"] != "server" {
		t.Fatalf("server session: %d %s", r.status, r.body)
	}
	cred := r.json(t)["secret"].(string)
	r = s.do(req{method: "GET", path: "/v1/users/u1/sessions", key: true})
	list := r.json(t)
	if list["total"] != float64(2) {
		t.Fatalf("%s", r.body)
	}
	first := list["sessions"].([]any)[0].(map[string]any)["$id"].(string)
	if r := s.do(req{method: "DELETE", path: "/v1/users/u1/sessions/" + first, key: true}); r.status != 204 {
		t.Fatalf("delete one: %d %s", r.status, r.body)
	}
	if r := s.do(req{method: "GET", path: "/v1/account", headers: map[string]string{"X-Appwrite-Session": cred}}); r.status != 200 {
		t.Fatalf("server session authenticates: %d", r.status)
	}
	wantError(t, s.do(req{method: "GET", path: "/v1/users/ghost/sessions", key: true}), 404, "user_not_found")
	wantError(t, s.do(req{method: "DELETE", path: "/v1/users/u1/sessions/nope", key: true}), 404, "user_session_not_found")
}

// TestExchangeRateLimit: limits.session_token, on the embedded store
// (counted in memory around the exchange) and on PostgreSQL (counted in
// the exchange's own step).
func TestExchangeRateLimit(t *testing.T) {
	onEachStore(t, nil, testExchangeRateLimit)
}

func testExchangeRateLimit(t *testing.T, s *testServer) {
	s.createUser("u1", "")
	secret := s.mint("u1", nil)
	body := map[string]any{"userId": "u1", "secret": "nothex"}
	for i := 0; i < 10; i++ {
		r := s.do(req{method: "POST", path: "/v1/account/sessions/token", body: body})
		wantError(t, r, 401, "user_invalid_token")
		if r.header.Get("X-RateLimit-Limit") != "10" {
			t.Fatalf("rate limit headers %v", r.header)
		}
	}
	r := s.do(req{method: "POST", path: "/v1/account/sessions/token", body: map[string]any{"userId": "u1", "secret": secret}})
	wantError(t, r, 429, "general_rate_limit_exceeded")
	// API key callers are not limited; the ten failures burned the token.
	wantError(t, s.do(req{method: "POST", path: "/v1/account/sessions/token", key: true, body: map[string]any{"userId": "u1", "secret": secret}}), 401, "user_invalid_token")
	if toks, err := s.d.core.ListTokens(context.Background(), "u1"); err != nil || len(toks) != 0 {
		t.Fatalf("tokens after the burn: %v %v", toks, err)
	}
}

// TestRateLimitedGuessesDoNotBurn: a guess the route limit refuses (429)
// never reaches the exchange, so it does not count towards
// tokens.max_attempts and cannot burn the victim's token.
func TestRateLimitedGuessesDoNotBurn(t *testing.T) {
	onEachStore(t, func(c *config.Config) { c.Limits.SessionToken = 3 }, testRateLimitedGuessesDoNotBurn)
}

func testRateLimitedGuessesDoNotBurn(t *testing.T, s *testServer) {
	s.createUser("u1", "")
	secret := s.mint("u1", nil)
	body := map[string]any{"userId": "u1", "secret": "nothex"}
	for i := range 3 + 2*config.Default().Tokens.MaxAttempts {
		want, typ := 429, "general_rate_limit_exceeded"
		if i < 3 {
			want, typ = 401, "user_invalid_token"
		}
		wantError(t, s.do(req{method: "POST", path: "/v1/account/sessions/token", body: body}), want, typ)
	}
	toks, err := s.d.core.ListTokens(context.Background(), "u1")
	if err != nil || len(toks) != 1 || toks[0].Attempts != 3 {
		t.Fatalf("tokens after 3 wrong guesses and 20 refused ones: %+v %v", toks, err)
	}
	if r := s.do(req{method: "POST", path: "/v1/account/sessions/token", key: true, body: map[string]any{"userId": "u1", "secret": secret}}); r.status != 201 {
		t.Fatalf("the victim's exchange: %d %s", r.status, r.body)
	}
}

// onEachStore runs test on a daemon on the embedded store and on one on
// PostgreSQL (skipped without HANDOFF_TEST_POSTGRES_DSN), each with
// change applied to its config.
func onEachStore(t *testing.T, change func(*config.Config), test func(*testing.T, *testServer)) {
	t.Run("bolt", func(t *testing.T) {
		if change == nil {
			test(t, newTestServer(t))
			return
		}
		test(t, newTestServer(t, change))
	})
	t.Run("postgres", func(t *testing.T) {
		s, _, notice := newPostgresServer(t, false, change)
		if s.key = keyRE.FindString(notice.String()); s.key == "" {
			t.Fatalf("no bootstrap key in %q", notice.String())
		}
		test(t, s)
	})
}

func TestHealthAndMetrics(t *testing.T) {
	s := newTestServer(t)
	for _, p := range []string{"/healthz", "/readyz"} {
		if r := s.do(req{method: "GET", path: p}); r.status != 200 {
			t.Fatalf("%s: %d %s", p, r.status, r.body)
		}
	}
	s.do(req{method: "GET", path: "/v1/users", key: true})
	r := s.do(req{method: "GET", path: "/metrics"})
	if !strings.Contains(string(r.body), `handoff_http_requests_total{route="GET /v1/users",status="200"} 1`) {
		t.Fatalf("metrics:\n%s", r.body)
	}
}

func TestCORS(t *testing.T) {
	s := newTestServer(t, func(c *config.Config) { c.CORS.Origins = []string{"https://app.example.com"} })
	r := s.do(req{method: "OPTIONS", path: "/v1/account", headers: map[string]string{"Origin": "https://app.example.com", "Access-Control-Request-Method": "GET"}})
	if r.status != 204 || r.header.Get("Access-Control-Allow-Origin") != "https://app.example.com" || r.header.Get("Access-Control-Allow-Credentials") != "true" {
		t.Fatalf("preflight: %d %v", r.status, r.header)
	}
	r = s.do(req{method: "GET", path: "/v1/account", headers: map[string]string{"Origin": "https://evil.example.net"}})
	if r.header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("foreign origin allowed: %v", r.header)
	}
}

// TestCORSUnknownOriginLogged: a page on an origin missing from
// cors.origins sees only "Failed to fetch"; the operator sees one WARN per
// origin naming the key, however often it calls, and the set of
// remembered origins stays bounded when a client sends endless ones.
func TestCORSUnknownOriginLogged(t *testing.T) {
	var logs lockedBuffer
	s := newTestServer(t, withLogs(&logs), func(c *config.Config) { c.CORS.Origins = []string{"https://app.example.com"} })
	for range 3 {
		s.do(req{method: "GET", path: "/v1/account", headers: map[string]string{"Origin": "https://forgot.example.com"}})
		s.do(req{method: "OPTIONS", path: "/v1/account", headers: map[string]string{"Origin": "https://forgot.example.com", "Access-Control-Request-Method": "GET"}})
	}
	s.do(req{method: "GET", path: "/v1/account", headers: map[string]string{"Origin": "https://app.example.com"}})
	s.do(req{method: "GET", path: "/v1/account", headers: map[string]string{"Origin": s.URL}})                                                               // the API's own page
	s.do(req{method: "POST", path: "/v1/account/sessions/oauth2/callback/apple/default", headers: map[string]string{"Origin": "https://appleid.apple.com"}}) // an IdP's form_post
	var warns []string
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, "level=WARN") && strings.Contains(l, "cors.origins") {
			warns = append(warns, l)
		}
	}
	if len(warns) != 1 || !strings.Contains(warns[0], "origin=https://forgot.example.com") {
		t.Fatalf("want one WARN naming cors.origins and the origin, got %q", warns)
	}
	for i := range maxUnknownOrigins + 50 {
		s.d.unknownOrigins.first(fmt.Sprintf("https://o%d.example", i))
	}
	if n := len(s.d.unknownOrigins.seen); n != maxUnknownOrigins {
		t.Fatalf("remembered %d origins, want the cap %d", n, maxUnknownOrigins)
	}
}

// TestResponseFormatWarning: the SDKs print X-Appwrite-Warning on every
// response; the current ones (node-appwrite 27 sends 1.9.5, the web SDK
// 27 sends 2.0.0 and 28 sends 2.3.0) must not get it, an SDK built for a
// newer server must.
func TestResponseFormatWarning(t *testing.T) {
	s := newTestServer(t)
	for _, tc := range []struct {
		format string
		warn   bool
	}{
		{"1.9.5", false}, // node-appwrite 27.1.0
		{"2.0.0", false}, // appwrite (web) 27.0.0
		{"2.3.0", false}, // appwrite (web) 28.0.0
		{"2.3.1", true},
		{"3.0.0", true},
	} {
		t.Run(tc.format, func(t *testing.T) {
			r := s.do(req{method: "GET", path: "/v1/account", headers: map[string]string{"X-Appwrite-Response-Format": tc.format}})
			if got := r.header.Get("X-Appwrite-Warning") != ""; got != tc.warn {
				t.Fatalf("warning %q, want one: %v", r.header.Get("X-Appwrite-Warning"), tc.warn)
			}
		})
	}
}

// TestStoreUnavailable: a store out of reach (PostgreSQL restarting) is a
// 503 the client may retry after a second, not a 500.
func TestStoreUnavailable(t *testing.T) {
	s := newTestServer(t)
	rec := httptest.NewRecorder()
	s.d.writeError(rec, httptest.NewRequest("GET", "/v1/account", nil), fmt.Errorf("postgres: acquire connection: %w", tokenstore.ErrUnavailable))
	var body map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatal(err)
	}
	if rec.Code != 503 || body["type"] != "store_unavailable" || body["code"] != float64(503) || rec.Header().Get("Retry-After") != "1" {
		t.Fatalf("%d %v %v", rec.Code, rec.Header(), body)
	}
	if strings.Contains(rec.Body.String(), "postgres") {
		t.Fatalf("the cause reached the client: %s", rec.Body)
	}
}
