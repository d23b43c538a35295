package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// bioVendor is a biometric matching service on loopback speaking the
// biometric plugin's protocol: requests and answers signed per Standard
// Webhooks, templates enrolled per user, a sample verified when it
// equals an enrolled template.
type bioVendor struct {
	*httptest.Server
	mu        sync.Mutex
	templates map[string]string // template → subject
	calls     int
	apiKeys   []string
}

func newBioVendor(t *testing.T, secret string) *bioVendor {
	t.Helper()
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatal(err)
	}
	v := &bioVendor{templates: map[string]string{}}
	v.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := wh.Verify(body, r.Header); err != nil {
			t.Errorf("vendor: the request's signature does not verify: %v", err)
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		var req struct {
			Type      string `json:"type"`
			RequestID string `json:"request_id"`
			UserID    string `json:"user_id"`
			Payload   struct {
				Template string `json:"template"`
			} `json:"payload"`
		}
		if err := json.Unmarshal(body, &req); err != nil || req.Payload.Template == "" {
			http.Error(w, "bad sample", http.StatusUnprocessableEntity)
			return
		}
		v.mu.Lock()
		v.calls++
		v.apiKeys = append(v.apiKeys, r.Header.Get("X-Api-Key"))
		var answer map[string]any
		switch req.Type {
		case "enroll":
			subject := "bio-" + req.UserID
			v.templates[req.Payload.Template] = subject
			answer = map[string]any{"request_id": req.RequestID, "enrolled": true, "subject": subject}
		case "verify":
			if subject, ok := v.templates[req.Payload.Template]; ok {
				answer = map[string]any{"request_id": req.RequestID, "verified": true, "subject": subject, "score": 0.98}
			} else {
				answer = map[string]any{"request_id": req.RequestID, "verified": false, "score": 0.12, "reason": "no match"}
			}
		}
		n := v.calls
		v.mu.Unlock()
		out, _ := json.Marshal(answer)
		id, now := "msg_vendor_"+strconv.Itoa(n), time.Now()
		sig, _ := wh.Sign(id, now, out)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("webhook-id", id)
		w.Header().Set("webhook-timestamp", strconv.FormatInt(now.Unix(), 10))
		w.Header().Set("webhook-signature", sig)
		_, _ = w.Write(out)
	}))
	t.Cleanup(v.Close)
	return v
}

func (v *bioVendor) count() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.calls
}

// TestBiometricLogin is the seed's "Biometric authentication" through the
// real daemon and the built-in biometric plugin, behind the captcha
// plugin as its guard: the backend creates a user and enrolls a template
// with the vendor; the client sends a captcha token and a sample, the
// vendor's signed answer names the subject, and the secret in the answer
// exchanges for a session of that user.
func TestBiometricLogin(t *testing.T) {
	const bioSecret = "whsec_c2VjcmV0LWZvci10aGUtYmlvbWV0cmljLXZlbmRvcg=="
	sv := newCapSiteverify(t)
	hook, _ := newCapWebhook(t, capWebhookSecret)
	vendor := newBioVendor(t, bioSecret)
	d := startDaemon(t, fmt.Sprintf(`
providers:
  - name: captcha
    kind: captcha
    config:
      provider: turnstile
      secret: %[1]s
      siteverify_url: %[2]s
      timeout: 2s
    users: {create: false}
    deliver:
      via: webhook
      webhook: {url: %[3]s, secret: %[4]s, attempts: 1}
  - name: biometric
    kind: biometric
    config:
      url: %[5]s/v1/handoff
      secret: %[6]s
      timeout: 2s
      headers: {X-Api-Key: vendor-key-e2e}
    guards: [captcha]
    users: {create: false}
    deliver: {via: response}
`, capTurnstileSecret, sv.URL, hook.URL, capWebhookSecret, vendor.URL, bioSecret))

	// The backend creates a user and enrolls a template.
	status, user := call(t, d, "POST", "/v1/users", d.Key, "", map[string]any{"userId": "unique()", "email": "erin@example.com", "name": "Erin"})
	want(t, "create user", status, http.StatusCreated, user)
	userID, _ := user["$id"].(string)
	status, enrolled := call(t, d, "POST", "/v1/users/"+userID+"/providers/biometric", d.Key, "", map[string]any{"sample": map[string]any{"template": "typing-erin"}})
	want(t, "enroll", status, http.StatusCreated, enrolled)
	if enrolled["subject"] != "bio-"+userID {
		t.Fatalf("enroll answered %v", enrolled)
	}

	// The guard comes first: no token, or a refused one, and the vendor
	// is never asked.
	calls := vendor.count()
	sample := map[string]any{"template": "typing-erin"}
	status, noToken := call(t, d, "POST", "/v1/providers/biometric/verify", "", "", map[string]any{"userId": userID, "sample": sample})
	want(t, "verify without a captcha", status, http.StatusBadRequest, noToken)
	status, badToken := call(t, d, "POST", "/v1/providers/biometric/verify", "", "", map[string]any{"captcha": "fail-b", "userId": userID, "sample": sample})
	want(t, "verify with a refused captcha", status, http.StatusUnauthorized, badToken)
	if vendor.count() != calls {
		t.Fatal("the vendor was asked despite the guard")
	}

	// The client signs in: a token with the secret, for that user.
	status, token := call(t, d, "POST", "/v1/providers/biometric/verify", "", "", map[string]any{"captcha": "pass-b1", "userId": userID, "sample": sample})
	want(t, "verify", status, http.StatusCreated, token)
	secret, _ := token["secret"].(string)
	if secret == "" || token["userId"] != userID {
		t.Fatalf("verify answered %v, want a secret for %s", token, userID)
	}
	status, session := call(t, d, "POST", "/v1/account/sessions/token", d.Key, "", map[string]any{"userId": userID, "secret": secret})
	want(t, "exchange", status, http.StatusCreated, session)
	sessionSecret, _ := session["secret"].(string)
	status, account := call(t, d, "GET", "/v1/account", "", sessionSecret, nil)
	want(t, "account", status, http.StatusOK, account)
	if account["$id"] != userID || account["email"] != "erin@example.com" {
		t.Fatalf("account %v, want user %s", account, userID)
	}

	// The captcha token was spent by the guard; a sample that matches no
	// template is refused by the vendor.
	status, replay := call(t, d, "POST", "/v1/providers/biometric/verify", "", "", map[string]any{"captcha": "pass-b1", "userId": userID, "sample": sample})
	want(t, "captcha replay", status, http.StatusUnauthorized, replay)
	status, nomatch := call(t, d, "POST", "/v1/providers/biometric/verify", "", "", map[string]any{"captcha": "pass-b2", "userId": userID, "sample": map[string]any{"template": "typing-mallory"}})
	want(t, "no match", status, http.StatusUnauthorized, nomatch)
	if nomatch["type"] != "user_invalid_credentials" || !strings.Contains(fmt.Sprint(nomatch["message"]), "not verified") {
		t.Fatalf("no match answered %v", nomatch)
	}

	vendor.mu.Lock()
	keys := append([]string(nil), vendor.apiKeys...)
	vendor.mu.Unlock()
	for _, k := range keys {
		if k != "vendor-key-e2e" {
			t.Fatalf("the vendor got API keys %q", keys)
		}
	}
	if logs := d.logs.String(); strings.Contains(logs, "vendor-key-e2e") || strings.Contains(logs, bioSecret) || strings.Contains(logs, "typing-erin") {
		t.Fatal("a secret or a sample reached the daemon's log")
	}
}
