package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/handoffd/handoff/config"
)

// The fuzz targets below drive the daemon's whole handler in process, as
// an anonymous client on the network would: any path, query, header and
// body. Whatever comes in, the answer must be one the API defines: never
// a 500 (an unexpected error, as a User-Agent with a byte that is not
// UTF-8 once gave; a 502 for a plugin's identity the core refuses and a
// 503 are defined answers), and every error in Appwrite's shape with its
// status.
// `go test ./daemon` runs their seed corpora; docs/security.md says how
// to fuzz for longer.

// fuzzServer is one daemon per fuzz process, with a user, a session, a JWT
// and the echo test plugin as a provider.
type fuzzServer struct {
	h          http.Handler
	d          *Daemon
	key        string
	userID     string
	credential string
	jwt        string
}

// newFuzzServer starts the daemon of one fuzz target (in every fuzzing
// worker process, which runs the target from the top).
func newFuzzServer(f *testing.F) *fuzzServer {
	f.Helper()
	cfg := config.Default()
	cfg.Data = f.TempDir()
	cfg.Limits.Enabled = false // the limits would answer 429 to most of a run
	cfg.Redirect.Allow = []string{"https://app.example/"}
	cfg.Providers = []config.Provider{echoProvider(f, "echo", nil)}
	var notice bytes.Buffer
	d, err := New(context.Background(), Options{Config: cfg, OpenStore: testOpenStore, Notice: &notice, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { d.Close() })
	s := &fuzzServer{h: d.Handler(), d: d, key: keyRE.FindString(notice.String()), userID: "fuzzuser"}
	s.setup(f)
	return s
}

// setup makes the user, a session and a JWT the targets can use.
func (s *fuzzServer) setup(f *testing.F) {
	r := s.serve(fuzzRequest{method: "POST", path: "/v1/users", key: true, body: `{"userId":"fuzzuser","email":"fuzz@example.com","name":"Fuzz"}`})
	if r.Code != 201 {
		f.Fatalf("create user: %d %s", r.Code, r.Body)
	}
	var session struct {
		Secret string `json:"secret"`
	}
	r = s.serve(fuzzRequest{method: "POST", path: "/v1/account/sessions/token", key: true, body: `{"userId":"fuzzuser","secret":"` + s.mint(f) + `"}`})
	if r.Code != 201 || json.Unmarshal(r.Body.Bytes(), &session) != nil {
		f.Fatalf("exchange: %d %s", r.Code, r.Body)
	}
	s.credential = session.Secret
	var jwt struct {
		JWT string `json:"jwt"`
	}
	r = s.serve(fuzzRequest{method: "POST", path: "/v1/account/jwts", headers: http.Header{"X-Appwrite-Session": {s.credential}}})
	if r.Code != 201 || json.Unmarshal(r.Body.Bytes(), &jwt) != nil {
		f.Fatalf("jwt: %d %s", r.Code, r.Body)
	}
	s.jwt = jwt.JWT
}

// mint returns a fresh secret of the fuzz user.
func (s *fuzzServer) mint(tb testing.TB) string {
	r := s.serve(fuzzRequest{method: "POST", path: "/v1/users/fuzzuser/tokens", key: true, body: `{}`})
	var tok struct {
		Secret string `json:"secret"`
	}
	if r.Code != 201 || json.Unmarshal(r.Body.Bytes(), &tok) != nil {
		tb.Fatalf("mint: %d %s", r.Code, r.Body)
	}
	return tok.Secret
}

// fuzzRequest is one request; the placeholders $USER, $SESSION, $JWT and
// $SECRET in path, query, body and header values become the fixture's
// values, so the fuzzer also explores requests that get past auth.
type fuzzRequest struct {
	method, path, query, body string
	headers                   http.Header
	key                       bool
}

func (s *fuzzServer) expand(tb testing.TB, v string) string {
	if strings.Contains(v, "$SECRET") {
		v = strings.ReplaceAll(v, "$SECRET", s.mint(tb))
	}
	return strings.NewReplacer("$USER", s.userID, "$SESSION", s.credential, "$JWT", s.jwt).Replace(v)
}

func (s *fuzzServer) serve(fr fuzzRequest) *httptest.ResponseRecorder {
	req := &http.Request{
		Method:     fr.method,
		URL:        &url.URL{Path: fr.path, RawQuery: fr.query},
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     http.Header{"X-Appwrite-Project": {"default"}, "Content-Type": {"application/json"}},
		Body:       io.NopCloser(strings.NewReader(fr.body)),
		Host:       "127.0.0.1:8080",
		RemoteAddr: "127.0.0.1:40000",
		RequestURI: fr.path,
	}
	req.ContentLength = int64(len(fr.body))
	if fr.key {
		req.Header.Set("X-Appwrite-Key", s.key)
	}
	for k, vs := range fr.headers {
		req.Header[http.CanonicalHeaderKey(k)] = vs
	}
	if h := req.Header.Get("Host"); h != "" {
		req.Host = h
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	w := httptest.NewRecorder()
	s.h.ServeHTTP(w, req.WithContext(ctx))
	return w
}

// check runs fr and fails on an answer the API does not define.
func (s *fuzzServer) check(t *testing.T, fr fuzzRequest) *httptest.ResponseRecorder {
	t.Helper()
	fr.path, fr.query, fr.body = s.expand(t, fr.path), s.expand(t, fr.query), s.expand(t, fr.body)
	for k, vs := range fr.headers {
		if len(vs) == 1 && vs[0] == "" {
			delete(fr.headers, k) // an empty fuzz argument: no such header
			continue
		}
		for i, v := range vs {
			if !validHeaderValue(v) || !validHeaderName(k) {
				t.Skip("net/http's server refuses this header before any handler")
			}
			vs[i] = s.expand(t, v)
		}
	}
	w := s.serve(fr)
	if w.Code == http.StatusInternalServerError {
		t.Fatalf("%s %s?%s: status %d, body %s", fr.method, fr.path, fr.query, w.Code, w.Body)
	}
	if host := fr.headers.Get("Host"); strings.ContainsAny(host, ";, \"") {
		for _, h := range append(w.Header().Values("Set-Cookie"), w.Header().Values("Location")...) {
			if strings.Contains(h, host) {
				t.Fatalf("the request's Host %q reached an answer header: %q", host, h)
			}
		}
	}
	if w.Code >= 400 {
		var e errorBody
		if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || e.Code != w.Code || e.Type == "" || e.Message == "" || e.Version != AppwriteVersion {
			t.Fatalf("%s %s: status %d with a body not in Appwrite's error shape: %q", fr.method, fr.path, w.Code, w.Body)
		}
	}
	return w
}

// validHeaderValue reports whether a server would pass v on (RFC 9110
// field-value: visible ASCII, obs-text bytes 0x80-0xff, space and tab).
func validHeaderValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

func validHeaderName(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		if c := k[i]; c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return true
}

// validPath reports whether p can arrive as a request's path: the server
// parses the request line, so p has no spaces or controls and starts at /.
func validPath(p string) bool {
	return strings.HasPrefix(p, "/") && validHeaderValue(p) && !strings.ContainsAny(p, " \t?#")
}

var fuzzMethods = []string{"GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"}

func FuzzExchange(f *testing.F) {
	s := newFuzzServer(f)
	f.Add(`{"userId":"$USER","secret":"$SECRET"}`, "curl/8.0", "", "", "")
	f.Add(`{"userId":"$USER","secret":"000000"}`, "Mozilla/5.0 \xff\xfe", "https://evil.example", "", "")
	f.Add(`{"userId":"$USER","secret":"$SECRET"}`, "", "", "a_session_default=$SESSION", "")
	f.Add(`{"userId":"$USER","secret":"$SECRET"}`, "", "", "", "api.example.com;samesite=strict;x=")
	f.Add(`{"userId":"`+strings.Repeat("u", 40)+`","secret":"`+strings.Repeat("a", 300)+`"}`, "", "null", "", "")
	f.Add(`{"userId":["$USER"],"secret":1e999}`, "", "", "", "")
	f.Add(`userId=$USER&secret=$SECRET`, "", "https://evil.example", "", "")
	f.Add(`{"userId":"$USER","secret":"$SECRET","userId":"other"}`, "node-appwrite", "", "", "")
	f.Fuzz(func(t *testing.T, body, ua, origin, cookie, host string) {
		fr := fuzzRequest{method: "POST", path: "/v1/account/sessions/token", body: body,
			headers: http.Header{"User-Agent": {ua}, "Origin": {origin}, "Cookie": {cookie}}}
		if host != "" {
			fr.headers.Set("Host", host)
		}
		s.check(t, fr)
	})
}

func FuzzVerify(f *testing.F) {
	s := newFuzzServer(f)
	f.Add("echo", `{"subject":"alice"}`, "curl/8.0", "")
	f.Add("echo", `{"subject":"alice"}`, "Mozilla/5.0 \xff", "")
	f.Add("echo", `{"subject":"`+strings.Repeat("s", 32<<10)+`"}`, "", "")
	f.Add("echo", `{"subject":"\u0000\ud800"}`, "", "203.0.113.9, 10.0.0.1")
	f.Add("echo", `{"op":"kvput","key":"\xff","value":"v","subject":"k"}`, "", "")
	f.Add("echo", `[1,2]`, "", "")
	f.Add("nope", `{}`, "", "")
	f.Add("echo%2Fx", `{"subject":"a"}`, "", "::1")
	f.Fuzz(func(t *testing.T, name, body, ua, xff string) {
		if fuzzCrashOp(body) {
			t.Skip("the echo plugin's ops that fail on purpose answer 500 by design")
		}
		p := "/v1/providers/" + name + "/verify"
		if !validPath(p) {
			t.Skip()
		}
		s.check(t, fuzzRequest{method: "POST", path: p, body: body,
			headers: http.Header{"User-Agent": {ua}, "X-Forwarded-For": {xff}}})
	})
}

// fuzzCrashOp reports whether an echo payload asks the plugin to fail on
// purpose (panic, crash, a plain error, hang or sleep). Go's JSON matches
// field names without case, so the check does too.
func fuzzCrashOp(body string) bool {
	var m map[string]any
	if json.Unmarshal([]byte(body), &m) != nil {
		return false
	}
	for k, v := range m {
		if !strings.EqualFold(k, "op") && !strings.EqualFold(k, "ms") {
			continue
		}
		if op, _ := v.(string); op != "" && op != "ok" && op != "log" && op != "kvput" && op != "kvget" && op != "kvonce" && op != "kvlist" {
			return true
		}
		if strings.EqualFold(k, "ms") {
			return true
		}
	}
	return false
}

func FuzzUsers(f *testing.F) {
	s := newFuzzServer(f)
	f.Add(uint8(1), "", "", `{"userId":"unique()","email":"a@example.com","name":"A"}`, true)
	f.Add(uint8(1), "", "", `{"userId":"x","email":"a\xff@example.com","name":"\x00\u202e"}`, true)
	f.Add(uint8(0), "", `queries[]={"method":"equal","attribute":"email","values":["fuzz@example.com"]}`, "", true)
	f.Add(uint8(0), "", `queries[]=limit(5)&queries[]=cursorAfter("$USER")&search=fu`, "", true)
	f.Add(uint8(0), "/$USER", "", "", true)
	f.Add(uint8(1), "/$USER/tokens", "", `{"length":129,"expire":59}`, true)
	f.Add(uint8(1), "/$USER/sessions", "", "", false)
	f.Add(uint8(4), "/$USER/sessions/nope", "", "", true)
	f.Add(uint8(1), "/$USER/providers/echo", "", `{"a":1}`, true)
	f.Fuzz(func(t *testing.T, method uint8, sub, query, body string, key bool) {
		p := "/v1/users" + sub
		if !validPath(p) || !validHeaderValue(query) || strings.ContainsAny(query, " #") {
			t.Skip()
		}
		if strings.Contains(sub, "$USER") && fuzzMethods[int(method)%len(fuzzMethods)] == "DELETE" && !strings.Contains(sub, "/sessions") {
			t.Skip("deleting the fixture user would end the run's fixture")
		}
		s.check(t, fuzzRequest{method: fuzzMethods[int(method)%len(fuzzMethods)], path: p, query: query, body: body, key: key})
	})
}

func FuzzSessions(f *testing.F) {
	s := newFuzzServer(f)
	f.Add(uint8(0), "", "$SESSION", "")
	f.Add(uint8(0), "/current", "", "a_session_default=$SESSION")
	f.Add(uint8(0), "/nope", "eyJpZCI6IngiLCJzZWNyZXQiOiJ5In0=", "")
	f.Add(uint8(0), "", "\xff\xfe", "a_session_default_legacy=%ZZ")
	f.Add(uint8(0), "", "$SESSION$SESSION", "")
	f.Fuzz(func(t *testing.T, method uint8, sub, session, cookie string) {
		m := fuzzMethods[int(method)%len(fuzzMethods)]
		if m == "DELETE" && strings.Contains(session+cookie, "$SESSION") {
			t.Skip("signing the fixture session out would end the run's fixture")
		}
		p := "/v1/account/sessions" + sub
		if !validPath(p) {
			t.Skip()
		}
		s.check(t, fuzzRequest{method: m, path: p,
			headers: http.Header{"X-Appwrite-Session": {session}, "Cookie": {cookie}}})
	})
}

func FuzzJWT(f *testing.F) {
	s := newFuzzServer(f)
	f.Add("/v1/account", "$JWT")
	f.Add("/v1/account/sessions", "$JWT.")
	f.Add("/v1/account/jwts", "$JWT")
	f.Add("/v1/account", "eyJhbGciOiJub25lIiwia2lkIjoieCJ9.eyJ1c2VySWQiOiJmdXp6dXNlciJ9.")
	f.Add("/v1/account", "eyJhbGciOiJFZERTQSIsImtpZCI6IlwiXHUwMDAwIn0.e30.AAAA")
	f.Add("/v1/account", strings.Repeat("a.", 5000))
	f.Fuzz(func(t *testing.T, path, jwt string) {
		if !validPath(path) {
			t.Skip()
		}
		m := "GET"
		if strings.HasSuffix(path, "/jwts") || strings.HasSuffix(path, "/jwt") {
			m = "POST"
		}
		s.check(t, fuzzRequest{method: m, path: path, headers: http.Header{"X-Appwrite-JWT": {jwt}}})
	})
}

func FuzzOAuth2(f *testing.F) {
	s := newFuzzServer(f)
	f.Add(false, "echo", "default", "state=x&code=y", "", "", "")
	f.Add(true, "echo", "default", "", "state=st-1&code=alice", "handoff_flow_0000000000000000=v", "api.example.com;samesite=strict;x=")
	f.Add(false, "echo", "default", "state="+strings.Repeat("s", 600), "", "", "")
	f.Add(false, "echo", "other", "error=access_denied&state=%ff", "", "", "")
	f.Add(false, "begin", "", "success=https://app.example/ok&failure=https://app.example/fail&scopes[]=openid", "", "", "")
	f.Add(false, "begin", "", "success=https://app.example/../admin&failure=javascript:alert(1)", "", "", "evil.example")
	f.Fuzz(func(t *testing.T, post bool, name, project, query, form, cookie, host string) {
		p := "/v1/account/sessions/oauth2/callback/" + name + "/" + project
		if name == "begin" {
			p = "/v1/account/tokens/oauth2/echo"
		}
		if !validPath(p) || !validHeaderValue(query) || strings.ContainsAny(query, " #") {
			t.Skip()
		}
		fr := fuzzRequest{method: "GET", path: p, query: query, headers: http.Header{"Cookie": {cookie}}}
		if host != "" {
			fr.headers.Set("Host", host)
		}
		if post {
			fr.method, fr.body = "POST", form
			fr.headers.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		s.check(t, fr)
	})
}
