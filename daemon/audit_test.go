package daemon

import (
	"bufio"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/handoffd/handoff/config"
)

// readAudit parses an audit file: one JSON object a line.
func readAudit(t *testing.T, path string) []map[string]any {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []map[string]any
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("audit line %q: %v", sc.Text(), err)
		}
		out = append(out, m)
	}
	return out
}

// scrape reads /metrics with the Prometheus text parser.
func scrape(t *testing.T, s *testServer) map[string]*dto.MetricFamily {
	t.Helper()
	res, err := http.Get(s.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(res.Body)
	if err != nil {
		t.Fatalf("/metrics does not parse: %v", err)
	}
	return mfs
}

// metricValue is the value of the series of name with labels (a
// histogram's count), and whether it exists.
func metricValue(mfs map[string]*dto.MetricFamily, name string, labels map[string]string) (float64, bool) {
	mf, ok := mfs[name]
	if !ok {
		return 0, false
	}
next:
	for _, m := range mf.GetMetric() {
		got := map[string]string{}
		for _, l := range m.GetLabel() {
			got[l.GetName()] = l.GetValue()
		}
		for k, v := range labels {
			if got[k] != v {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.GetCounter().GetValue(), true
		case m.Gauge != nil:
			return m.GetGauge().GetValue(), true
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount()), true
		}
	}
	return 0, false
}

// TestAuditTrail runs a known sequence of sign-ins, refusals and admin
// calls and checks that the audit log holds exactly the expected events
// in order, that each refusal left one WARN line with its request id and
// reason, that no secret, token or key reached the file or the logs, and
// that /metrics parses and counts the same sequence.
func TestAuditTrail(t *testing.T) {
	auditPath := filepath.Join(t.TempDir(), "audit.jsonl")
	logs := &lockedBuffer{}
	s := newTestServer(t, func(c *config.Config) {
		c.Providers = []config.Provider{echoProvider(t, "echo", nil)}
		c.Tokens.MaxAttempts = 2
		c.Limits.SessionToken = 3
		c.Audit.Sink, c.Audit.Path = config.AuditFile, auditPath
	}, withLogs(logs))
	exchange := func(userID, secret string) resp {
		t.Helper()
		return s.do(req{method: "POST", path: "/v1/account/sessions/token", body: map[string]any{"userId": userID, "secret": secret}})
	}

	s.createUser("u1", "u1@example.com")
	s1 := s.mint("u1", nil)
	wantError(t, exchange("u1", "badbad"), 401, "user_invalid_token")
	ok := exchange("u1", s1)
	if ok.status != 201 {
		t.Fatalf("exchange: %d %s", ok.status, ok.body)
	}
	cred := ok.header.Get("X-Fallback-Cookies")
	v := s.verify("echo", map[string]any{"subject": "alice"}, nil)
	if v.status != 201 {
		t.Fatalf("verify: %d %s", v.status, v.body)
	}
	alice, s2 := v.json(t)["userId"].(string), v.json(t)["secret"].(string)
	refused := s.verify("echo", map[string]any{"op": "error", "code": "invalid_credentials"}, nil)
	wantError(t, refused, 401, "user_invalid_credentials")
	wantError(t, exchange(alice, "badbad"), 401, "user_invalid_token")
	wantError(t, exchange(alice, "badbad"), 401, "user_invalid_token") // the second wrong guess burns s2
	wantError(t, exchange(alice, s2), 401, "user_invalid_token")
	wantError(t, exchange(alice, "badbad"), 429, "general_rate_limit_exceeded")
	wantError(t, exchange("ghost", "badbad"), 401, "user_invalid_token")
	wantError(t, s.do(req{method: "GET", path: "/v1/account/sessions/oauth2/callback/echo/default?state=nope"}), 400, "user_oauth2_bad_request")
	var session string
	var fallback map[string]string
	if err := json.Unmarshal([]byte(cred), &fallback); err != nil {
		t.Fatalf("X-Fallback-Cookies %q", cred)
	}
	for _, v := range fallback {
		session = v
	}
	if r := s.do(req{method: "DELETE", path: "/v1/account/sessions/current", headers: map[string]string{"X-Appwrite-Session": session}}); r.status != 204 {
		t.Fatalf("delete session: %d %s", r.status, r.body)
	}
	if r := s.do(req{method: "DELETE", path: "/v1/users/u1", key: true}); r.status != 204 {
		t.Fatalf("delete user: %d %s", r.status, r.body)
	}

	mfs := scrape(t, s)
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"handoff_token_exchanges_total", map[string]string{"result": "ok"}, 1},
		{"handoff_token_exchanges_total", map[string]string{"result": "invalid"}, 5},
		{"handoff_token_exchanges_total", map[string]string{"result": "limited"}, 1},
		{"handoff_tokens_burned_total", nil, 1},
		{"handoff_tokens_minted_total", map[string]string{"provider": "api"}, 1},
		{"handoff_tokens_minted_total", map[string]string{"provider": "echo"}, 1},
		{"handoff_sessions_created_total", map[string]string{"via": "token"}, 1},
		{"handoff_sessions_deleted_total", nil, 1},
		{"handoff_verifications_total", map[string]string{"provider": "echo", "result": "ok"}, 1},
		{"handoff_verifications_total", map[string]string{"provider": "echo", "result": "user_invalid_credentials"}, 1},
		{"handoff_oauth2_failures_total", map[string]string{"provider": "echo", "reason": "state_unknown"}, 1},
		{"handoff_rate_limited_total", map[string]string{"route": "POST /v1/account/sessions/token"}, 1},
		{"handoff_provider_health", map[string]string{"provider": "echo", "state": "up"}, 1},
		{"handoff_provider_health", map[string]string{"provider": "echo", "state": "down"}, 0},
		{"handoff_provider_restarts_total", map[string]string{"provider": "echo"}, 0},
		{"handoff_provider_call_duration_seconds", map[string]string{"provider": "echo", "method": "verify", "result": "ok"}, 1},
		{"handoff_provider_call_duration_seconds", map[string]string{"provider": "echo", "method": "verify", "result": "error"}, 1},
		{"handoff_audit_events_total", map[string]string{"event": "token.exchange_failed"}, 6},
		{"handoff_audit_dropped_total", nil, 0},
		{"handoff_http_requests_total", map[string]string{"route": "POST /v1/users", "status": "201"}, 1},
		{"handoff_http_request_duration_seconds", map[string]string{"route": "POST /v1/account/sessions/token", "status": "401"}, 5},
	} {
		if got, ok := metricValue(mfs, c.name, c.labels); !ok || got != c.want {
			t.Errorf("%s%v = %v (present %v), want %v", c.name, c.labels, got, ok, c.want)
		}
	}
	for _, name := range []string{"go_goroutines", "go_memstats_heap_alloc_bytes", "process_start_time_seconds", "process_resident_memory_bytes"} {
		if _, ok := mfs[name]; !ok {
			t.Errorf("/metrics has no %s (runtime and process collectors)", name)
		}
	}
	if _, ok := mfs["handoff_store_operation_duration_seconds"]; !ok {
		t.Error("/metrics has no store operation latency")
	}

	s.d.Close() // flush the audit log
	events := readAudit(t, auditPath)
	want := []struct{ event, actor, user, reason string }{
		{"key.created", "system", "", "bootstrap"},
		{"provider.up", "system", "", ""},
		{"user.created", "key:", "u1", ""},
		{"token.minted", "key:", "u1", ""},
		{"token.exchange_failed", "anonymous", "u1", "wrong_secret"},
		{"token.exchanged", "anonymous", "u1", ""},
		{"session.created", "anonymous", "u1", ""},
		{"verify.succeeded", "anonymous", alice, ""},
		{"token.minted", "anonymous", alice, ""},
		{"verify.failed", "anonymous", "", "user_invalid_credentials"},
		{"token.exchange_failed", "anonymous", alice, "wrong_secret"},
		{"token.exchange_failed", "anonymous", alice, "wrong_secret"},
		{"token.burned", "anonymous", alice, "max_attempts"},
		{"token.exchange_failed", "anonymous", alice, "wrong_secret"},
		{"token.exchange_failed", "anonymous", alice, "rate_limited"},
		{"token.exchange_failed", "anonymous", "ghost", "unknown_user"},
		{"oauth2.failed", "anonymous", "", "state_unknown"},
		{"session.deleted", "user:u1", "u1", ""},
		{"user.deleted", "key:", "u1", ""},
	}
	var got []string
	for _, ev := range events {
		got = append(got, ev["event"].(string))
	}
	if len(events) != len(want) {
		t.Fatalf("audit events:\n%s\nwant %d", strings.Join(got, "\n"), len(want))
	}
	fields := []string{"time", "event", "request_id", "actor", "ip", "user_agent", "provider", "user_id", "outcome", "reason"}
	for i, w := range want {
		ev := events[i]
		for _, f := range fields {
			if _, ok := ev[f]; !ok {
				t.Errorf("event %d (%s) has no %s: %v", i, w.event, f, ev)
			}
		}
		actor, _ := ev["actor"].(string)
		if ev["event"] != w.event || !strings.HasPrefix(actor, w.actor) || ev["user_id"] != w.user || ev["reason"] != w.reason {
			t.Errorf("event %d = %v, want %+v", i, ev, w)
		}
		wantOutcome := "success"
		if eventName(w.event).failure() {
			wantOutcome = "failure"
		}
		if ev["outcome"] != wantOutcome {
			t.Errorf("event %d (%s) outcome %v, want %s", i, w.event, ev["outcome"], wantOutcome)
		}
		if w.actor != "system" && (ev["request_id"] == "" || ev["ip"] != "127.0.0.1") {
			t.Errorf("event %d (%s) lacks its request id or ip: %v", i, w.event, ev)
		}
	}
	if events[9]["request_id"] != refused.header.Get("X-Request-Id") || events[9]["provider"] != "echo" {
		t.Errorf("verify.failed %v does not carry the answer's X-Request-Id %q", events[9], refused.header.Get("X-Request-Id"))
	}

	// One WARN line per failure, with the request id and the reason.
	out := logs.String()
	warn := "level=WARN msg=verify.failed request_id=" + refused.header.Get("X-Request-Id") + " provider=echo user_id=\"\" reason=user_invalid_credentials"
	if !strings.Contains(out, warn) {
		t.Errorf("no WARN line %q in the logs:\n%s", warn, out)
	}
	for event, n := range map[string]int{"token.exchange_failed": 6, "token.burned": 1, "verify.failed": 1, "oauth2.failed": 1} {
		if got := strings.Count(out, "level=WARN msg="+event+" "); got != n {
			t.Errorf("%d WARN lines for %s, want %d", got, event, n)
		}
	}

	// No secret anywhere: the minted secrets, the session, the API key.
	raw, _ := os.ReadFile(auditPath)
	for what, secret := range map[string]string{"token secret": s1, "verify secret": s2, "session": session, "api key": s.key} {
		if secret == "" {
			t.Fatalf("no %s to look for", what)
		}
		if strings.Contains(string(raw), secret) {
			t.Errorf("the audit log holds the %s", what)
		}
		if strings.Contains(out, secret) {
			t.Errorf("the logs hold the %s", what)
		}
	}
}

// TestAuditReopen: logrotate renames the audit file and sends SIGHUP;
// lines after that go to a new file at audit.path, none are lost.
func TestAuditReopen(t *testing.T) {
	dir := t.TempDir()
	auditPath := filepath.Join(dir, "audit.jsonl")
	s := newTestServer(t, func(c *config.Config) {
		c.Audit.Sink, c.Audit.Path = config.AuditFile, auditPath
	})
	s.createUser("before", "")
	waitFor(t, func() bool { return len(readAudit(t, auditPath)) == 2 }) // key.created, user.created
	if err := os.Rename(auditPath, auditPath+".1"); err != nil {
		t.Fatal(err)
	}
	s.createUser("between", "") // still written to the renamed file
	waitFor(t, func() bool { return len(readAudit(t, auditPath+".1")) == 3 })
	if err := s.d.ReopenAudit(); err != nil {
		t.Fatal(err)
	}
	s.createUser("after", "")
	s.d.Close()
	old, fresh := readAudit(t, auditPath+".1"), readAudit(t, auditPath)
	if len(old) != 3 || old[2]["user_id"] != "between" {
		t.Fatalf("rotated file: %v", old)
	}
	if len(fresh) != 1 || fresh[0]["user_id"] != "after" {
		t.Fatalf("new file: %v", fresh)
	}
	if fi, err := os.Stat(auditPath); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("new audit file: %v %v", fi.Mode(), err)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestAuditWebhook: the webhook sink posts batches of events in the
// Standard Webhooks envelope, signed, and retries a failed post under the
// same webhook-id.
func TestAuditWebhook(t *testing.T) {
	defer func(d time.Duration) { auditRetryBase = d }(auditRetryBase)
	auditRetryBase = 10 * time.Millisecond
	const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	verifier, _ := standardwebhooks.NewWebhook(secret)
	var (
		mu     sync.Mutex
		failed = 2
		ids    []string
		users  []string
	)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := verifier.Verify(body, r.Header); err != nil {
			t.Errorf("audit webhook signature: %v", err)
			w.WriteHeader(400)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		ids = append(ids, r.Header.Get("webhook-id"))
		if failed > 0 {
			failed--
			w.WriteHeader(503)
			return
		}
		var env struct {
			Type      string `json:"type"`
			Timestamp string `json:"timestamp"`
			Data      struct {
				Events []Event `json:"events"`
			} `json:"data"`
		}
		if err := json.Unmarshal(body, &env); err != nil || env.Type != "audit.events" || env.Timestamp == "" || len(env.Data.Events) == 0 {
			t.Errorf("audit webhook body %s", body)
		}
		for _, ev := range env.Data.Events {
			if ev.Event == "user.created" {
				users = append(users, ev.UserID)
			}
		}
	}))
	defer hook.Close()
	s := newTestServer(t, func(c *config.Config) {
		c.Audit.Sink = config.AuditWebhook
		c.Audit.Webhook = config.Webhook{URL: hook.URL, Secret: secret, Attempts: 5, Timeout: time.Second}
	})
	for _, id := range []string{"w1", "w2", "w3"} {
		s.createUser(id, "")
	}
	s.d.Close()
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(users, ",") != "w1,w2,w3" {
		t.Fatalf("user.created delivered for %v", users)
	}
	if len(ids) < 3 || ids[0] != ids[1] || ids[1] != ids[2] {
		t.Fatalf("webhook ids %v: the retries of a batch keep its id", ids)
	}
}

// TestAuditDeadSinkNeverBlocks: a webhook sink that never answers holds no
// sign-in: the requests stay fast, the events beyond the buffer are
// dropped, counted and logged, and Close is bounded.
func TestAuditDeadSinkNeverBlocks(t *testing.T) {
	defer func(d time.Duration) { auditDrainTimeout = d }(auditDrainTimeout)
	auditDrainTimeout = 200 * time.Millisecond
	release := make(chan struct{})
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer hook.Close()
	defer close(release)
	logs := &lockedBuffer{}
	s := newTestServer(t, func(c *config.Config) {
		c.Audit.Sink, c.Audit.Buffer = config.AuditWebhook, 4
		c.Audit.Webhook = config.Webhook{URL: hook.URL, Secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", Attempts: 3, Timeout: 10 * time.Second}
	}, withLogs(logs))
	start := time.Now()
	for i := range 30 {
		s.createUser("dead"+string(rune('a'+i%26))+string(rune('a'+i/26)), "")
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("30 requests took %v with a dead audit sink", took)
	}
	mfs := scrape(t, s)
	if dropped, _ := metricValue(mfs, "handoff_audit_dropped_total", nil); dropped < 20 {
		t.Fatalf("handoff_audit_dropped_total = %v, want at least 20 of 31 events", dropped)
	}
	if !strings.Contains(logs.String(), "audit events dropped") {
		t.Fatal("the drops were not logged")
	}
	start = time.Now()
	s.d.Close()
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("Close took %v with a dead audit sink", took)
	}
}

// TestAuditStdout: the stdout sink writes one JSON line per event, in
// order, and Close flushes what is buffered.
func TestAuditStdout(t *testing.T) {
	var out lockedBuffer
	a, err := newAuditor(config.Audit{Sink: config.AuditStdout, Batch: 2, Buffer: 16}, slog.New(slog.DiscardHandler), newMetrics(), &out)
	if err != nil || a == nil {
		t.Fatalf("newAuditor: %v %v", a, err)
	}
	for _, id := range []string{"a", "b", "c"} {
		a.emit(Event{Event: string(evUserCreated), UserID: id})
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != 3 {
		t.Fatalf("stdout: %q", out.String())
	}
	for i, id := range []string{"a", "b", "c"} {
		var ev Event
		if err := json.Unmarshal([]byte(lines[i]), &ev); err != nil || ev.UserID != id || ev.Event != "user.created" {
			t.Fatalf("line %d: %q", i, lines[i])
		}
	}
	if a, err := newAuditor(config.Audit{}, nil, newMetrics(), &out); a != nil || err != nil {
		t.Fatalf("sink off: %v %v", a, err)
	}
}
