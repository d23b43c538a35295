package daemon

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/handoffd/handoff/config"
	"github.com/handoffd/handoff/tokenstore"
	"github.com/handoffd/handoff/tokenstore/bolt"
)

// start starts a daemon on cfg and returns its first-start notice; the
// daemon is closed when t ends.
func start(t *testing.T, cfg config.Config) (*Daemon, string, error) {
	t.Helper()
	var notice bytes.Buffer
	d, err := New(context.Background(), Options{Config: cfg, OpenStore: testOpenStore, Notice: &notice})
	if err == nil {
		t.Cleanup(func() { d.Close() })
	}
	return d, notice.String(), err
}

// TestSecretsKeyFileZeroSetup: on bolt with secrets.key_file unset, the
// first start writes a 0600 key file beside the database and seals the
// store with it; a start without that file, on a sealed store, fails and
// names it, rather than making a new key that would lose every secret.
func TestSecretsKeyFileZeroSetup(t *testing.T) {
	cfg := config.Default()
	cfg.Data = t.TempDir()
	d, _, err := start(t, cfg)
	if err != nil {
		t.Fatal(err)
	}
	keyPath := cfg.StorePath() + ".key"
	fi, err := os.Stat(keyPath)
	if err != nil {
		t.Fatalf("no key file beside the database: %v", err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, want 0600", fi.Mode().Perm())
	}
	data, err := os.ReadFile(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	if keys, err := tokenstore.ParseSecretKeys(data); err != nil || len(keys) != 1 {
		t.Fatalf("generated key file: %d keys, %v", len(keys), err)
	}
	if sealed, err := tokenstore.HasSealedSecrets(context.Background(), d.Core().Store()); err != nil || !sealed {
		t.Fatalf("HasSealedSecrets = %v, %v after the first start", sealed, err)
	}
	d.Close()

	d, _, err = start(t, cfg)
	if err != nil {
		t.Fatalf("second start with the generated key: %v", err)
	}
	d.Close()

	// Another key in the file: the start fails and names the file.
	if err := os.WriteFile(keyPath, []byte(tokenstore.NewSecretKeyLine()), 0o600); err != nil {
		t.Fatal(err)
	}
	_, _, err = start(t, cfg)
	if !errors.Is(err, tokenstore.ErrSealed) || !strings.Contains(err.Error(), "secrets.key_file: "+keyPath) {
		t.Fatalf("start with another key = %v, want ErrSealed naming secrets.key_file and %s", err, keyPath)
	}
}

// TestSecretsKeyFileMissing: a sealed store whose key file is gone does
// not start, and no new key file is made in its place.
func TestSecretsKeyFileMissing(t *testing.T) {
	cfg := config.Default()
	cfg.Data = t.TempDir()
	d, _, err := start(t, cfg)
	if err != nil {
		t.Fatal(err)
	}
	d.Close()
	keyPath := cfg.StorePath() + ".key"
	if err := os.Remove(keyPath); err != nil {
		t.Fatal(err)
	}
	_, _, err = start(t, cfg)
	if err == nil || !strings.Contains(err.Error(), "secrets.key_file") || !strings.Contains(err.Error(), keyPath) || !strings.Contains(err.Error(), "sealed") {
		t.Fatalf("start without the key file of a sealed store: %v", err)
	}
	if _, err := os.Stat(keyPath); err == nil {
		t.Fatal("a new key file was made for a sealed store")
	}
}

// TestSecretsKeyFileBad: a key file that is not keys fails the start with
// an error naming secrets.key_file, the path and the line, never the
// file's content.
func TestSecretsKeyFileBad(t *testing.T) {
	good := strings.TrimSpace(tokenstore.NewSecretKeyLine())
	for _, tc := range []struct {
		name, content, want string
	}{
		{"not base64", "this is not a key!\n", "line 1: not base64"},
		{"short key", "c2hvcnQga2V5\n", "line 1: 9 bytes, want 32"},
		{"bad second line", good + "\n\n" + good[:20] + "\n", "line 3"},
		{"empty", "# no key yet\n", "no key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := config.Default()
			cfg.Data = t.TempDir()
			cfg.Secrets.KeyFile = filepath.Join(t.TempDir(), "secrets.key")
			if err := os.WriteFile(cfg.Secrets.KeyFile, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			_, _, err := start(t, cfg)
			if err == nil || !strings.Contains(err.Error(), "secrets.key_file: "+cfg.Secrets.KeyFile) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("start = %v, want secrets.key_file, the path and %q", err, tc.want)
			}
			if strings.Contains(err.Error(), strings.TrimSpace(tc.content)) && tc.content != "" {
				t.Fatalf("the error shows the file's content: %v", err)
			}
		})
	}
	t.Run("explicit file missing", func(t *testing.T) {
		cfg := config.Default()
		cfg.Data = t.TempDir()
		cfg.Secrets.KeyFile = filepath.Join(t.TempDir(), "absent.key")
		_, _, err := start(t, cfg)
		if err == nil || !strings.Contains(err.Error(), "secrets.key_file") || !strings.Contains(err.Error(), cfg.Secrets.KeyFile) {
			t.Fatalf("start = %v", err)
		}
		if _, err := os.Stat(cfg.Secrets.KeyFile); err == nil {
			t.Fatal("a key file named in the config was generated")
		}
	})
}

// TestBootstrapKeyFile: with secrets.bootstrap_key_file set, the first API
// key goes to a new 0600 file and never to the notice (stderr); an
// existing file there fails the start and keeps no key, so the next start
// makes one. Unset, the notice shows the key and names the option.
func TestBootstrapKeyFile(t *testing.T) {
	cfg := config.Default()
	cfg.Data = t.TempDir()
	cfg.Secrets.BootstrapKeyFile = filepath.Join(t.TempDir(), "bootstrap-key")
	if err := os.WriteFile(cfg.Secrets.BootstrapKeyFile, []byte("someone else's\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, _, err := start(t, cfg)
	if err == nil || !strings.Contains(err.Error(), "secrets.bootstrap_key_file") {
		t.Fatalf("start over an existing bootstrap key file = %v, want an error", err)
	}
	if b, _ := os.ReadFile(cfg.Secrets.BootstrapKeyFile); string(b) != "someone else's\n" {
		t.Fatalf("the existing file was changed: %q", b)
	}
	if err := os.Remove(cfg.Secrets.BootstrapKeyFile); err != nil {
		t.Fatal(err)
	}

	d, notice, err := start(t, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if keyRE.MatchString(notice) || !strings.Contains(notice, cfg.Secrets.BootstrapKeyFile) {
		t.Fatalf("notice %q: want the file named and no key", notice)
	}
	fi, err := os.Stat(cfg.Secrets.BootstrapKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("bootstrap key file mode %v, want 0600", fi.Mode().Perm())
	}
	b, err := os.ReadFile(cfg.Secrets.BootstrapKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	k, err := d.Core().AuthenticateKey(context.Background(), strings.TrimSpace(string(b)))
	if err != nil || len(k.Scopes) != len(Scopes) {
		t.Fatalf("the key in the file: %+v, %v", k, err)
	}
	if keys, _ := d.Core().ListKeys(context.Background()); len(keys) != 1 {
		t.Fatalf("%d API keys, want 1 (the failed start must keep none)", len(keys))
	}

	t.Run("unset", func(t *testing.T) {
		cfg := config.Default()
		cfg.Data = t.TempDir()
		_, notice, err := start(t, cfg)
		if err != nil {
			t.Fatal(err)
		}
		if !keyRE.MatchString(notice) || !strings.Contains(notice, "--bootstrap-key-file") || !strings.Contains(notice, "secrets.bootstrap_key_file") {
			t.Fatalf("notice %q: want the key and the option named", notice)
		}
	})
}

// TestSecretsMigrateOnUpgrade: a bolt database written before sealing (a
// plain pepper and signing keys) starts with no setup: the key file is
// generated, the secrets are sealed in place, and a token minted before
// the upgrade still exchanges (the pepper is kept).
func TestSecretsMigrateOnUpgrade(t *testing.T) {
	ctx := context.Background()
	cfg := config.Default()
	cfg.Data = t.TempDir()
	st, err := bolt.Open(cfg.StorePath(), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	old, err := tokenstore.New(ctx, st, tokenstore.Options{}) // as releases before sealing
	if err != nil {
		t.Fatal(err)
	}
	if _, err := old.CreateUser(ctx, tokenstore.NewUser{ID: "alice", Email: "alice@example.com"}); err != nil {
		t.Fatal(err)
	}
	_, secret, err := old.Mint(ctx, tokenstore.MintRequest{UserID: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	st.Close()

	d, _, err := start(t, cfg)
	if err != nil {
		t.Fatalf("start on a plain store: %v", err)
	}
	if sealed, err := tokenstore.HasSealedSecrets(ctx, d.Core().Store()); err != nil || !sealed {
		t.Fatalf("HasSealedSecrets = %v, %v after the upgrade", sealed, err)
	}
	if _, _, err := d.Core().Exchange(ctx, "alice", secret, tokenstore.Client{}); err != nil {
		t.Fatalf("a token minted before the upgrade: %v", err)
	}
}

// TestSecretsKeyFileModeWarned: a key file others can read still opens
// (secret mounts are often 0644, owned by root), with a warning naming
// the path and never the key.
func TestSecretsKeyFileModeWarned(t *testing.T) {
	line := tokenstore.NewSecretKeyLine()
	path := filepath.Join(t.TempDir(), "secrets.key")
	if err := os.WriteFile(path, []byte(line), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o644); err != nil { // past the umask
		t.Fatal(err)
	}
	var logs bytes.Buffer
	newTestServer(t, withLogs(&logs), func(c *config.Config) { c.Secrets.KeyFile = path })
	if !strings.Contains(logs.String(), "secrets key file can be read by other users") || !strings.Contains(logs.String(), path) {
		t.Fatalf("no warning about the key file's mode in:\n%s", logs.String())
	}
	if strings.Contains(logs.String(), strings.TrimSpace(line)) {
		t.Fatal("the key reached the log")
	}
}
