package e2e

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

// pwCall sends a JSON request to the daemon as a client (key "") or with
// an API key, and returns the status and the decoded JSON answer.
func pwCall(t *testing.T, d *daemon, method, path, key, session string, body any) (int, map[string]any) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, d.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Appwrite-Project", "default")
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("X-Appwrite-Key", key)
	}
	if session != "" {
		req.Header.Set("X-Appwrite-Session", session)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]any{}
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &out); err != nil {
			t.Fatalf("%s %s: %d, not JSON: %s", method, path, resp.StatusCode, raw)
		}
	}
	return resp.StatusCode, out
}

func pwWant(t *testing.T, what string, status, want int, body map[string]any) {
	t.Helper()
	if status != want {
		t.Fatalf("%s: %d %v, want %d", what, status, body, want)
	}
}

// TestPasswordLogin is the seed's "Username/password login" through the
// real daemon and the built-in password plugin at its default (OWASP)
// argon2id parameters: the backend creates a user and sets a password; the
// client signs in with username and password, gets a one-time secret in
// the answer, and exchanges it for a session of that user.
func TestPasswordLogin(t *testing.T) {
	d := startDaemon(t, `
providers:
  - name: password
    kind: password
    users: {create: false}
    deliver: {via: response}
`)
	if d.Key == "" {
		t.Fatal("the first start printed no API key")
	}
	const pw = "correct horse battery staple"

	// The backend creates a user and enrolls a username and password.
	status, user := pwCall(t, d, "POST", "/v1/users", d.Key, "", map[string]any{"userId": "unique()", "email": "alice@example.com", "name": "Alice"})
	pwWant(t, "create user", status, http.StatusCreated, user)
	userID, _ := user["$id"].(string)
	if userID == "" {
		t.Fatalf("user without $id: %v", user)
	}
	status, enrolled := pwCall(t, d, "POST", "/v1/users/"+userID+"/providers/password", d.Key, "", map[string]any{"username": "Alice", "password": pw})
	pwWant(t, "enroll", status, http.StatusCreated, enrolled)
	if enrolled["username"] != "alice" || enrolled["algorithm"] != "argon2id" {
		t.Fatalf("enroll answered %v", enrolled)
	}

	// The client signs in: a token with the secret, for that user.
	status, token := pwCall(t, d, "POST", "/v1/providers/password/verify", "", "", map[string]any{"username": "alice", "password": pw})
	pwWant(t, "verify", status, http.StatusCreated, token)
	secret, _ := token["secret"].(string)
	if secret == "" || token["userId"] != userID {
		t.Fatalf("verify answered %v, want a secret for %s", token, userID)
	}

	// Exchange the secret for a session, and read the account with it.
	status, session := pwCall(t, d, "POST", "/v1/account/sessions/token", d.Key, "", map[string]any{"userId": userID, "secret": secret})
	pwWant(t, "exchange", status, http.StatusCreated, session)
	sessionSecret, _ := session["secret"].(string)
	if sessionSecret == "" || session["userId"] != userID {
		t.Fatalf("exchange answered %v", session)
	}
	status, account := pwCall(t, d, "GET", "/v1/account", "", sessionSecret, nil)
	pwWant(t, "account", status, http.StatusOK, account)
	if account["$id"] != userID || account["email"] != "alice@example.com" {
		t.Fatalf("account %v, want user %s", account, userID)
	}

	// A wrong password and an unknown username get the same 401.
	status, wrong := pwCall(t, d, "POST", "/v1/providers/password/verify", "", "", map[string]any{"username": "alice", "password": "wrong horse battery staple"})
	pwWant(t, "wrong password", status, http.StatusUnauthorized, wrong)
	if wrong["type"] != "user_invalid_credentials" {
		t.Fatalf("wrong password: type %v", wrong["type"])
	}
	status, unknown := pwCall(t, d, "POST", "/v1/providers/password/verify", "", "", map[string]any{"username": "mallory", "password": pw})
	pwWant(t, "unknown username", status, http.StatusUnauthorized, unknown)
	if unknown["type"] != wrong["type"] || unknown["message"] != wrong["message"] {
		t.Fatalf("unknown username %v differs from wrong password %v", unknown, wrong)
	}

	// Another user cannot take the username; a short password is refused.
	status, other := pwCall(t, d, "POST", "/v1/users", d.Key, "", map[string]any{"userId": "unique()", "name": "Other"})
	pwWant(t, "create user", status, http.StatusCreated, other)
	otherID, _ := other["$id"].(string)
	status, taken := pwCall(t, d, "POST", "/v1/users/"+otherID+"/providers/password", d.Key, "", map[string]any{"username": "ALICE", "password": "another password"})
	pwWant(t, "enroll a taken username", status, http.StatusBadRequest, taken)
	if msg, _ := taken["message"].(string); !strings.Contains(msg, "username taken") {
		t.Fatalf("taken: %v", taken)
	}
	status, short := pwCall(t, d, "POST", "/v1/users/"+otherID+"/providers/password", d.Key, "", map[string]any{"username": "other", "password": "short"})
	pwWant(t, "enroll a short password", status, http.StatusBadRequest, short)
	if msg, _ := short["message"].(string); !strings.Contains(msg, "min_length") {
		t.Fatalf("short: %v", short)
	}

	// The secret was one-time.
	status, again := pwCall(t, d, "POST", "/v1/account/sessions/token", d.Key, "", map[string]any{"userId": userID, "secret": secret})
	if status == http.StatusCreated {
		t.Fatalf("the secret exchanged twice: %v", again)
	}
	if strings.Contains(d.logs.String(), pw) {
		t.Fatal("the password reached the daemon's log")
	}
}
