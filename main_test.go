package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
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

// TestHelp: a bare handoff, --help, help and every command's --help print
// usage on stdout and exit 0. The attack is the old bare `handoff`, which
// started a daemon in ./data and printed an admin key: here the working
// directory must stay empty and no key may appear.
func TestHelp(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want []string // substrings of stdout
	}{
		{"bare", nil, []string{"Usage:", "handoff serve", "handoff config check"}},
		{"--help", []string{"--help"}, []string{"Usage:", "handoff keys create"}},
		{"-h", []string{"-h"}, []string{"Usage:"}},
		{"help", []string{"help"}, []string{"Usage:", "handoff version"}},
		{"help keys", []string{"help", "keys"}, []string{"handoff keys create", "--scopes"}},
		{"help help", []string{"help", "help"}, []string{"Usage:", "handoff help [COMMAND]"}},
		{"serve --help", []string{"serve", "--help"}, []string{"handoff serve", "--bootstrap-key-file", "--listen"}},
		{"flags first --help", []string{"--listen", "127.0.0.1:0", "--help"}, []string{"handoff serve", "--bootstrap-key-file"}},
		{"keys --help", []string{"keys", "--help"}, []string{"handoff keys revoke", "--expire"}},
		{"keys create --help", []string{"keys", "create", "-h"}, []string{"handoff keys create", "--name"}},
		{"config --help", []string{"config", "--help"}, []string{"handoff config check", "--print"}},
		{"config check --help", []string{"config", "check", "--help"}, []string{"handoff config check", "--print"}},
		{"secrets --help", []string{"secrets", "--help"}, []string{"handoff secrets reencrypt", "--config"}},
		{"secrets reencrypt --help", []string{"secrets", "reencrypt", "--help"}, []string{"handoff secrets reencrypt"}},
		{"version --help", []string{"version", "--help"}, []string{"handoff version"}},
		{"plugin --help", []string{"plugin", "--help"}, []string{"handoff plugin KIND"}},
		{"bench --help", []string{"bench", "--help"}, []string{"handoff bench", "--scenario"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			t.Chdir(dir)
			var out, errOut bytes.Buffer
			if code := run(tc.args, &out, &errOut); code != 0 {
				t.Fatalf("exit %d, stderr %q", code, errOut.String())
			}
			for _, w := range tc.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("stdout lacks %q:\n%s", w, out.String())
				}
			}
			if errOut.Len() != 0 {
				t.Errorf("stderr is not empty: %q", errOut.String())
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 0 {
				t.Errorf("help wrote %v into the working directory: it opened a store", entries)
			}
			if strings.Contains(out.String(), "standard_") {
				t.Errorf("help printed an API key:\n%s", out.String())
			}
		})
	}
}

// TestUsageErrors: a wrong command or subcommand is an error on stderr
// with exit 1, not help.
func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{{"nosuch"}, {"help", "nosuch"}, {"keys"}, {"keys", "frobnicate"}, {"config"}, {"config", "lint"}, {"secrets"}, {"serve", "--nosuch"}} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			t.Chdir(t.TempDir())
			var out, errOut bytes.Buffer
			if code := run(args, &out, &errOut); code != 1 || errOut.Len() == 0 {
				t.Fatalf("exit %d, stderr %q, want 1 and an error", code, errOut.String())
			}
		})
	}
}

// TestVersionText: the module version and the VCS revision come from the
// build info; -ldflags' version wins over the module's; a build without
// VCS stamping says so rather than printing nothing.
func TestVersionText(t *testing.T) {
	bi := &debug.BuildInfo{
		GoVersion: "go1.99",
		Main:      debug.Module{Path: "github.com/handoffd/handoff", Version: "v1.4.2"},
		Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "0123456789abcdef0123456789abcdef01234567"},
			{Key: "vcs.time", Value: "2026-12-01T10:00:00Z"},
			{Key: "vcs.modified", Value: "true"},
		},
	}
	for _, tc := range []struct {
		name     string
		bi       *debug.BuildInfo
		override string
		want     []string
	}{
		{"stamped", bi, "", []string{"handoff v1.4.2\n", "module   github.com/handoffd/handoff\n", "revision 0123456789abcdef0123456789abcdef01234567 (modified) 2026-12-01T10:00:00Z\n", "go       go1.99\n"}},
		{"ldflags", bi, "v9.9.9", []string{"handoff v9.9.9\n", "revision 0123456789abcdef"}},
		{"no vcs", &debug.BuildInfo{GoVersion: "go1.99", Main: debug.Module{Path: "github.com/handoffd/handoff", Version: "(devel)"}}, "", []string{"handoff (devel)\n", "revision unknown (built without VCS information)\n"}},
		{"no build info", nil, "", []string{"handoff (unknown)\n", "revision unknown"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := versionText(tc.bi, tc.override)
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("versionText lacks %q:\n%s", w, got)
				}
			}
		})
	}
	var out, errOut bytes.Buffer
	if code := run([]string{"version"}, &out, &errOut); code != 0 || !strings.Contains(out.String(), "go       "+runtime.Version()) {
		t.Errorf("handoff version = %d %q %q", code, out.String(), errOut.String())
	}
}

// TestConfigCheckPrintRedacts: `handoff config check --print` shows the
// effective config without its secrets (the pepper read from its file,
// the DSN's password, a webhook's secret, an SMTP password) but with
// every *_file path, so the operator sees which files are read. The
// provider-config redaction is config's TestRedacted.
func TestConfigCheckPrintRedacts(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	pepperFile := write("pepper", "pepper-0123456789abcdef\n")
	keyFile := write("secrets.key", tokenstore.NewSecretKeyLine())
	cfg := write("handoff.yaml", `
store:
  driver: postgres
  dsn: postgres://handoff:dsn-pw-4711@db.internal:5432/handoff?sslmode=verify-full
secrets:
  key_file: `+keyFile+`
tokens:
  pepper_file: `+pepperFile+`
`)
	var out, errOut bytes.Buffer
	if code := run([]string{"config", "check", "--print", "--config", cfg}, &out, &errOut); code != 0 {
		t.Fatalf("config check --print = %d %q", code, errOut.String())
	}
	got := out.String()
	for _, leak := range []string{"pepper-0123456789abcdef", "dsn-pw-4711"} {
		if strings.Contains(got, leak) {
			t.Errorf("--print shows the secret %q:\n%s", leak, got)
		}
	}
	for _, want := range []string{"pepper_file: " + pepperFile, "key_file: " + keyFile, "pepper: REDACTED",
		"dsn: postgres://handoff:REDACTED@db.internal:5432/handoff?sslmode=verify-full"} {
		if !strings.Contains(got, want) {
			t.Errorf("--print lacks %q:\n%s", want, got)
		}
	}
}
