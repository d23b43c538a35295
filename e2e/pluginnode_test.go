package e2e

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// nodeTOTP returns the Node.js TOTP example's entry file and the
// node_modules `npm ci` installed next to it, skipping (failing under
// CI=true) when node or the packages are missing.
func nodeTOTP(t *testing.T) (entry, modules string) {
	t.Helper()
	_, err := exec.LookPath("node")
	requireTool(t, err == nil, "node")
	dir, err := filepath.Abs(filepath.Join("..", "examples", "plugin-node"))
	if err != nil {
		t.Fatal(err)
	}
	modules = filepath.Join(dir, "node_modules")
	_, err = os.Stat(filepath.Join(modules, "handoff-plugin-sdk", "index.js"))
	requireTool(t, err == nil, "examples/plugin-node/node_modules (npm ci --prefix examples/plugin-node)")
	return filepath.Join(dir, "totp.mjs"), modules
}

// TestNodePluginLogin signs a user in through the Node.js TOTP plugin
// (examples/plugin-node), run by the real daemon as a pinned third-party
// plugin the way its README configures it: the backend enrolls the user
// (the plugin answers the secret), the client verifies a code from it,
// exchanges the one-time secret for a session and reads the account. The
// same code again is refused (the replay guard, through the host KV), so
// is the right code after 5 wrong ones (the attempts counted with the
// KV's atomic add), and the plugin's warning about the replay reaches
// the daemon's log under the provider's name. Killed with SIGKILL, the daemon leaves no node process
// behind.
func TestNodePluginLogin(t *testing.T) {
	entry, modules := nodeTOTP(t)
	d := startDaemon(t, fmt.Sprintf(`
providers:
  - name: totp
    plugin:
      path: %q
      sha256: %q
      env: {NODE_PATH: %q}
    config: {issuer: MyApp}
    deliver: {via: response}
`, entry, fileSHA256(t, entry), modules))

	status, user := call(t, d, "POST", "/v1/users", d.Key, "", map[string]any{"userId": "alice", "email": "alice@example.com", "name": "Alice"})
	want(t, "create user", status, http.StatusCreated, user)

	status, enrolled := call(t, d, "POST", "/v1/users/alice/providers/totp", d.Key, "", map[string]any{"account": "alice@example.com"})
	want(t, "enroll", status, http.StatusCreated, enrolled)
	secret, _ := enrolled["secret"].(string)
	otpauth, _ := enrolled["otpauth_url"].(string)
	if secret == "" || !strings.HasPrefix(otpauth, "otpauth://totp/MyApp:alice@example.com?") || !strings.Contains(otpauth, "secret="+secret) {
		t.Fatalf("enroll answered %v", enrolled)
	}

	code := totpCode(t, secret, time.Now())
	status, token := call(t, d, "POST", "/v1/providers/totp/verify", "", "", map[string]any{"userId": "alice", "code": code})
	want(t, "verify", status, http.StatusCreated, token)
	oneTime, _ := token["secret"].(string)
	if oneTime == "" || token["userId"] != "alice" {
		t.Fatalf("verify answered %v, want a secret for alice", token)
	}

	status, session := call(t, d, "POST", "/v1/account/sessions/token", d.Key, "", map[string]any{"userId": "alice", "secret": oneTime})
	want(t, "exchange", status, http.StatusCreated, session)
	sessionSecret, _ := session["secret"].(string)
	if sessionSecret == "" || session["userId"] != "alice" {
		t.Fatalf("exchange answered %v", session)
	}
	status, account := call(t, d, "GET", "/v1/account", "", sessionSecret, nil)
	want(t, "account", status, http.StatusOK, account)
	if account["$id"] != "alice" || account["email"] != "alice@example.com" {
		t.Fatalf("account %v, want alice", account)
	}

	status, replay := call(t, d, "POST", "/v1/providers/totp/verify", "", "", map[string]any{"userId": "alice", "code": code})
	want(t, "the same code again", status, http.StatusUnauthorized, replay)
	if replay["type"] != "user_invalid_credentials" {
		t.Fatalf("replayed code: %v", replay)
	}
	status, bad := call(t, d, "POST", "/v1/providers/totp/verify", "", "", map[string]any{"userId": "alice", "code": "12345"})
	want(t, "a 5-digit code", status, http.StatusBadRequest, bad)

	// Throttling: after 5 wrong codes (max_failures' default) even the
	// right one is refused, as the Go example does.
	status, user = call(t, d, "POST", "/v1/users", d.Key, "", map[string]any{"userId": "bob", "email": "bob@example.com"})
	want(t, "create bob", status, http.StatusCreated, user)
	status, enrolled = call(t, d, "POST", "/v1/users/bob/providers/totp", d.Key, "", map[string]any{})
	want(t, "enroll bob", status, http.StatusCreated, enrolled)
	bobSecret, _ := enrolled["secret"].(string)
	right := totpCode(t, bobSecret, time.Now())
	n, _ := strconv.Atoi(right)
	wrong := fmt.Sprintf("%06d", (n+500_000)%1_000_000)
	for i := range 5 {
		status, body := call(t, d, "POST", "/v1/providers/totp/verify", "", "", map[string]any{"userId": "bob", "code": wrong})
		want(t, fmt.Sprintf("wrong code %d", i+1), status, http.StatusUnauthorized, body)
	}
	status, throttled := call(t, d, "POST", "/v1/providers/totp/verify", "", "", map[string]any{"userId": "bob", "code": right})
	want(t, "the right code after 5 wrong ones", status, http.StatusUnauthorized, throttled)

	// The plugin's hclog line, re-logged by the host with its level,
	// attributes and the request id.
	deadline := time.Now().Add(5 * time.Second)
	for {
		line := grepLines(d.logs.String(), "replayed TOTP code refused")
		if strings.Contains(line, "level=WARN") && strings.Contains(line, "provider=totp") && strings.Contains(line, "user=alice") && strings.Contains(line, "request_id=") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the plugin's warning about the replayed code is not in the daemon's log as a WARN of provider totp: %q", line)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if strings.Contains(d.logs.String(), sessionSecret) || strings.Contains(d.logs.String(), oneTime) {
		t.Fatal("a secret is in the daemon's log")
	}

	plugins := children(d.cmd.Process.Pid)
	if len(plugins) != 1 {
		t.Fatalf("want the node plugin as the daemon's one child, found %v", plugins)
	}
	killDaemonWantPluginsGone(t, d, plugins)
}

// grepLines returns the lines of s that contain sub.
func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
