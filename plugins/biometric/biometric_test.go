package biometric

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/handoffd/handoff/providers/providertest"
	"github.com/handoffd/handoff/providers/sdk"
)

func newSecret(t testing.TB) string {
	t.Helper()
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "whsec_" + base64.StdEncoding.EncodeToString(b)
}

func webhook(t testing.TB, secret string) *standardwebhooks.Webhook {
	t.Helper()
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatal(err)
	}
	return wh
}

// call is one request the vendor received.
type call struct {
	Body   vendorRequest
	Header http.Header
}

// reply is how the vendor answers a call.
type reply struct {
	status   int            // default 200
	body     map[string]any // default: the echo of a match
	raw      []byte         // the exact body, instead of body
	id       string         // webhook-id; default fresh
	ts       time.Time      // webhook-timestamp; default now
	secret   string         // signing secret; default the vendor's
	unsigned bool
	sleep    time.Duration
	redirect string
	tamper   bool // change the body after signing it
}

// vendor is a biometric matching service on loopback: it checks each
// request's Standard Webhooks signature and answers signed.
type vendor struct {
	*httptest.Server
	t         *testing.T
	reqCheck  *standardwebhooks.Webhook
	respSign  string
	mu        sync.Mutex
	calls     []call
	respond   func(c call) reply
	lastReply []byte
	lastHdr   http.Header
	n         int
}

func newVendor(t *testing.T, secret string) *vendor {
	t.Helper()
	v := &vendor{t: t, reqCheck: webhook(t, secret), respSign: secret}
	v.respond = func(c call) reply { return reply{} }
	v.Server = httptest.NewServer(http.HandlerFunc(v.serve))
	t.Cleanup(v.Close)
	return v
}

// match is the default answer body: verified, a subject, a high score.
func match(c call) map[string]any {
	return map[string]any{"request_id": c.Body.RequestID, "verified": true, "subject": "bio-" + c.Body.UserID, "score": 0.97}
}

func (v *vendor) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	if err := v.reqCheck.Verify(body, r.Header); err != nil {
		v.t.Errorf("vendor: the request's signature does not verify: %v", err)
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	var c call
	if err := json.Unmarshal(body, &c.Body); err != nil {
		v.t.Errorf("vendor: request body %s: %v", body, err)
	}
	c.Header = r.Header.Clone()
	v.mu.Lock()
	v.calls = append(v.calls, c)
	v.n++
	n := v.n
	rp := v.respond(c)
	v.mu.Unlock()

	if rp.sleep > 0 {
		select {
		case <-time.After(rp.sleep):
		case <-r.Context().Done():
			return
		}
	}
	if rp.redirect != "" {
		http.Redirect(w, r, rp.redirect, http.StatusFound)
		return
	}
	out := rp.raw
	if out == nil {
		b := rp.body
		if b == nil {
			b = match(c)
		}
		out, _ = json.Marshal(b)
	}
	if rp.id == "" {
		rp.id = "msg_vendor_" + strconv.Itoa(n) + "_" + c.Body.RequestID
	}
	if rp.ts.IsZero() {
		rp.ts = time.Now()
	}
	if rp.secret == "" {
		rp.secret = v.respSign
	}
	w.Header().Set("Content-Type", "application/json")
	if !rp.unsigned {
		sig, _ := webhook(v.t, rp.secret).Sign(rp.id, rp.ts, out)
		w.Header().Set("webhook-id", rp.id)
		w.Header().Set("webhook-timestamp", strconv.FormatInt(rp.ts.Unix(), 10))
		w.Header().Set("webhook-signature", sig)
	}
	v.mu.Lock()
	v.lastReply, v.lastHdr = out, w.Header().Clone()
	v.mu.Unlock()
	if rp.status == 0 {
		rp.status = http.StatusOK
	}
	if rp.tamper {
		out = bytes.Replace(out, []byte(`"verified":false`), []byte(`"verified":true`), 1)
	}
	w.WriteHeader(rp.status)
	_, _ = w.Write(out)
}

func (v *vendor) set(f func(c call) reply) {
	v.mu.Lock()
	v.respond = f
	v.mu.Unlock()
}

func (v *vendor) last(t *testing.T) call {
	t.Helper()
	v.mu.Lock()
	defer v.mu.Unlock()
	if len(v.calls) == 0 {
		t.Fatal("the vendor got no request")
	}
	return v.calls[len(v.calls)-1]
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

var modes = []string{"direct", "grpc"}

func connect(t *testing.T, mode string, cfg map[string]any) providertest.Conn {
	t.Helper()
	var c providertest.Conn
	if mode == "direct" {
		c = providertest.Direct(New)
	} else {
		c = providertest.Open(t, New)
	}
	if err := c.Configure(ctxT(t), providertest.RawConfig(t, cfg)); err != nil {
		t.Fatalf("Configure: %v", err)
	}
	return c
}

func wantErr(t *testing.T, err, sentinel error, msg string) {
	t.Helper()
	if !errors.Is(err, sentinel) {
		t.Fatalf("error %v (code %v), want %v", err, sdk.CodeOf(err), sentinel)
	}
	if msg != "" && !strings.Contains(err.Error(), msg) {
		t.Fatalf("error %q lacks %q", err, msg)
	}
}

const sample = `{"kind": "keystroke", "timings": [112, 87, 140, 95], "device": "kbd-1"}`

func verifyReq(fields map[string]any) sdk.Request {
	fields["sample"] = json.RawMessage(sample)
	raw, _ := json.Marshal(fields)
	return sdk.Request{Payload: raw, ClientIP: "203.0.113.7", RequestID: "r1"}
}

func jsonEqual(a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	xa, _ := json.Marshal(x)
	ya, _ := json.Marshal(y)
	return bytes.Equal(xa, ya)
}

// TestVerifyAccepted: the request is signed, carries the sample and the
// claims, and the vendor's headers; a signed match is the identity.
func TestVerifyAccepted(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			secret := newSecret(t)
			vd := newVendor(t, secret)
			c := connect(t, mode, map[string]any{"url": vd.URL + "/v1/match", "secret": secret, "headers": map[string]string{"X-Api-Key": "vendor-key-1", "Authorization": "Bearer abc"}})
			id, err := c.Verify(ctxT(t), verifyReq(map[string]any{"userId": "u1", "subject": "bio-u1", "captcha": "guard token"}))
			if err != nil {
				t.Fatal(err)
			}
			if id.Subject != "bio-u1" || id.Email != "" {
				t.Fatalf("identity %+v", id)
			}
			got := vd.last(t)
			if got.Body.Type != "verify" || !strings.HasPrefix(got.Body.RequestID, "req_") || len(got.Body.RequestID) != 36 ||
				got.Body.UserID != "u1" || got.Body.Subject != "bio-u1" || !jsonEqual(got.Body.Payload, []byte(sample)) {
				t.Errorf("the vendor got %+v (payload %s)", got.Body, got.Body.Payload)
			}
			h := got.Header
			if h.Get("X-Api-Key") != "vendor-key-1" || h.Get("Authorization") != "Bearer abc" || h.Get("Content-Type") != "application/json" ||
				!strings.HasPrefix(h.Get("webhook-id"), "msg_") || !strings.HasPrefix(h.Get("webhook-signature"), "v1,") {
				t.Errorf("the vendor got headers %v", h)
			}

			// No claims: the vendor identifies (1:N); no user_id or subject sent.
			id, err = c.Verify(ctxT(t), verifyReq(map[string]any{}))
			if err != nil || id.Subject != "bio-" {
				t.Fatalf("Verify without claims: %+v %v", id, err)
			}
			if b := vd.last(t).Body; b.UserID != "" || b.Subject != "" {
				t.Errorf("claims sent: %+v", b)
			}
			var raw map[string]any
			_ = json.Unmarshal(mustJSON(vd.last(t).Body), &raw)
			if _, ok := raw["user_id"]; ok {
				t.Error("user_id sent empty instead of left out")
			}
		})
	}
}

func mustJSON(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

// TestVerifyRefusals: every way an answer is refused, and what it costs.
func TestVerifyRefusals(t *testing.T) {
	other := newSecret(t)
	for _, tc := range []struct {
		name    string
		cfg     map[string]any
		reply   func(c call) reply
		want    error
		msg     string
		maxTime time.Duration
	}{
		{"low score", nil, func(c call) reply {
			b := match(c)
			b["score"] = 0.5
			return reply{body: b}
		}, sdk.ErrInvalidCredentials, "biometric score 0.50 is below min_score 0.90", 0},
		{"score at min_score", map[string]any{"min_score": 0.5}, func(c call) reply {
			b := match(c)
			b["score"] = 0.5
			return reply{body: b}
		}, nil, "", 0},
		{"verified false", nil, func(c call) reply {
			return reply{body: map[string]any{"request_id": c.Body.RequestID, "verified": false, "score": 0.2, "reason": "no match\n<b>"}}
		}, sdk.ErrInvalidCredentials, "biometric sample not verified: no match<b>", 0},
		{"forged signature", nil, func(c call) reply { return reply{secret: other} }, sdk.ErrUnavailable, "bad or missing signature", 0},
		{"unsigned", nil, func(c call) reply { return reply{unsigned: true} }, sdk.ErrUnavailable, "bad or missing signature", 0},
		{"body changed after signing", nil, func(c call) reply {
			b := match(c)
			b["verified"] = false
			return reply{body: b, tamper: true}
		}, sdk.ErrUnavailable, "bad or missing signature", 0},
		{"stale timestamp", nil, func(c call) reply { return reply{ts: time.Now().Add(-6 * time.Minute)} }, sdk.ErrUnavailable, "stale", 0},
		{"future timestamp", nil, func(c call) reply { return reply{ts: time.Now().Add(6 * time.Minute)} }, sdk.ErrUnavailable, "in the future", 0},
		{"within tolerance", nil, func(c call) reply { return reply{ts: time.Now().Add(-4 * time.Minute)} }, nil, "", 0},
		{"tolerance configured", map[string]any{"tolerance": "1m"}, func(c call) reply { return reply{ts: time.Now().Add(-90 * time.Second)} }, sdk.ErrUnavailable, "stale", 0},
		{"tolerance configured, future", map[string]any{"tolerance": 60}, func(c call) reply { return reply{ts: time.Now().Add(90 * time.Second)} }, sdk.ErrUnavailable, "future", 0},
		{"wrong request_id", nil, func(c call) reply {
			b := match(c)
			b["request_id"] = "req_00000000000000000000000000000000"
			return reply{body: b}
		}, sdk.ErrUnavailable, "another request", 0},
		{"no request_id", nil, func(c call) reply {
			b := match(c)
			delete(b, "request_id")
			return reply{body: b}
		}, sdk.ErrUnavailable, "another request", 0},
		{"no score", nil, func(c call) reply {
			b := match(c)
			delete(b, "score")
			return reply{body: b}
		}, sdk.ErrUnavailable, "no score", 0},
		{"no subject", nil, func(c call) reply {
			b := match(c)
			b["subject"] = ""
			return reply{body: b}
		}, sdk.ErrUnavailable, "no valid subject", 0},
		{"signed garbage", nil, func(c call) reply { return reply{raw: []byte("<html>")} }, sdk.ErrUnavailable, "not the expected JSON", 0},
		{"vendor 500", nil, func(c call) reply { return reply{status: 500, raw: []byte(`{"error":"db down"}`)} }, sdk.ErrUnavailable, "answered 500", 0},
		{"vendor 503 unsigned", nil, func(c call) reply { return reply{status: 503, unsigned: true, raw: []byte("busy")} }, sdk.ErrUnavailable, "answered 503", 0},
		{"vendor 401 (our API key)", nil, func(c call) reply { return reply{status: 401, raw: []byte("{}")} }, sdk.ErrUnavailable, "answered 401", 0},
		{"vendor refuses the sample", nil, func(c call) reply { return reply{status: 422, raw: []byte(`{"error":"too short"}`)} }, sdk.ErrInvalidRequest, "the vendor refused the sample (status 422)", 0},
		{"redirect not followed", nil, func(c call) reply { return reply{redirect: "/elsewhere"} }, sdk.ErrUnavailable, "answered 302", 0},
		{"vendor slow", map[string]any{"timeout": "200ms"}, func(c call) reply { return reply{sleep: 3 * time.Second} }, sdk.ErrUnavailable, "unreachable", 2 * time.Second},
		{"claimed subject differs", nil, func(c call) reply {
			b := match(c)
			b["subject"] = "bio-someone-else"
			return reply{body: b}
		}, sdk.ErrInvalidCredentials, "another subject than the one claimed", 0},
	} {
		for _, mode := range modes {
			t.Run(tc.name+"/"+mode, func(t *testing.T) {
				secret := newSecret(t)
				vd := newVendor(t, secret)
				vd.set(tc.reply)
				cfg := map[string]any{"url": vd.URL, "secret": secret}
				for k, v := range tc.cfg {
					cfg[k] = v
				}
				c := connect(t, mode, cfg)
				start := time.Now()
				id, err := c.Verify(ctxT(t), verifyReq(map[string]any{"userId": "u1", "subject": "bio-u1"}))
				if tc.maxTime > 0 && time.Since(start) > tc.maxTime {
					t.Errorf("took %s", time.Since(start))
				}
				if tc.want == nil {
					if err != nil || id.Subject != "bio-u1" {
						t.Fatalf("%+v %v", id, err)
					}
					return
				}
				wantErr(t, err, tc.want, tc.msg)
			})
		}
	}
}

// TestReplay: a signed answer is good for its request, once.
func TestReplay(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			secret := newSecret(t)
			vd := newVendor(t, secret)
			c := connect(t, mode, map[string]any{"url": vd.URL, "secret": secret})
			if _, err := c.Verify(ctxT(t), verifyReq(map[string]any{})); err != nil {
				t.Fatal(err)
			}
			vd.mu.Lock()
			oldBody, oldHdr := vd.lastReply, vd.lastHdr
			vd.mu.Unlock()

			// An attacker replays the earlier answer, headers and all.
			replay := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				for k, v := range oldHdr {
					w.Header()[k] = v
				}
				_, _ = w.Write(oldBody)
			}))
			defer replay.Close()
			c2 := connect(t, mode, map[string]any{"url": replay.URL, "secret": secret})
			_, err := c2.Verify(ctxT(t), verifyReq(map[string]any{}))
			wantErr(t, err, sdk.ErrUnavailable, "another request")

			// A vendor (or a relay) reusing a webhook-id for an answer that
			// does echo the request: the id was seen, so it is refused.
			vd.set(func(c call) reply { return reply{id: "msg_reused"} })
			if _, err := c.Verify(ctxT(t), verifyReq(map[string]any{})); err != nil {
				t.Fatalf("first use of the id: %v", err)
			}
			_, err = c.Verify(ctxT(t), verifyReq(map[string]any{}))
			wantErr(t, err, sdk.ErrUnavailable, "replayed")
			marks := 0
			for _, k := range c.KV().Keys() {
				if strings.HasPrefix(k, seenPrefix) {
					marks++
				}
			}
			if marks != 2 {
				t.Fatalf("seen marks %v", c.KV().Keys())
			}
		})
	}
}

// TestVendorDown: nothing listens at url.
func TestVendorDown(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	c := connect(t, "grpc", map[string]any{"url": "http://" + addr + "/match", "secret": newSecret(t)})
	start := time.Now()
	_, err = c.Verify(ctxT(t), verifyReq(map[string]any{}))
	wantErr(t, err, sdk.ErrUnavailable, "unreachable")
	_, err = c.Enroll(ctxT(t), sdk.EnrollRequest{UserID: "u1", Payload: json.RawMessage(`{"sample": ` + sample + `}`)})
	wantErr(t, err, sdk.ErrUnavailable, "unreachable")
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("took %s", took)
	}
}

// TestResponseSecret: a vendor that signs with its own secret.
func TestResponseSecret(t *testing.T) {
	secret, vendorSecret := newSecret(t), newSecret(t)
	vd := newVendor(t, secret)
	vd.respSign = vendorSecret
	c := connect(t, "direct", map[string]any{"url": vd.URL, "secret": secret, "response_secret": vendorSecret})
	if _, err := c.Verify(ctxT(t), verifyReq(map[string]any{})); err != nil {
		t.Fatal(err)
	}
	c2 := connect(t, "direct", map[string]any{"url": vd.URL, "secret": secret})
	_, err := c2.Verify(ctxT(t), verifyReq(map[string]any{}))
	wantErr(t, err, sdk.ErrUnavailable, "signature")
}

func TestEnroll(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			secret := newSecret(t)
			vd := newVendor(t, secret)
			vd.set(func(c call) reply {
				if c.Body.Type == "enroll" {
					return reply{body: map[string]any{"request_id": c.Body.RequestID, "enrolled": true, "subject": "tmpl-" + c.Body.UserID}}
				}
				b := match(c)
				b["subject"] = "tmpl-u1"
				return reply{body: b}
			})
			c := connect(t, mode, map[string]any{"url": vd.URL, "secret": secret})
			res, err := c.Enroll(ctxT(t), sdk.EnrollRequest{UserID: "u1", Payload: json.RawMessage(`{"sample": ` + sample + `}`)})
			if err != nil || res.Subject != "tmpl-u1" || string(res.Data) != `{"subject":"tmpl-u1"}` {
				t.Fatalf("Enroll: %+v %v", res, err)
			}
			got := vd.last(t).Body
			if got.Type != "enroll" || got.UserID != "u1" || !jsonEqual(got.Payload, []byte(sample)) {
				t.Fatalf("the vendor got %+v", got)
			}
			if v, err := c.KV().Get(ctxT(t), userPrefix+"u1"); err != nil || string(v) != "tmpl-u1" {
				t.Fatalf("KV: %q %v", v, err)
			}

			// Verify for u1 matches u1's subject; for u2, whose enrolled
			// subject differs, the same match is refused.
			if id, err := c.Verify(ctxT(t), verifyReq(map[string]any{"userId": "u1"})); err != nil || id.Subject != "tmpl-u1" {
				t.Fatalf("Verify u1: %+v %v", id, err)
			}
			if err := c.KV().Put(ctxT(t), userPrefix+"u2", []byte("tmpl-u2"), 0); err != nil {
				t.Fatal(err)
			}
			_, err = c.Verify(ctxT(t), verifyReq(map[string]any{"userId": "u2"}))
			wantErr(t, err, sdk.ErrInvalidCredentials, "another subject than the user's")

			vd.set(func(c call) reply {
				return reply{body: map[string]any{"request_id": c.Body.RequestID, "enrolled": false, "reason": "face not found"}}
			})
			_, err = c.Enroll(ctxT(t), sdk.EnrollRequest{UserID: "u1", Payload: json.RawMessage(`{"sample": {}}`)})
			wantErr(t, err, sdk.ErrInvalidRequest, "the vendor did not enroll the sample: face not found")
			vd.set(func(c call) reply {
				return reply{body: map[string]any{"request_id": c.Body.RequestID, "enrolled": true}}
			})
			_, err = c.Enroll(ctxT(t), sdk.EnrollRequest{UserID: "u1", Payload: json.RawMessage(`{"sample": {}}`)})
			wantErr(t, err, sdk.ErrUnavailable, "no valid subject")
			vd.set(func(c call) reply {
				return reply{secret: newSecret(t), body: map[string]any{"request_id": c.Body.RequestID, "enrolled": true, "subject": "x"}}
			})
			_, err = c.Enroll(ctxT(t), sdk.EnrollRequest{UserID: "u1", Payload: json.RawMessage(`{"sample": {}}`)})
			wantErr(t, err, sdk.ErrUnavailable, "signature")
		})
	}
}

// TestPayloads: what Verify and Enroll refuse without calling the vendor.
func TestPayloads(t *testing.T) {
	secret := newSecret(t)
	vd := newVendor(t, secret)
	c := connect(t, "grpc", map[string]any{"url": vd.URL, "secret": secret})
	for name, p := range map[string]string{
		"no sample":       `{"userId": "u1"}`,
		"null sample":     `{"sample": null}`,
		"userId a number": `{"userId": 5, "sample": {}}`,
		"userId control":  `{"userId": "u\u0001", "sample": {}}`,
		"subject long":    `{"subject": "` + strings.Repeat("s", 257) + `", "sample": {}}`,
		"array":           `[{"sample": {}}]`,
	} {
		_, err := c.Verify(ctxT(t), sdk.Request{Payload: json.RawMessage(p)})
		if !errors.Is(err, sdk.ErrInvalidRequest) {
			t.Errorf("Verify %s: %v", name, err)
		}
	}
	for name, e := range map[string]sdk.EnrollRequest{
		"no sample":     {UserID: "u1", Payload: json.RawMessage(`{}`)},
		"unknown field": {UserID: "u1", Payload: json.RawMessage(`{"sample": {}, "userId": "u2"}`)},
		"garbage":       {UserID: "u1", Payload: json.RawMessage(`garbage`)},
		"no user":       {UserID: "", Payload: json.RawMessage(`{"sample": {}}`)},
	} {
		_, err := c.Enroll(ctxT(t), e)
		if !errors.Is(err, sdk.ErrInvalidRequest) {
			t.Errorf("Enroll %s: %v", name, err)
		}
	}
	vd.mu.Lock()
	n := len(vd.calls)
	vd.mu.Unlock()
	if n != 0 {
		t.Fatalf("the vendor was called %d times", n)
	}
	// Any JSON value is a sample.
	for _, s := range []string{`"opaque-reference-123"`, `[1,2,3]`, `{}`} {
		if _, err := c.Verify(ctxT(t), sdk.Request{Payload: json.RawMessage(`{"sample": ` + s + `}`)}); err != nil {
			t.Errorf("sample %s: %v", s, err)
		}
	}
}

func TestDescribe(t *testing.T) {
	c := connect(t, "grpc", map[string]any{"url": "http://127.0.0.1:9", "secret": newSecret(t)})
	info, err := c.Describe(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if info.Name != "biometric" || !info.ProvesIdentity || strings.Join(info.Flows, ",") != sdk.FlowDirect || strings.Join(info.Capabilities, ",") != sdk.CapEnroller {
		t.Fatalf("Describe: %+v", info)
	}
	_, err = New().Verify(ctxT(t), verifyReq(map[string]any{}))
	wantErr(t, err, sdk.ErrUnavailable, "not configured")
}

func TestConformance(t *testing.T) {
	secret := newSecret(t)
	vd := newVendor(t, secret)
	providertest.Run(t, providertest.Suite{
		New:    New,
		Config: map[string]any{"url": vd.URL, "secret": secret, "timeout": "2s"},
		Valid: func(t *testing.T, c providertest.Conn) json.RawMessage {
			return json.RawMessage(`{"userId": "conformance", "sample": ` + sample + `}`)
		},
	})
}

// TestRedirectsNotFollowed: the vendor answers with a redirect to another
// server. The request is signed and carries the sample and the vendor's
// headers (an API key), so following a 307 or 308 would re-post them
// there: Verify and Enroll fail as unavailable, saying the status and no
// secret, and the other server receives nothing.
func TestRedirectsNotFollowed(t *testing.T) {
	var hits atomic.Int64
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
	}))
	t.Cleanup(elsewhere.Close)
	for _, status := range []int{http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther, http.StatusTemporaryRedirect, http.StatusPermanentRedirect} {
		for _, mode := range modes {
			t.Run(fmt.Sprintf("%d %s", status, mode), func(t *testing.T) {
				vd := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					http.Redirect(w, r, elsewhere.URL+r.URL.Path, status)
				}))
				t.Cleanup(vd.Close)
				secret := newSecret(t)
				c := connect(t, mode, map[string]any{"url": vd.URL + "/match", "secret": secret, "headers": map[string]string{"X-Api-Key": "vendor-key-1"}})
				_, err := c.Verify(ctxT(t), verifyReq(map[string]any{}))
				wantErr(t, err, sdk.ErrUnavailable, fmt.Sprintf("answered %d", status))
				_, err2 := c.Enroll(ctxT(t), sdk.EnrollRequest{UserID: "u1", Payload: json.RawMessage(`{"sample": ` + sample + `}`)})
				wantErr(t, err2, sdk.ErrUnavailable, fmt.Sprintf("answered %d", status))
				for _, e := range []error{err, err2} {
					if strings.Contains(e.Error(), "vendor-key-1") || strings.Contains(e.Error(), strings.TrimPrefix(secret, "whsec_")) {
						t.Fatalf("the error %q holds a secret", e)
					}
				}
				if n := hits.Load(); n != 0 {
					t.Fatalf("the redirect was followed: the other server got %d requests", n)
				}
			})
		}
	}
}
