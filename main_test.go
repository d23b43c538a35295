package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/handoffd/handoff/tokenstore"
)

// TestSecretsReencrypt walks a key rotation through the command line: the
// first command generates the key file beside the bolt database; a new
// key put first opens the store with the old one still below it; `handoff
// secrets reencrypt` seals every secret under the new key, after which
// the new key alone opens the store and the old one alone does not.
func TestSecretsReencrypt(t *testing.T) {
	dir := t.TempDir()
	cmd := func(args ...string) (int, string, string) {
		var out, errOut bytes.Buffer
		code := run(append(args, "--data", dir), &out, &errOut)
		return code, out.String(), errOut.String()
	}
	if code, _, stderr := cmd("keys", "list"); code != 0 {
		t.Fatalf("keys list: %s", stderr)
	}
	old, err := os.ReadFile(filepath.Join(dir, "handoff.db.key"))
	if err != nil {
		t.Fatalf("no generated key file: %v", err)
	}
	fresh := tokenstore.NewSecretKeyLine()
	keyFile := filepath.Join(t.TempDir(), "secrets.key")
	t.Setenv("HANDOFF_SECRETS__KEY_FILE", keyFile)
	write := func(lines ...string) {
		if err := os.WriteFile(keyFile, []byte(strings.Join(lines, "")), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	write(fresh, string(old))
	code, stdout, stderr := cmd("secrets", "reencrypt")
	if code != 0 || !strings.Contains(stdout, "sealed 2 secrets") {
		t.Fatalf("secrets reencrypt = %d %q %q", code, stdout, stderr)
	}
	write(fresh)
	if code, _, stderr := cmd("keys", "list"); code != 0 {
		t.Fatalf("keys list with the new key alone: %s", stderr)
	}
	write(string(old))
	if code, _, stderr := cmd("keys", "list"); code == 0 || !strings.Contains(stderr, "sealed") {
		t.Fatalf("keys list with the old key alone = %d %q, want a sealed-store error", code, stderr)
	}
}

// TestConfigCheckKeyFile: `handoff config check` reads secrets.key_file
// and reports a bad one by key path, file and line.
func TestConfigCheckKeyFile(t *testing.T) {
	keyFile := filepath.Join(t.TempDir(), "secrets.key")
	if err := os.WriteFile(keyFile, []byte("not a key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("HANDOFF_SECRETS__KEY_FILE", keyFile)
	var out, errOut bytes.Buffer
	if code := run([]string{"config", "check", "--data", t.TempDir()}, &out, &errOut); code == 0 ||
		!strings.Contains(errOut.String(), "secrets.key_file: "+keyFile+": line 1") {
		t.Fatalf("config check = %d %q", code, errOut.String())
	}
	if err := os.WriteFile(keyFile, []byte(tokenstore.NewSecretKeyLine()), 0o600); err != nil {
		t.Fatal(err)
	}
	errOut.Reset()
	if code := run([]string{"config", "check", "--data", t.TempDir()}, &out, &errOut); code != 0 {
		t.Fatalf("config check with a good key file: %q", errOut.String())
	}
}

// TestKeysAudit: the key commands write key.created, key.revoked and
// signing_key.rotated to the audit log the environment names, with the
// actor cli and the key's id, and never the key itself.
func TestKeysAudit(t *testing.T) {
	dir := t.TempDir()
	auditPath := filepath.Join(t.TempDir(), "audit.jsonl")
	t.Setenv("HANDOFF_AUDIT__SINK", "file")
	t.Setenv("HANDOFF_AUDIT__PATH", auditPath)
	cmd := func(args ...string) string {
		t.Helper()
		var out, errOut bytes.Buffer
		if code := run(append(args, "--data", dir), &out, &errOut); code != 0 {
			t.Fatalf("%v = %d: %s", args, code, errOut.String())
		}
		return strings.TrimSpace(out.String())
	}
	secret := cmd("keys", "create", "--name", "ci")
	var id string
	for _, line := range strings.Split(cmd("keys", "list"), "\n")[1:] {
		if f := strings.Fields(line); len(f) > 1 && f[1] == "ci" {
			id = f[0]
		}
	}
	cmd("keys", "revoke", id)
	kid := strings.TrimPrefix(cmd("keys", "rotate-signing"), "new signing key ")

	raw, err := os.ReadFile(auditPath)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(raw), secret) {
		t.Fatal("the audit log holds the API key")
	}
	var got []string
	for _, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		var ev struct {
			Event string `json:"event"`
			Actor string `json:"actor"`
			KeyID string `json:"key_id"`
		}
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("not JSON: %q", line)
		}
		got = append(got, ev.Event+" "+ev.Actor+" "+ev.KeyID)
	}
	want := []string{"key.created cli " + id, "key.revoked cli " + id, "signing_key.rotated cli " + kid}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("audit log:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
