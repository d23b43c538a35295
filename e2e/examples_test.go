package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/handoffd/handoff/tokenstore"
)

// docs are the files whose ```yaml and ```sh examples users copy.
var docs = []string{"README.md", "plugins/*/README.md", "examples/plugin/README.md", "examples/plugin-node/README.md", "docs/*.md"}

var yamlBlockRE = regexp.MustCompile("(?s)```ya?ml\n(.*?)```")

// example is one config example: a ```yaml block of a doc, or a file.
type example struct {
	name string // doc path and block number, for messages
	text string
}

// configExamples returns every yaml example of the docs, and
// config/testdata/full.yaml.
func configExamples(t *testing.T) []example {
	t.Helper()
	var out []example
	for _, pattern := range docs {
		files, err := filepath.Glob(filepath.Join("..", pattern))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			raw, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			rel, _ := filepath.Rel("..", f)
			for i, m := range yamlBlockRE.FindAllSubmatch(raw, -1) {
				out = append(out, example{fmt.Sprintf("%s#%d", rel, i+1), string(m[1])})
			}
		}
	}
	full, err := os.ReadFile(filepath.Join("..", "config", "testdata", "full.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return append(out, example{"config/testdata/full.yaml", string(full)})
}

// Stand-in contents of the secret files the examples name, by key.
const (
	standinWebhookSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwaGVsbG8K"
	standinBioSecret     = "whsec_YmlvbWV0cmljLXN0YW5kLWluLXJlcXVlc3Qta2V5LTAx"
	standinBioRespSecret = "whsec_YmlvbWV0cmljLXN0YW5kLWluLXJlc3BvbnNlLWtleS0w"
	standinSecret        = "stand-in-secret-0123456789"
	standinPepper        = "0123456789abcdef0123456789abcdef"
)

// localizer turns an example into one that runs on this machine: each
// *_file path becomes a temporary file with a plausible secret (the
// bootstrap key file a path that does not exist yet), any other absolute
// path (store.path, a log file) one in a temporary directory, a plugin
// path the TOTP example built from examples/plugin with its real pin,
// and a PostgreSQL DSN the test server's. URLs stay as written: the
// standin answers them.
type localizer struct {
	t   *testing.T
	dir string
	dsn string // store.dsn of a postgres example
}

var (
	totpOnce          sync.Once
	totpPath, totpSum string
)

func (l *localizer) localize(text string) string {
	l.t.Helper()
	var doc map[string]any
	if err := yaml.Unmarshal([]byte(text), &doc); err != nil {
		l.t.Fatalf("the example does not parse: %v", err)
	}
	l.walk(doc, nil)
	out, err := yaml.Marshal(doc)
	if err != nil {
		l.t.Fatal(err)
	}
	return string(out)
}

func (l *localizer) walk(v any, path []string) {
	switch v := v.(type) {
	case []any:
		for _, x := range v {
			l.walk(x, path)
		}
	case map[string]any:
		if kind, ok := v["kind"].(string); ok { // a provider: its secrets are its kind's
			path = append(path, "kind="+kind)
		}
		for k, x := range v {
			s, _ := x.(string)
			switch {
			case strings.HasSuffix(k, "_file") && s != "":
				v[k] = l.file(append(path, k))
			case k == "plugin":
				l.plugin(x)
			case k == "path" && strings.HasPrefix(s, "/"): // store.path, a log or audit file: a temp file
				v[k] = filepath.Join(l.dir, strings.Join(append(path, k), "_"))
			case k == "dsn" && s != "" && len(path) == 1 && path[0] == "store":
				v[k] = l.dsn
			default:
				l.walk(x, append(path, k))
			}
		}
	}
}

// file writes the stand-in of a secret file and returns its path.
func (l *localizer) file(path []string) string {
	key := strings.Join(path, ".")
	name := filepath.Join(l.dir, strings.NewReplacer(".", "_", "=", "_").Replace(key))
	var content string
	switch last, parent := path[len(path)-1], path[len(path)-2]; {
	case last == "bootstrap_key_file":
		return name // handoff creates it
	case last == "key_file":
		content = tokenstore.NewSecretKeyLine()
	case last == "dsn_file":
		content = l.dsn
	case last == "pepper_file":
		content = standinPepper
	case parent == "webhook":
		content = standinWebhookSecret
	case last == "response_secret_file":
		content = standinBioRespSecret
	case last == "secret_file" && strings.Contains(key, "kind=biometric"):
		content = standinBioSecret
	case last == "private_key_file":
		content = standinP8(l.t) // Sign in with Apple's .p8 key
	default:
		content = standinSecret
	}
	if err := os.WriteFile(name, []byte(content+"\n"), 0o600); err != nil {
		l.t.Fatal(err)
	}
	return name
}

// standinP8 is a new P-256 key as Apple's .p8 file holds one: PKCS#8 PEM.
func standinP8(t *testing.T) string {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})))
}

// plugin points a third-party plugin entry at the TOTP example, built
// once, with its real pin; a totp.mjs entry at the Node.js one
// (examples/plugin-node), with its real pin and NODE_PATH its packages.
func (l *localizer) plugin(x any) {
	p, _ := x.(map[string]any)
	path, _ := p["path"].(string)
	if filepath.Base(path) == "totp.mjs" {
		entry, modules := nodeTOTP(l.t)
		env, _ := p["env"].(map[string]any)
		if env == nil {
			env = map[string]any{}
		}
		env["NODE_PATH"] = modules
		p["path"], p["sha256"], p["env"] = entry, fileSHA256(l.t, entry), env
		return
	}
	if filepath.Base(path) != "totp" {
		l.t.Fatalf("no stand-in for the plugin %v: the examples' third-party plugins are examples/plugin (totp) and examples/plugin-node (totp.mjs)", p["path"])
	}
	totpOnce.Do(func() {
		dir, err := os.MkdirTemp("", "handoff-e2e-totp")
		if err != nil {
			l.t.Fatal(err)
		}
		totpPath = filepath.Join(dir, "totp")
		if out, err := exec.Command("go", "build", "-o", totpPath, "../examples/plugin").CombinedOutput(); err != nil {
			l.t.Fatalf("build the TOTP example: %v\n%s", err, out)
		}
		totpSum = fileSHA256(l.t, totpPath)
	})
	p["path"], p["sha256"] = totpPath, totpSum
}

// isPostgres reports whether a localized example runs on PostgreSQL.
func isPostgres(text string) bool {
	var doc struct {
		Store struct {
			Driver string `yaml:"driver"`
		} `yaml:"store"`
	}
	_ = yaml.Unmarshal([]byte(text), &doc)
	return doc.Store.Driver == "postgres"
}

// TestExamplesConfigCheck runs `handoff config check` on every yaml
// example of the docs and on config/testdata/full.yaml, as written but
// for their secret files and plugin binary, with every outside URL
// answered by a loopback stand-in; then starts `handoff serve` on each
// and wants every provider up. The attacks are the examples that used to
// fail a new user: the README's guard-only captcha (refused at start),
// full.yaml's captcha config (refused by the plugin), the biometric
// example's guard that named no provider.
func TestExamplesConfigCheck(t *testing.T) {
	bin := handoffBinary(t)
	world := newStandin(t)
	// full.yaml's audit sink posts its batches there.
	world.handle("siem.example.com", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	}))
	for _, ex := range configExamples(t) {
		t.Run(strings.ReplaceAll(ex.name, "/", "_"), func(t *testing.T) {
			l := &localizer{t: t, dir: t.TempDir(), dsn: "postgres://handoff:secret@127.0.0.1:5432/handoff?sslmode=disable"}
			postgres := isPostgres(ex.text)
			if postgres && os.Getenv(pgDSNEnv) != "" {
				l.dsn = pgSchema(t)
			}
			cfg := l.localize(ex.text)
			path := filepath.Join(t.TempDir(), "handoff.yaml")
			if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(bin, "config", "check", "--config", path, "--data", t.TempDir())
			cmd.Dir = t.TempDir()
			cmd.Env = append(os.Environ(), world.env()...)
			if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "config ok") {
				t.Fatalf("handoff config check: %v\n%s\nthe localized example:\n%s", err, out, cfg)
			}
			if postgres && os.Getenv(pgDSNEnv) == "" {
				requireTool(t, false, "a PostgreSQL server in "+pgDSNEnv+" to serve "+ex.name)
			}
			d := startDaemonIn(t, t.TempDir(), cfg, append(world.env(), "HANDOFF_LOG__FORMAT=text")...)
			assertProvidersUp(t, d, cfg)
		})
	}
}

// assertProvidersUp wants every provider of the config listed and up.
func assertProvidersUp(t *testing.T, d *daemon, cfg string) {
	t.Helper()
	var doc struct {
		Providers []struct {
			Name string `yaml:"name"`
			Kind string `yaml:"kind"`
		} `yaml:"providers"`
	}
	if err := yaml.Unmarshal([]byte(cfg), &doc); err != nil {
		t.Fatal(err)
	}
	res, err := http.Get(d.URL + "/v1/providers")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var list struct {
		Providers []struct{ Name, Health string } `json:"providers"`
	}
	if err := json.NewDecoder(res.Body).Decode(&list); err != nil {
		t.Fatal(err)
	}
	health := map[string]string{}
	for _, p := range list.Providers {
		health[p.Name] = p.Health
	}
	for _, p := range doc.Providers {
		if health[p.Name] != "up" {
			t.Errorf("provider %s is %q, want up; /v1/providers: %+v", p.Name, health[p.Name], list.Providers)
		}
		if p.Kind == "oidc" && !logsWithin(d, "discovered the identity provider", 10*time.Second) {
			t.Errorf("provider %s never discovered its IdP stand-in", p.Name)
		}
	}
}

// logsWithin reports whether d's log says text within wait. A plugin logs
// what it did at start on its own time, after the daemon is ready.
func logsWithin(d *daemon, text string, wait time.Duration) bool {
	for deadline := time.Now().Add(wait); ; time.Sleep(20 * time.Millisecond) {
		if strings.Contains(d.logs.String(), text) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
	}
}

func fileSHA256(t *testing.T, path string) string {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.Sum256(raw)
	return hex.EncodeToString(h[:])
}
