package captcha

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/handoffd/handoff/providers/providertest"
	"github.com/handoffd/handoff/providers/sdk"
)

// The providers' documented test keys (see README.md).
const (
	hcaptchaSecret   = "0x0000000000000000000000000000000000000000"
	hcaptchaSitekey  = "10000000-ffff-ffff-ffff-000000000001"
	recaptchaSecret  = "6LeIxAcTAAAAAGG-vFI1TnRWxMZNFuojJ4WifJWe"
	turnstileSecret  = "1x0000000000000000000000000000000AA"
	clientIP         = "203.0.113.7"
	allowedHost      = "app.example.com"
	hcaptchaTestCode = "10000000-aaaa-bbbb-cccc-000000000001"
)

// siteverify is a provider's siteverify endpoint on loopback. It records
// the forms it receives and answers with answer.
type siteverify struct {
	*httptest.Server
	mu     sync.Mutex
	forms  []url.Values
	answer func(w http.ResponseWriter, r *http.Request)
}

func newSiteverify(t *testing.T, answer func(w http.ResponseWriter, r *http.Request)) *siteverify {
	t.Helper()
	s := &siteverify{answer: answer}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/x-www-form-urlencoded" {
			http.Error(w, "want a form POST", http.StatusMethodNotAllowed)
			return
		}
		if err := r.ParseForm(); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		s.mu.Lock()
		s.forms = append(s.forms, r.PostForm)
		answer := s.answer
		s.mu.Unlock()
		answer(w, r)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *siteverify) set(answer func(w http.ResponseWriter, r *http.Request)) {
	s.mu.Lock()
	s.answer = answer
	s.mu.Unlock()
}

func (s *siteverify) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.forms)
}

func (s *siteverify) last(t *testing.T) url.Values {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.forms) == 0 {
		t.Fatal("siteverify got no request")
	}
	return s.forms[len(s.forms)-1]
}

// sample reads a provider's answer from testdata and edits it.
func sample(t *testing.T, name string, edit func(m map[string]any)) []byte {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		edit(m)
	}
	out, _ := json.Marshal(m)
	return out
}

// answerWith answers body as the providers do: 200 and JSON.
func answerWith(body []byte) func(w http.ResponseWriter, r *http.Request) {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		_, _ = w.Write(body)
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

var modes = []string{"direct", "grpc"}

// connect returns a configured captcha verifier called directly, or
// through the go-plugin gRPC pair as the host calls it.
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

func payload(fields map[string]any) json.RawMessage {
	raw, _ := json.Marshal(fields)
	return raw
}

var tokenN atomic.Int64

// newToken returns a token not used before in this test binary.
func newToken(prefix string) string {
	return fmt.Sprintf("%s.%d.%d", prefix, time.Now().UnixNano(), tokenN.Add(1))
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

// TestProviders passes a token with each provider's real answer, and
// checks the form siteverify received.
func TestProviders(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cfg     map[string]any
		answer  string
		secret  string
		sitekey string
	}{
		{"hcaptcha", map[string]any{"provider": "hcaptcha", "secret": hcaptchaSecret, "sitekey": hcaptchaSitekey, "hostnames": []string{allowedHost}}, "hcaptcha_success", hcaptchaSecret, hcaptchaSitekey},
		{"hcaptcha without sitekey", map[string]any{"provider": "hcaptcha", "secret": hcaptchaSecret}, "hcaptcha_success", hcaptchaSecret, ""},
		{"recaptcha v2", map[string]any{"provider": "recaptcha", "secret": recaptchaSecret, "hostnames": []string{"APP.example.com"}}, "recaptcha_v2_success", recaptchaSecret, ""},
		{"recaptcha v3", map[string]any{"provider": "recaptcha", "version": 3, "secret": recaptchaSecret, "action": "login", "min_score": 0.7}, "recaptcha_v3_success", recaptchaSecret, ""},
		{"turnstile", map[string]any{"provider": "turnstile", "secret": turnstileSecret, "action": "login", "hostnames": []string{"other.example.com", allowedHost}}, "turnstile_success", turnstileSecret, ""},
	} {
		for _, mode := range modes {
			t.Run(tc.name+"/"+mode, func(t *testing.T) {
				sv := newSiteverify(t, answerWith(sample(t, tc.answer, nil)))
				tc.cfg["siteverify_url"] = sv.URL + "/siteverify"
				c := connect(t, mode, tc.cfg)

				token := newToken(tc.name)
				if err := c.Check(ctxT(t), sdk.Request{Payload: payload(map[string]any{"captcha": token, "other": 1}), ClientIP: clientIP}); err != nil {
					t.Fatalf("Check: %v", err)
				}
				form := sv.last(t)
				if form.Get("secret") != tc.secret || form.Get("response") != token || form.Get("remoteip") != clientIP {
					t.Errorf("siteverify got %v", form)
				}
				if got, has := form.Get("sitekey"), form.Has("sitekey"); got != tc.sitekey || has != (tc.sitekey != "") {
					t.Errorf("sitekey %q sent=%v, want %q", got, has, tc.sitekey)
				}
				fields := 3 // secret, response, remoteip
				if tc.sitekey != "" {
					fields++
				}
				if len(form) != fields {
					t.Errorf("siteverify got unexpected fields %v", form)
				}

				id, err := c.Verify(ctxT(t), sdk.Request{Payload: payload(map[string]any{"captcha": newToken(tc.name), "email": "Alice@Example.com"}), ClientIP: clientIP})
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				if id.Subject != "alice@example.com" || id.Email != "Alice@Example.com" || id.EmailVerified {
					t.Errorf("identity %+v", id)
				}
			})
		}
	}
}

// TestRefusals: what each provider says when it refuses, and the local
// rules (hostname, action, score), are invalid credentials naming why;
// a provider that cannot answer is unavailable.
func TestRefusals(t *testing.T) {
	hc := map[string]any{"provider": "hcaptcha", "secret": hcaptchaSecret, "sitekey": hcaptchaSitekey}
	v2 := map[string]any{"provider": "recaptcha", "secret": recaptchaSecret}
	v3 := map[string]any{"provider": "recaptcha", "version": 3, "secret": recaptchaSecret, "action": "login"}
	ts := map[string]any{"provider": "turnstile", "secret": turnstileSecret, "action": "login", "hostnames": []string{allowedHost}}
	withHosts := func(cfg map[string]any, hosts ...string) map[string]any {
		out := map[string]any{"hostnames": hosts}
		for k, v := range cfg {
			if k != "hostnames" {
				out[k] = v
			}
		}
		return out
	}
	status := func(code int) func(w http.ResponseWriter, r *http.Request) {
		return func(w http.ResponseWriter, r *http.Request) { http.Error(w, "upstream trouble", code) }
	}
	for _, tc := range []struct {
		name   string
		cfg    map[string]any
		answer func(t *testing.T) func(w http.ResponseWriter, r *http.Request)
		want   error
		msg    string
	}{
		{"hcaptcha invalid-input-response", hc, func(t *testing.T) func(http.ResponseWriter, *http.Request) {
			return answerWith(sample(t, "hcaptcha_failure", nil))
		}, sdk.ErrInvalidCredentials, "captcha failed: invalid-input-response"},
		{"hcaptcha dummy token with a real secret", hc, func(t *testing.T) func(http.ResponseWriter, *http.Request) {
			return answerWith(sample(t, "hcaptcha_failure", func(m map[string]any) { m["error-codes"] = []string{"not-using-dummy-secret"} }))
		}, sdk.ErrInvalidCredentials, "not-using-dummy-secret"},
		{"recaptcha timeout-or-duplicate", v2, func(t *testing.T) func(http.ResponseWriter, *http.Request) {
			return answerWith(sample(t, "recaptcha_failure", nil))
		}, sdk.ErrInvalidCredentials, "captcha failed: timeout-or-duplicate"},
		{"turnstile invalid-input-response", ts, func(t *testing.T) func(http.ResponseWriter, *http.Request) {
			return answerWith(sample(t, "turnstile_failure", nil))
		}, sdk.ErrInvalidCredentials, "captcha failed: invalid-input-response"},
		{"turnstile timeout-or-duplicate", ts, func(t *testing.T) func(http.ResponseWriter, *http.Request) {
			return answerWith(sample(t, "turnstile_failure", func(m map[string]any) { m["error-codes"] = []string{"timeout-or-duplicate"} }))
		}, sdk.ErrInvalidCredentials, "timeout-or-duplicate"},
		{"failure without codes", v2, func(t *testing.T) func(http.ResponseWriter, *http.Request) {
			return answerWith([]byte(`{"success": false}`))
		}, sdk.ErrInvalidCredentials, "captcha failed"},
		{"error codes cannot inject text", v2, func(t *testing.T) func(http.ResponseWriter, *http.Request) {
			return answerWith([]byte(`{"success": false, "error-codes": ["bad <script>\nalert", "x"]}`))
		}, sdk.ErrInvalidCredentials, "captcha failed: badscriptalert, x"},
		{"recaptcha v3 low score", v3, func(t *testing.T) func(http.ResponseWriter, *http.Request) {
			return answerWith(sample(t, "recaptcha_v3_success", func(m map[string]any) { m["score"] = 0.3 }))
		}, sdk.ErrInvalidCredentials, "captcha score 0.30 is below min_score 0.50"},
		{"recaptcha v3 without a score", v3, func(t *testing.T) func(http.ResponseWriter, *http.Request) {
			return answerWith(sample(t, "recaptcha_v2_success", func(m map[string]any) { m["action"] = "login" }))
		}, sdk.ErrInvalidCredentials, "no score"},
		{"recaptcha v3 wrong action", v3, func(t *testing.T) func(http.ResponseWriter, *http.Request) {
			return answerWith(sample(t, "recaptcha_v3_success", func(m map[string]any) { m["action"] = "signup" }))
		}, sdk.ErrInvalidCredentials, `captcha action "signup", want "login"`},
		{"turnstile wrong action", ts, func(t *testing.T) func(http.ResponseWriter, *http.Request) {
			return answerWith(sample(t, "turnstile_success", func(m map[string]any) { m["action"] = "checkout" }))
		}, sdk.ErrInvalidCredentials, `captcha action "checkout", want "login"`},
		{"turnstile wrong hostname", ts, func(t *testing.T) func(http.ResponseWriter, *http.Request) {
			return answerWith(sample(t, "turnstile_success", func(m map[string]any) { m["hostname"] = "evil.example.net" }))
		}, sdk.ErrInvalidCredentials, `captcha solved on "evil.example.net", not an allowed hostname`},
		{"hcaptcha wrong hostname", withHosts(hc, allowedHost), func(t *testing.T) func(http.ResponseWriter, *http.Request) {
			return answerWith(sample(t, "hcaptcha_success", func(m map[string]any) { m["hostname"] = "evil.example.net" }))
		}, sdk.ErrInvalidCredentials, "not an allowed hostname"},
		{"recaptcha no hostname", withHosts(v2, allowedHost), func(t *testing.T) func(http.ResponseWriter, *http.Request) {
			return answerWith(sample(t, "recaptcha_v2_success", func(m map[string]any) { delete(m, "hostname") }))
		}, sdk.ErrInvalidCredentials, `captcha solved on "", not an allowed hostname`},
		{"recaptcha android package", withHosts(v2, "com.example.app"), func(t *testing.T) func(http.ResponseWriter, *http.Request) {
			return answerWith(sample(t, "recaptcha_v2_success", func(m map[string]any) { delete(m, "hostname"); m["apk_package_name"] = "com.example.app" }))
		}, nil, ""},
		{"invalid-input-secret is ours", v2, func(t *testing.T) func(http.ResponseWriter, *http.Request) {
			return answerWith([]byte(`{"success": false, "error-codes": ["invalid-input-secret"]}`))
		}, sdk.ErrMisconfigured, "(invalid-input-secret)"},
		{"missing-input-secret is ours", ts, func(t *testing.T) func(http.ResponseWriter, *http.Request) {
			return answerWith([]byte(`{"success": false, "error-codes": ["missing-input-secret"]}`))
		}, sdk.ErrMisconfigured, "(missing-input-secret)"},
		{"sitekey-secret-mismatch is ours", hc, func(t *testing.T) func(http.ResponseWriter, *http.Request) {
			return answerWith([]byte(`{"success": false, "error-codes": ["sitekey-secret-mismatch"]}`))
		}, sdk.ErrMisconfigured, "(sitekey-secret-mismatch)"},
		{"turnstile internal-error", ts, func(t *testing.T) func(http.ResponseWriter, *http.Request) {
			return answerWith([]byte(`{"success": false, "error-codes": ["internal-error"], "messages": []}`))
		}, sdk.ErrUnavailable, ""},
		{"server 500", v2, func(t *testing.T) func(http.ResponseWriter, *http.Request) { return status(500) }, sdk.ErrUnavailable, ""},
		{"server 503", ts, func(t *testing.T) func(http.ResponseWriter, *http.Request) { return status(503) }, sdk.ErrUnavailable, ""},
		{"redirect not followed", v2, func(t *testing.T) func(http.ResponseWriter, *http.Request) {
			return func(w http.ResponseWriter, r *http.Request) {
				http.Redirect(w, r, "/elsewhere", http.StatusTemporaryRedirect)
			}
		}, sdk.ErrUnavailable, ""},
		{"not JSON", hc, func(t *testing.T) func(http.ResponseWriter, *http.Request) {
			return answerWith([]byte(`<html>maintenance</html>`))
		}, sdk.ErrUnavailable, ""},
	} {
		for _, mode := range modes {
			t.Run(tc.name+"/"+mode, func(t *testing.T) {
				sv := newSiteverify(t, tc.answer(t))
				cfg := map[string]any{"siteverify_url": sv.URL}
				for k, v := range tc.cfg {
					cfg[k] = v
				}
				c := connect(t, mode, cfg)
				err := c.Check(ctxT(t), sdk.Request{Payload: payload(map[string]any{"captcha": newToken("r")}), ClientIP: clientIP})
				if tc.want == nil {
					if err != nil {
						t.Fatal(err)
					}
					return
				}
				wantErr(t, err, tc.want, tc.msg)
				if sv.count() != 1 {
					t.Fatalf("siteverify called %d times", sv.count())
				}
			})
		}
	}
}

// TestTimeout: a siteverify that answers after the timeout is
// unavailable, at the timeout; the token was not judged, so it is
// forgotten and may be tried again.
func TestTimeout(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			ok := sample(t, "turnstile_success", nil)
			sv := newSiteverify(t, func(w http.ResponseWriter, r *http.Request) {
				select {
				case <-time.After(3 * time.Second):
				case <-r.Context().Done():
				}
			})
			c := connect(t, mode, map[string]any{"provider": "turnstile", "secret": turnstileSecret, "siteverify_url": sv.URL, "timeout": "150ms"})
			p := payload(map[string]any{"captcha": newToken("slow")})
			start := time.Now()
			err := c.Check(ctxT(t), sdk.Request{Payload: p})
			took := time.Since(start)
			wantErr(t, err, sdk.ErrUnavailable, "")
			if took < 150*time.Millisecond || took > 2*time.Second {
				t.Fatalf("timed out after %s, want about 150ms", took)
			}
			sv.set(answerWith(ok))
			if err := c.Check(ctxT(t), sdk.Request{Payload: p}); err != nil {
				t.Fatalf("the token is not usable after the provider came back: %v", err)
			}
		})
	}
}

// TestUnreachable: nothing listens at siteverify_url.
func TestUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	c := connect(t, "grpc", map[string]any{"provider": "hcaptcha", "secret": hcaptchaSecret, "siteverify_url": "http://" + addr + "/siteverify"})
	err = c.Check(ctxT(t), sdk.Request{Payload: payload(map[string]any{"captcha": newToken("down")})})
	wantErr(t, err, sdk.ErrUnavailable, "")
	if len(c.KV().Keys()) != 0 {
		t.Fatalf("a token siteverify never judged is remembered: %v", c.KV().Keys())
	}
}

// TestReplay: a token passes once, even where the provider would accept
// it again; of concurrent uses exactly one reaches the provider.
func TestReplay(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			body := sample(t, "recaptcha_v2_success", nil)
			sv := newSiteverify(t, func(w http.ResponseWriter, r *http.Request) {
				time.Sleep(20 * time.Millisecond) // widen the race
				answerWith(body)(w, r)
			})
			c := connect(t, mode, map[string]any{"provider": "recaptcha", "secret": recaptchaSecret, "siteverify_url": sv.URL})
			token := newToken("once")
			p := payload(map[string]any{"captcha": token, "email": "bob@example.com"})
			if err := c.Check(ctxT(t), sdk.Request{Payload: p}); err != nil {
				t.Fatal(err)
			}
			wantErr(t, c.Check(ctxT(t), sdk.Request{Payload: p}), sdk.ErrInvalidCredentials, "captcha token already used")
			_, err := c.Verify(ctxT(t), sdk.Request{Payload: p})
			wantErr(t, err, sdk.ErrInvalidCredentials, "already used")
			if sv.count() != 1 {
				t.Fatalf("siteverify saw the token %d times", sv.count())
			}
			keys := c.KV().Keys()
			if len(keys) != 1 || !strings.HasPrefix(keys[0], usedPrefix) || strings.Contains(keys[0], token) {
				t.Fatalf("KV keys %v: want one hash of the token", keys)
			}

			token = newToken("race")
			var wg sync.WaitGroup
			var passed, replays atomic.Int32
			for range 12 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					err := c.Check(context.Background(), sdk.Request{Payload: payload(map[string]any{"captcha": token})})
					switch {
					case err == nil:
						passed.Add(1)
					case errors.Is(err, sdk.ErrInvalidCredentials):
						replays.Add(1)
					default:
						t.Errorf("concurrent Check: %v", err)
					}
				}()
			}
			wg.Wait()
			if passed.Load() != 1 || replays.Load() != 11 || sv.count() != 2 {
				t.Fatalf("passed %d, replays %d, siteverify calls %d", passed.Load(), replays.Load(), sv.count())
			}
		})
	}
}

// TestPayloads: what Check and Verify read, and refuse without calling
// the provider.
func TestPayloads(t *testing.T) {
	sv := newSiteverify(t, answerWith(sample(t, "turnstile_success", nil)))
	c := connect(t, "grpc", map[string]any{"provider": "turnstile", "secret": turnstileSecret, "siteverify_url": sv.URL})
	for _, tc := range []struct {
		name string
		p    string
		msg  string
	}{
		{"no token", `{"email": "a@example.com"}`, `the captcha token is missing (payload field "captcha")`},
		{"empty token", `{"captcha": "", "email": "a@example.com"}`, "missing"},
		{"null token", `{"captcha": null, "email": "a@example.com"}`, "missing"},
		{"token not a string", `{"captcha": 42, "email": "a@example.com"}`, "captcha must be a string"},
		{"token too long", `{"captcha": "` + strings.Repeat("x", maxTokenLen+1) + `", "email": "a@example.com"}`, "longer than"},
		{"not an object", `["x"]`, "must be a JSON object"},
		{"null", `null`, "must be a JSON object"},
	} {
		t.Run("Check "+tc.name, func(t *testing.T) {
			wantErr(t, c.Check(ctxT(t), sdk.Request{Payload: json.RawMessage(tc.p)}), sdk.ErrInvalidRequest, tc.msg)
		})
		t.Run("Verify "+tc.name, func(t *testing.T) {
			_, err := c.Verify(ctxT(t), sdk.Request{Payload: json.RawMessage(tc.p)})
			wantErr(t, err, sdk.ErrInvalidRequest, tc.msg)
		})
	}
	for _, tc := range []struct {
		name string
		p    map[string]any
		msg  string
	}{
		{"neither email nor userId", map[string]any{}, "email or userId is required"},
		{"both", map[string]any{"email": "a@example.com", "userId": "u1"}, "not both"},
		{"bad email", map[string]any{"email": "not an address"}, "email is not a valid address"},
		{"display name", map[string]any{"email": "Alice <a@example.com>"}, "email is not a valid address"},
		{"email not a string", map[string]any{"email": true}, "email must be a string"},
		{"userId with spaces", map[string]any{"userId": "u 1"}, "userId must be"},
		{"userId too long", map[string]any{"userId": strings.Repeat("u", 257)}, "userId must be"},
	} {
		t.Run("Verify "+tc.name, func(t *testing.T) {
			tc.p["captcha"] = newToken("p")
			_, err := c.Verify(ctxT(t), sdk.Request{Payload: payload(tc.p)})
			wantErr(t, err, sdk.ErrInvalidRequest, tc.msg)
		})
	}
	if sv.count() != 0 {
		t.Fatalf("siteverify was called %d times for refused payloads", sv.count())
	}

	id, err := c.Verify(ctxT(t), sdk.Request{Payload: payload(map[string]any{"captcha": newToken("u"), "userId": "64a1f0c2e9b1"})})
	if err != nil || id.Subject != "64a1f0c2e9b1" || id.Email != "" {
		t.Fatalf("Verify userId: %+v %v", id, err)
	}

	// A custom field, as the widgets name theirs.
	c2 := connect(t, "direct", map[string]any{"provider": "turnstile", "secret": turnstileSecret, "siteverify_url": sv.URL, "field": "cf-turnstile-response"})
	token := newToken("field")
	if err := c2.Check(ctxT(t), sdk.Request{Payload: payload(map[string]any{"cf-turnstile-response": token})}); err != nil {
		t.Fatal(err)
	}
	if sv.last(t).Get("response") != token {
		t.Fatalf("siteverify got %v", sv.last(t))
	}
	wantErr(t, c2.Check(ctxT(t), sdk.Request{Payload: payload(map[string]any{"captcha": newToken("field")})}), sdk.ErrInvalidRequest, `"cf-turnstile-response"`)
}

// TestRemoteIP: remoteip is the client's IP without a port, and absent
// when the host knows none.
func TestRemoteIP(t *testing.T) {
	sv := newSiteverify(t, answerWith(sample(t, "hcaptcha_success", nil)))
	c := connect(t, "direct", map[string]any{"provider": "hcaptcha", "secret": hcaptchaSecret, "siteverify_url": sv.URL})
	for ip, want := range map[string]string{"": "", "2001:db8::1": "2001:db8::1", "198.51.100.4:5555": "198.51.100.4", "garbage": ""} {
		if err := c.Check(ctxT(t), sdk.Request{Payload: payload(map[string]any{"captcha": hcaptchaTestCode + newToken("")}), ClientIP: ip}); err != nil {
			t.Fatal(err)
		}
		form := sv.last(t)
		if form.Get("remoteip") != want || form.Has("remoteip") != (want != "") {
			t.Errorf("ClientIP %q: remoteip %q", ip, form.Get("remoteip"))
		}
	}
}

func TestDescribeAndEnroll(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			c := connect(t, mode, map[string]any{"provider": "turnstile", "secret": turnstileSecret})
			info, err := c.Describe(ctxT(t))
			if err != nil {
				t.Fatal(err)
			}
			if info.Name != "captcha" || info.ProvesIdentity || len(info.Flows) != 1 || info.Flows[0] != sdk.FlowDirect ||
				strings.Join(info.Capabilities, ",") != sdk.CapEnroller+","+sdk.CapGuard {
				t.Fatalf("Describe: %+v", info)
			}
			res, err := c.Enroll(ctxT(t), sdk.EnrollRequest{UserID: "64a1f0c2e9b1", Payload: json.RawMessage(`{}`)})
			if err != nil || res.Subject != "64a1f0c2e9b1" || string(res.Data) != `{"subject":"64a1f0c2e9b1"}` {
				t.Fatalf("Enroll: %+v %v", res, err)
			}
			_, err = c.Enroll(ctxT(t), sdk.EnrollRequest{UserID: "64a1f0c2e9b1", Payload: json.RawMessage(`{"email": "x"}`)})
			wantErr(t, err, sdk.ErrInvalidRequest, "the enroll payload is {}")
			_, err = c.Enroll(ctxT(t), sdk.EnrollRequest{UserID: "", Payload: json.RawMessage(`{}`)})
			wantErr(t, err, sdk.ErrInvalidRequest, "userId")
		})
	}
}

func TestUnconfigured(t *testing.T) {
	v := New()
	_, err := v.Verify(ctxT(t), sdk.Request{Payload: json.RawMessage(`{"captcha": "x", "email": "a@example.com"}`)})
	wantErr(t, err, sdk.ErrUnavailable, "not configured")
}

func TestConformance(t *testing.T) {
	sv := newSiteverify(t, answerWith(sample(t, "turnstile_success", nil)))
	providertest.Run(t, providertest.Suite{
		New: New,
		Config: map[string]any{
			"provider": "turnstile", "secret": turnstileSecret, "siteverify_url": sv.URL,
			"hostnames": []string{allowedHost}, "action": "login", "timeout": "2s",
		},
		Valid: func(t *testing.T, c providertest.Conn) json.RawMessage {
			return payload(map[string]any{"captcha": newToken("conformance"), "email": "conformance@example.com"})
		},
	})
}

// TestRedirectsNotFollowed: siteverify answers with a redirect to another
// server. The form carries the secret key and the user's token, so
// following a 307 or 308 would post them there: the check fails as
// unavailable, saying the status and neither secret, and the other server
// receives nothing.
func TestRedirectsNotFollowed(t *testing.T) {
	var hits atomic.Int64
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		_, _ = w.Write([]byte(`{"success": true}`))
	}))
	t.Cleanup(elsewhere.Close)
	for _, status := range []int{http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther, http.StatusTemporaryRedirect, http.StatusPermanentRedirect} {
		for _, mode := range modes {
			t.Run(fmt.Sprintf("%d %s", status, mode), func(t *testing.T) {
				sv := newSiteverify(t, func(w http.ResponseWriter, r *http.Request) {
					http.Redirect(w, r, elsewhere.URL+"/siteverify", status)
				})
				c := connect(t, mode, map[string]any{"provider": "turnstile", "secret": turnstileSecret, "siteverify_url": sv.URL})
				token := newToken("redirected")
				err := c.Check(ctxT(t), sdk.Request{Payload: payload(map[string]any{"captcha": token})})
				wantErr(t, err, sdk.ErrUnavailable, fmt.Sprintf("answered %d", status))
				if strings.Contains(err.Error(), turnstileSecret) || strings.Contains(err.Error(), token) {
					t.Fatalf("the error %q holds a secret", err)
				}
				if n := hits.Load(); n != 0 {
					t.Fatalf("the redirect was followed: the other server got %d requests", n)
				}
			})
		}
	}
}
