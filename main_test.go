package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/handoffd/handoff/tokenstore"
)

// TestMain serves `handoff plugin <kind>` as the real binary does: the
// daemon and config check re-execute this test binary for built-ins.
func TestMain(m *testing.M) {
	if len(os.Args) == 3 && os.Args[1] == "plugin" {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// selfPlugin is this test binary as a pinned third-party plugin serving
// the password kind, and its SHA-256.
func selfPlugin(t *testing.T) (string, string) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(raw)
	return exe, hex.EncodeToString(sum[:])
}

func writeConfig(t *testing.T, yaml string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "handoff.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestConfigCheckStartsProviders: `handoff config check` starts every
// provider, so a typo in a provider's config key, a wrong sha256 pin and
// a missing plugin binary are each reported with the provider's name and
// key path, and it exits 1. Before, all three said "config ok".
func TestConfigCheckStartsProviders(t *testing.T) {
	exe, sum := selfPlugin(t)
	good := fmt.Sprintf(`
  - name: good
    plugin: {path: %q, sha256: %q, args: [plugin, password]}
    users: {create: true}
`, exe, sum)
	cfg := writeConfig(t, fmt.Sprintf(`
providers:
  - name: gone
    plugin: {path: %q, sha256: %q}
  - name: badpin
    plugin: {path: %q, sha256: %q, args: [plugin, password]}
  - name: typo
    kind: oidc
    config: {issuer: "https://idp.example.com/", client_id: app, client_secert: s3cret-value}
%s`, filepath.Join(t.TempDir(), "missing-plugin"), sum, exe, strings.Repeat("0", 64), good))
	var out, errOut bytes.Buffer
	code := run([]string{"config", "check", "--config", cfg, "--data", t.TempDir()}, &out, &errOut)
	if code != 1 {
		t.Fatalf("config check = %d, stdout %q stderr %q", code, out.String(), errOut.String())
	}
	got := errOut.String()
	for _, want := range []string{
		"providers[0].plugin.path: provider gone did not start",
		"no such file",
		"providers[1].plugin.sha256: provider badpin did not start",
		"sha256 mismatch",
		"providers[2].config: provider typo did not start",
		"client_secert",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("config check output lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "s3cret-value") {
		t.Errorf("config check printed a secret value:\n%s", got)
	}
	if strings.Contains(got, "providers[3]") || strings.Contains(out.String(), "config ok") {
		t.Errorf("the good provider is reported, or config ok printed:\n%s%s", out.String(), got)
	}

	// The good provider alone passes.
	out.Reset()
	errOut.Reset()
	if code := run([]string{"config", "check", "--config", writeConfig(t, "providers:"+good), "--data", t.TempDir()}, &out, &errOut); code != 0 || !strings.Contains(out.String(), "config ok") {
		t.Fatalf("config check of a good provider = %d %q %q", code, out.String(), errOut.String())
	}
}

// TestServeFailsOnRequiredProvider: serve exits 1, naming the provider and
// why on stderr, when a provider without optional: true cannot start.
// Before, it logged the failure and served without it.
func TestServeFailsOnRequiredProvider(t *testing.T) {
	cfg := writeConfig(t, fmt.Sprintf(`
listen: 127.0.0.1:0
providers:
  - name: needed
    plugin: {path: %q, sha256: %q}
`, filepath.Join(t.TempDir(), "missing-plugin"), strings.Repeat("ab", 32)))
	var out, errOut bytes.Buffer
	code := run([]string{"serve", "--config", cfg, "--data", t.TempDir()}, &out, &errOut)
	if code != 1 || !strings.Contains(errOut.String(), `handoff: provider "needed": plugin binary: open`) ||
		!strings.Contains(errOut.String(), "optional: true") {
		t.Fatalf("serve = %d, stderr %q", code, errOut.String())
	}
}

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
