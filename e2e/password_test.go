package e2e

import (
	"net/http"
	"strings"
	"testing"
)

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
	status, user := call(t, d, "POST", "/v1/users", d.Key, "", map[string]any{"userId": "unique()", "email": "alice@example.com", "name": "Alice"})
	want(t, "create user", status, http.StatusCreated, user)
	userID, _ := user["$id"].(string)
	if userID == "" {
		t.Fatalf("user without $id: %v", user)
	}
	status, enrolled := call(t, d, "POST", "/v1/users/"+userID+"/providers/password", d.Key, "", map[string]any{"username": "Alice", "password": pw})
	want(t, "enroll", status, http.StatusCreated, enrolled)
	if enrolled["username"] != "alice" || enrolled["algorithm"] != "argon2id" {
		t.Fatalf("enroll answered %v", enrolled)
	}

	// The client signs in: a token with the secret, for that user.
	status, token := call(t, d, "POST", "/v1/providers/password/verify", "", "", map[string]any{"username": "alice", "password": pw})
	want(t, "verify", status, http.StatusCreated, token)
	secret, _ := token["secret"].(string)
	if secret == "" || token["userId"] != userID {
		t.Fatalf("verify answered %v, want a secret for %s", token, userID)
	}

	// Exchange the secret for a session, and read the account with it.
	status, session := call(t, d, "POST", "/v1/account/sessions/token", d.Key, "", map[string]any{"userId": userID, "secret": secret})
	want(t, "exchange", status, http.StatusCreated, session)
	sessionSecret, _ := session["secret"].(string)
	if sessionSecret == "" || session["userId"] != userID {
		t.Fatalf("exchange answered %v", session)
	}
	status, account := call(t, d, "GET", "/v1/account", "", sessionSecret, nil)
	want(t, "account", status, http.StatusOK, account)
	if account["$id"] != userID || account["email"] != "alice@example.com" {
		t.Fatalf("account %v, want user %s", account, userID)
	}

	// A wrong password and an unknown username get the same 401.
	status, wrong := call(t, d, "POST", "/v1/providers/password/verify", "", "", map[string]any{"username": "alice", "password": "wrong horse battery staple"})
	want(t, "wrong password", status, http.StatusUnauthorized, wrong)
	if wrong["type"] != "user_invalid_credentials" {
		t.Fatalf("wrong password: type %v", wrong["type"])
	}
	status, unknown := call(t, d, "POST", "/v1/providers/password/verify", "", "", map[string]any{"username": "mallory", "password": pw})
	want(t, "unknown username", status, http.StatusUnauthorized, unknown)
	if unknown["type"] != wrong["type"] || unknown["message"] != wrong["message"] {
		t.Fatalf("unknown username %v differs from wrong password %v", unknown, wrong)
	}

	// Another user cannot take the username; a short password is refused.
	status, other := call(t, d, "POST", "/v1/users", d.Key, "", map[string]any{"userId": "unique()", "name": "Other"})
	want(t, "create user", status, http.StatusCreated, other)
	otherID, _ := other["$id"].(string)
	status, taken := call(t, d, "POST", "/v1/users/"+otherID+"/providers/password", d.Key, "", map[string]any{"username": "ALICE", "password": "another password"})
	want(t, "enroll a taken username", status, http.StatusBadRequest, taken)
	if msg, _ := taken["message"].(string); !strings.Contains(msg, "username taken") {
		t.Fatalf("taken: %v", taken)
	}
	status, short := call(t, d, "POST", "/v1/users/"+otherID+"/providers/password", d.Key, "", map[string]any{"username": "other", "password": "short"})
	want(t, "enroll a short password", status, http.StatusBadRequest, short)
	if msg, _ := short["message"].(string); !strings.Contains(msg, "min_length") {
		t.Fatalf("short: %v", short)
	}

	// The secret was one-time.
	status, again := call(t, d, "POST", "/v1/account/sessions/token", d.Key, "", map[string]any{"userId": userID, "secret": secret})
	if status == http.StatusCreated {
		t.Fatalf("the secret exchanged twice: %v", again)
	}
	if strings.Contains(d.logs.String(), pw) {
		t.Fatal("the password reached the daemon's log")
	}
}
