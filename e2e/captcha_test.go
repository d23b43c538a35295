package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// capSiteverify is a Turnstile siteverify endpoint on loopback: tokens
// starting with "pass" succeed (solved on app.example.com, action login),
// "fail" ones fail with invalid-input-response, "down" ones get a 500.
type capSiteverify struct {
	*httptest.Server
	mu    sync.Mutex
	forms []url.Values
}

func newCapSiteverify(t *testing.T) *capSiteverify {
	t.Helper()
	s := &capSiteverify{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil || r.Method != http.MethodPost {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		s.mu.Lock()
		s.forms = append(s.forms, r.PostForm)
		s.mu.Unlock()
		token := r.PostForm.Get("response")
		w.Header().Set("Content-Type", "application/json")
		switch {
		case strings.HasPrefix(token, "pass"):
			fmt.Fprintf(w, `{"success": true, "challenge_ts": %q, "hostname": "app.example.com", "error-codes": [], "action": "login", "cdata": "", "metadata": {"interactive": false}}`,
				time.Now().UTC().Format("2006-01-02T15:04:05.000Z"))
		case strings.HasPrefix(token, "down"):
			http.Error(w, "internal", http.StatusInternalServerError)
		default:
			fmt.Fprint(w, `{"success": false, "error-codes": ["invalid-input-response"], "messages": []}`)
		}
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *capSiteverify) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.forms)
}

func (s *capSiteverify) last() url.Values {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.forms) == 0 {
		return nil
	}
	return s.forms[len(s.forms)-1]
}

// capDelivery is what the daemon's webhook delivers: the data of its
// Standard Webhooks envelope.
type capDelivery struct {
	UserID   string `json:"userId"`
	Secret   string `json:"secret"`
	Expire   string `json:"expire"`
	Provider string `json:"provider"`
	Email    string `json:"email"`
	Phone    string `json:"phone"`
}

// newCapWebhook is an app backend's webhook endpoint: it accepts only
// deliveries signed per Standard Webhooks with secret, and passes them on.
func newCapWebhook(t *testing.T, secret string) (*httptest.Server, <-chan capDelivery) {
	t.Helper()
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan capDelivery, 16)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := wh.Verify(body, r.Header); err != nil {
			t.Errorf("webhook: signature does not verify: %v", err)
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		// The Standard Webhooks envelope, with the delivery as data.
		var env struct {
			Type      string      `json:"type"`
			Timestamp time.Time   `json:"timestamp"`
			Data      capDelivery `json:"data"`
		}
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&env); err != nil || env.Type != "token.minted" || env.Timestamp.IsZero() {
			t.Errorf("webhook: body %s: %v", body, err)
		}
		got <- env.Data
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close)
	return srv, got
}

func capReceive(t *testing.T, got <-chan capDelivery) capDelivery {
	t.Helper()
	select {
	case d := <-got:
		return d
	case <-time.After(10 * time.Second):
		t.Fatal("the webhook got no delivery")
	}
	return capDelivery{}
}

const (
	capTurnstileSecret = "1x0000000000000000000000000000000AA"
	capWebhookSecret   = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwaGVsbG8K"
)

// TestCaptchaLogin is the seed's "captcha-protected login" through the
// real daemon and the built-in captcha plugin: a client solves a
// (Turnstile) captcha and posts its token with an email; the daemon
// creates the user and delivers the one-time secret to the app's backend
// by a signed webhook, never in the answer; the client exchanges it for a
// session. (A captcha provider configured to answer with the secret does
// not start: TestCaptchaInBandRefused.)
func TestCaptchaLogin(t *testing.T) {
	sv := newCapSiteverify(t)
	hook, deliveries := newCapWebhook(t, capWebhookSecret)
	d := startDaemon(t, fmt.Sprintf(`
providers:
  - name: captcha
    kind: captcha
    config:
      provider: turnstile
      secret: %[1]s
      siteverify_url: %[2]s/turnstile/v0/siteverify
      hostnames: [app.example.com]
      action: login
      timeout: 2s
    users: {create: true}
    deliver:
      via: webhook
      webhook:
        url: %[3]s/hooks/handoff
        secret: %[4]s
        attempts: 1
`, capTurnstileSecret, sv.URL, hook.URL, capWebhookSecret))

	// The client signs in with a token and an email: 201, no secret.
	status, token := call(t, d, "POST", "/v1/providers/captcha/verify", "", "", map[string]any{"captcha": "pass-1", "email": "Carol@Example.com"})
	want(t, "verify", status, http.StatusCreated, token)
	if token["secret"] != "" || token["userId"] == "" || token["$id"] == "" || token["expire"] == "" {
		t.Fatalf("verify answered %v: want a token model with an empty secret", token)
	}
	form := sv.last()
	if form.Get("secret") != capTurnstileSecret || form.Get("response") != "pass-1" || form.Get("remoteip") != "127.0.0.1" || form.Has("sitekey") {
		t.Fatalf("siteverify got %v", form)
	}

	// The backend got the secret, signed; it hands it to the client.
	del := capReceive(t, deliveries)
	if del.UserID != token["userId"] || del.Secret == "" || del.Provider != "captcha" || del.Email != "carol@example.com" {
		t.Fatalf("delivered %+v for token %v", del, token)
	}
	status, session := call(t, d, "POST", "/v1/account/sessions/token", d.Key, "", map[string]any{"userId": del.UserID, "secret": del.Secret})
	want(t, "exchange", status, http.StatusCreated, session)
	sessionSecret, _ := session["secret"].(string)
	if sessionSecret == "" || session["userId"] != del.UserID {
		t.Fatalf("exchange answered %v", session)
	}
	status, account := call(t, d, "GET", "/v1/account", "", sessionSecret, nil)
	want(t, "account", status, http.StatusOK, account)
	if account["$id"] != del.UserID || account["email"] != "carol@example.com" || account["emailVerification"] != false {
		t.Fatalf("account %v, want user %s with an unverified email", account, del.UserID)
	}

	// A second sign-in with a new token finds the same user.
	status, again := call(t, d, "POST", "/v1/providers/captcha/verify", "", "", map[string]any{"captcha": "pass-2", "email": "carol@example.com"})
	want(t, "second verify", status, http.StatusCreated, again)
	if d2 := capReceive(t, deliveries); d2.UserID != del.UserID || again["userId"] != del.UserID {
		t.Fatalf("second sign-in went to %s / %v, want %s", d2.UserID, again["userId"], del.UserID)
	}

	// A replayed token is refused by handoff without asking the provider.
	calls := sv.count()
	status, replay := call(t, d, "POST", "/v1/providers/captcha/verify", "", "", map[string]any{"captcha": "pass-1", "email": "carol@example.com"})
	want(t, "replay", status, http.StatusUnauthorized, replay)
	if replay["type"] != "user_invalid_credentials" || !strings.Contains(fmt.Sprint(replay["message"]), "already used") || sv.count() != calls {
		t.Fatalf("replay answered %v (siteverify calls %d → %d)", replay, calls, sv.count())
	}
	// A token the provider refuses; no token; the provider down.
	status, failed := call(t, d, "POST", "/v1/providers/captcha/verify", "", "", map[string]any{"captcha": "fail-1", "email": "carol@example.com"})
	want(t, "refused token", status, http.StatusUnauthorized, failed)
	if !strings.Contains(fmt.Sprint(failed["message"]), "invalid-input-response") {
		t.Fatalf("refused token answered %v", failed)
	}
	status, missing := call(t, d, "POST", "/v1/providers/captcha/verify", "", "", map[string]any{"email": "carol@example.com"})
	want(t, "no token", status, http.StatusBadRequest, missing)
	status, down := call(t, d, "POST", "/v1/providers/captcha/verify", "", "", map[string]any{"captcha": "down-1", "email": "carol@example.com"})
	want(t, "siteverify down", status, http.StatusServiceUnavailable, down)
	if down["type"] != "provider_unavailable" {
		t.Fatalf("siteverify down answered %v", down)
	}
	select {
	case extra := <-deliveries:
		t.Fatalf("a refused sign-in was delivered: %+v", extra)
	default:
	}

	// {captcha, userId}: the backend links its existing user once (enroll),
	// then a sign-in naming the user delivers that user's secret.
	status, frank := call(t, d, "POST", "/v1/users", d.Key, "", map[string]any{"userId": "unique()", "name": "Frank"})
	want(t, "create user", status, http.StatusCreated, frank)
	frankID, _ := frank["$id"].(string)
	status, linked := call(t, d, "POST", "/v1/users/"+frankID+"/providers/captcha", d.Key, "", map[string]any{})
	want(t, "enroll", status, http.StatusCreated, linked)
	if linked["subject"] != frankID {
		t.Fatalf("enroll answered %v", linked)
	}
	status, byID := call(t, d, "POST", "/v1/providers/captcha/verify", "", "", map[string]any{"captcha": "pass-4", "userId": frankID})
	want(t, "verify by userId", status, http.StatusCreated, byID)
	if d3 := capReceive(t, deliveries); d3.UserID != frankID || byID["userId"] != frankID || d3.Secret == "" {
		t.Fatalf("sign-in by userId delivered %+v / %v, want %s", d3, byID, frankID)
	}

	if logs := d.logs.String(); strings.Contains(logs, capTurnstileSecret) || strings.Contains(logs, del.Secret) {
		t.Fatal("a secret reached the daemon's log")
	}
}

// TestCaptchaInBandRefused is the attack of issue 9 section 1: a captcha
// proves that someone is there, not who, so a captcha provider that hands
// the secret back in an HTTP answer (response, or redirect, which used to
// put it in the verify answer too) gives anyone the session of any user
// whose email they know. `handoff config check` and `handoff serve` refuse
// such a config, naming the key and the reason; a captcha that delivers
// out of band passes.
func TestCaptchaInBandRefused(t *testing.T) {
	bin := handoffBinary(t)
	for _, via := range []string{"response", "redirect", ""} {
		deliver := "\n    deliver: {via: " + via + "}"
		if via == "" {
			deliver = ""
		}
		cfg := fmt.Sprintf(`
providers:
  - name: password
    kind: password
  - name: captcha
    kind: captcha
    config: {provider: turnstile, secret: %s}
    users: {create: true}%s
`, capTurnstileSecret, deliver)
		path := filepath.Join(t.TempDir(), "handoff.yaml")
		if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		for _, args := range [][]string{{"config", "check"}, {"serve", "--listen", "127.0.0.1:0"}} {
			cmd := exec.Command(bin, append(args, "--config", path, "--data", t.TempDir())...)
			cmd.Dir = t.TempDir()
			out, err := cmd.CombinedOutput()
			if err == nil || !strings.Contains(string(out), "providers[1].deliver.via: must be webhook, email or sms") || !strings.Contains(string(out), "does not prove identity") {
				t.Errorf("via %q: handoff %s: %v\n%s", via, args[0], err, out)
			}
		}
	}
}
