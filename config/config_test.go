package config

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

// writeFile writes content to name in a fresh temporary directory and
// returns its path.
func writeFile(t testing.TB, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// problems returns the Problems in err, failing the test if there are none.
func problems(t *testing.T, err error) Problems {
	t.Helper()
	var ps Problems
	if !errors.As(err, &ps) {
		t.Fatalf("error = %v (%T), want Problems", err, err)
	}
	return ps
}

// problemKeys returns the keys of ps.
func problemKeys(ps Problems) []string {
	keys := make([]string, len(ps))
	for i, p := range ps {
		keys[i] = p.Key
	}
	return keys
}

func TestDefault(t *testing.T) {
	c := Default()
	for _, tc := range []struct {
		name      string
		got, want any
	}{
		{"listen", c.Listen, "127.0.0.1:8080"},
		{"project", c.Project, "default"},
		{"data", c.Data, "./data"},
		{"store.driver", c.Store.Driver, "bolt"},
		{"store.path", c.Store.Path, ""},
		{"StorePath", c.StorePath(), filepath.Join("data", "handoff.db")},
		{"store.max_conns", c.Store.MaxConns, 16},
		{"store.writers", c.Store.Writers, 4},
		{"store.sweep_interval", c.Store.SweepInterval, time.Minute},
		{"store.key_cache", c.Store.KeyCache, time.Second},
		{"tokens.length", c.Tokens.Length, 6},
		{"tokens.expire", c.Tokens.Expire, 15 * time.Minute},
		{"tokens.max_attempts", c.Tokens.MaxAttempts, 10},
		{"tokens.max_outstanding", c.Tokens.MaxOutstanding, 5},
		{"sessions.duration", c.Sessions.Duration, 8760 * time.Hour},
		{"sessions.max_per_user", c.Sessions.MaxPerUser, 10},
		{"http.read_timeout", c.HTTP.ReadTimeout, 10 * time.Second},
		{"http.write_timeout", c.HTTP.WriteTimeout, 30 * time.Second},
		{"http.idle_timeout", c.HTTP.IdleTimeout, 120 * time.Second},
		{"http.shutdown_timeout", c.HTTP.ShutdownTimeout, 15 * time.Second},
		{"http.max_body_bytes", c.HTTP.MaxBodyBytes, int64(65536)},
		{"limits.enabled", c.Limits.Enabled, true},
		{"limits.session_token", c.Limits.SessionToken, 10},
		{"limits.oauth2", c.Limits.OAuth2, 50},
		{"limits.jwt", c.Limits.JWT, 120},
		{"limits.verify", c.Limits.Verify, 60},
		{"log.level", c.Log.Level, "info"},
		{"log.format", c.Log.Format, "text"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.got != tc.want {
				t.Errorf("got %v, want %v", tc.got, tc.want)
			}
		})
	}
	t.Run("valid", func(t *testing.T) {
		if err := c.Validate(); err != nil {
			t.Errorf("Default().Validate() = %v", err)
		}
	})
	t.Run("explicit store path", func(t *testing.T) {
		c := Default()
		c.Store.Path = "/srv/h.db"
		if got := c.StorePath(); got != "/srv/h.db" {
			t.Errorf("StorePath() = %q", got)
		}
	})
	t.Run("provider defaults", func(t *testing.T) {
		p := Provider{Name: "x", Kind: "password"}.WithDefaults()
		if p.Timeout != 5*time.Second || p.Deliver.Via != "response" ||
			p.Deliver.Webhook.Timeout != 5*time.Second || p.Deliver.Webhook.Attempts != 5 ||
			p.Deliver.Email.TLS != "starttls" || p.Deliver.Email.Subject != "Your sign-in code" {
			t.Errorf("WithDefaults() = %+v", p)
		}
		q := Provider{Timeout: time.Second, Deliver: Deliver{Via: "email", Email: Email{TLS: "tls"}}}.WithDefaults()
		if q.Timeout != time.Second || q.Deliver.Via != "email" || q.Deliver.Email.TLS != "tls" {
			t.Errorf("WithDefaults() overrode set fields: %+v", q)
		}
	})
}

// newFlags returns main's kind of flag set, parsed from args.
func newFlags(t *testing.T, args ...string) *pflag.FlagSet {
	t.Helper()
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	fs.String("config", "", "")
	fs.String("listen", "", "")
	fs.String("data", "", "")
	fs.String("project", "", "")
	fs.String("store-path", "", "")
	fs.String("store-driver", "", "")
	fs.String("store-dsn", "", "")
	fs.String("bootstrap-key-file", "", "")
	fs.Bool("print", false, "")
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return fs
}

func TestLoadPrecedence(t *testing.T) {
	file := writeFile(t, "handoff.yaml", `
listen: 10.0.0.1:1000
project: from-file
data: /file
tokens:
  length: 8
`)
	for _, tc := range []struct {
		name  string
		env   []string
		flags []string
		want  Config // only Listen, Project, Data and Tokens.Length are compared
	}{
		{
			name: "file over defaults",
			want: Config{Listen: "10.0.0.1:1000", Project: "from-file", Data: "/file", Tokens: Tokens{Length: 8}},
		},
		{
			name: "env over file",
			env:  []string{"HANDOFF_LISTEN=10.0.0.2:2000", "HANDOFF_PROJECT=from-env", "HANDOFF_TOKENS__LENGTH=12"},
			want: Config{Listen: "10.0.0.2:2000", Project: "from-env", Data: "/file", Tokens: Tokens{Length: 12}},
		},
		{
			name:  "flags over env",
			env:   []string{"HANDOFF_LISTEN=10.0.0.2:2000", "HANDOFF_PROJECT=from-env"},
			flags: []string{"--listen", "10.0.0.3:3000", "--data=/flag"},
			want:  Config{Listen: "10.0.0.3:3000", Project: "from-env", Data: "/flag", Tokens: Tokens{Length: 8}},
		},
		{
			name:  "unchanged flags do not override",
			env:   []string{"HANDOFF_PROJECT=from-env"},
			flags: []string{"--print"},
			want:  Config{Listen: "10.0.0.1:1000", Project: "from-env", Data: "/file", Tokens: Tokens{Length: 8}},
		},
		{
			name: "non-config and test variables are ignored",
			env:  []string{"PATH=/bin", "HOME=/root", "handoff_listen=nope", "HANDOFF_=x", "HANDOFF_TEST_POSTGRES_DSN=postgres://x"},
			want: Config{Listen: "10.0.0.1:1000", Project: "from-file", Data: "/file", Tokens: Tokens{Length: 8}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := tc.env
			if env == nil {
				env = []string{}
			}
			c, err := Load(LoadOptions{Path: file, Env: env, Flags: newFlags(t, tc.flags...)})
			if err != nil {
				t.Fatal(err)
			}
			if c.Listen != tc.want.Listen || c.Project != tc.want.Project || c.Data != tc.want.Data || c.Tokens.Length != tc.want.Tokens.Length {
				t.Errorf("got listen=%q project=%q data=%q tokens.length=%d, want listen=%q project=%q data=%q tokens.length=%d",
					c.Listen, c.Project, c.Data, c.Tokens.Length,
					tc.want.Listen, tc.want.Project, tc.want.Data, tc.want.Tokens.Length)
			}
			if c.Tokens.Expire != 15*time.Minute {
				t.Errorf("tokens.expire = %s, want the default 15m", c.Tokens.Expire)
			}
		})
	}
}

// TestBootstrapKeyFileFlag: serve's --bootstrap-key-file sets
// secrets.bootstrap_key_file, over the environment.
func TestBootstrapKeyFileFlag(t *testing.T) {
	c, err := Load(LoadOptions{
		Env:   []string{"HANDOFF_SECRETS__BOOTSTRAP_KEY_FILE=/env/key"},
		Flags: newFlags(t, "--bootstrap-key-file", "/flag/key"),
	})
	if err != nil {
		t.Fatal(err)
	}
	if c.Secrets.BootstrapKeyFile != "/flag/key" {
		t.Fatalf("secrets.bootstrap_key_file = %q, want /flag/key", c.Secrets.BootstrapKeyFile)
	}
}

func TestLoadFiles(t *testing.T) {
	t.Run("no file gives the defaults", func(t *testing.T) {
		c, err := Load(LoadOptions{DefaultPath: filepath.Join(t.TempDir(), "handoff.yaml"), Env: []string{}})
		if err != nil {
			t.Fatal(err)
		}
		a, _ := Effective(c)
		b, _ := Effective(Default())
		if !bytes.Equal(a, b) {
			t.Errorf("got\n%s\nwant\n%s", a, b)
		}
	})
	t.Run("default path used when present", func(t *testing.T) {
		path := writeFile(t, "handoff.yaml", "project: from-default\n")
		c, err := Load(LoadOptions{DefaultPath: path, Env: []string{}})
		if err != nil {
			t.Fatal(err)
		}
		if c.Project != "from-default" {
			t.Errorf("project = %q", c.Project)
		}
	})
	t.Run("explicit path wins over default path", func(t *testing.T) {
		def := writeFile(t, "handoff.yaml", "project: from-default\n")
		path := writeFile(t, "other.yml", "project: explicit\n")
		c, err := Load(LoadOptions{Path: path, DefaultPath: def, Env: []string{}})
		if err != nil {
			t.Fatal(err)
		}
		if c.Project != "explicit" {
			t.Errorf("project = %q", c.Project)
		}
	})
	t.Run("missing explicit path", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "nope.yaml")
		_, err := Load(LoadOptions{Path: path, Env: []string{}})
		if err == nil || !strings.Contains(err.Error(), "nope.yaml") {
			t.Errorf("err = %v, want one naming the file", err)
		}
	})
	t.Run("unknown extension", func(t *testing.T) {
		path := writeFile(t, "handoff.json", "{}")
		if _, err := Load(LoadOptions{Path: path, Env: []string{}}); err == nil || !strings.Contains(err.Error(), "unknown file type") {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("syntax error", func(t *testing.T) {
		path := writeFile(t, "handoff.yaml", "tokens: [\n")
		if _, err := Load(LoadOptions{Path: path, Env: []string{}}); err == nil || !strings.Contains(err.Error(), "handoff.yaml") {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("toml", func(t *testing.T) {
		c, err := Load(LoadOptions{Path: "testdata/small.toml", Env: []string{}})
		if err != nil {
			t.Fatal(err)
		}
		if c.Tokens.Expire != 30*time.Minute || len(c.Providers) != 2 || c.Providers[1].Timeout != 2*time.Second ||
			c.Providers[0].Config["issuer"] != "https://token.actions.githubusercontent.com" {
			t.Errorf("got %+v", c)
		}
		if err := c.Validate(); err != nil {
			t.Error(err)
		}
	})
}

func TestLoadEnv(t *testing.T) {
	file := writeFile(t, "handoff.yaml", `
providers:
  - name: captcha
    kind: captcha
    deliver:
      via: webhook
      webhook:
        url: https://backend.example.com/hook
`)
	for _, tc := range []struct {
		name  string
		env   string
		check func(Config) bool
	}{
		{"HANDOFF_STORE__PATH", "HANDOFF_STORE__PATH=/srv/handoff.db",
			func(c Config) bool { return c.Store.Path == "/srv/handoff.db" && c.StorePath() == "/srv/handoff.db" }},
		{"underscores stay inside a level", "HANDOFF_TOKENS__MAX_ATTEMPTS=3",
			func(c Config) bool { return c.Tokens.MaxAttempts == 3 }},
		{"booleans", "HANDOFF_LIMITS__ENABLED=false",
			func(c Config) bool { return !c.Limits.Enabled }},
		{"durations as Go strings", "HANDOFF_SESSIONS__DURATION=48h",
			func(c Config) bool { return c.Sessions.Duration == 48*time.Hour }},
		{"durations as seconds", "HANDOFF_TOKENS__EXPIRE=900",
			func(c Config) bool { return c.Tokens.Expire == 15*time.Minute }},
		{"lists split on commas", "HANDOFF_CORS__ORIGINS=https://a.example, https://b.example",
			func(c Config) bool {
				return slices.Equal(c.CORS.Origins, []string{"https://a.example", "https://b.example"})
			}},
		{"redirect list", "HANDOFF_REDIRECT__ALLOW=https://a.example/cb",
			func(c Config) bool { return slices.Equal(c.Redirect.Allow, []string{"https://a.example/cb"}) }},
		{"list entry of the file", "HANDOFF_PROVIDERS__0__DELIVER__WEBHOOK__SECRET=whsec_c2VjcmV0",
			func(c Config) bool {
				return len(c.Providers) == 1 && c.Providers[0].Name == "captcha" &&
					c.Providers[0].Deliver.Webhook.Secret == "whsec_c2VjcmV0"
			}},
		{"new list entry", "HANDOFF_PROVIDERS__1__NAME=pw",
			func(c Config) bool { return len(c.Providers) == 2 && c.Providers[1].Name == "pw" }},
		{"secrets key file", "HANDOFF_SECRETS__KEY_FILE=/etc/handoff/secrets.key",
			func(c Config) bool {
				path, generated := c.SecretsKeyFile()
				return c.Secrets.KeyFile == "/etc/handoff/secrets.key" && path == c.Secrets.KeyFile && !generated
			}},
		{"secrets key file unset on bolt", "HANDOFF_DATA=/srv",
			func(c Config) bool {
				path, generated := c.SecretsKeyFile()
				return path == filepath.Join("/srv", "handoff.db.key") && generated
			}},
		{"bootstrap key file", "HANDOFF_SECRETS__BOOTSTRAP_KEY_FILE=/run/first-key",
			func(c Config) bool { return c.Secrets.BootstrapKeyFile == "/run/first-key" }},
		{"raw provider config", "HANDOFF_PROVIDERS__0__CONFIG__SITE_SECRET=abc",
			func(c Config) bool { return c.Providers[0].Config["site_secret"] == "abc" }},
		{"audit sink", "HANDOFF_AUDIT__SINK=file",
			func(c Config) bool { return c.Audit.Sink == AuditFile && c.Audit.Batch == DefaultAuditBatch }},
		{"audit path", "HANDOFF_AUDIT__PATH=/var/log/handoff/audit.jsonl",
			func(c Config) bool { return c.Audit.Path == "/var/log/handoff/audit.jsonl" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Load(LoadOptions{Path: file, Env: []string{tc.env}})
			if err != nil {
				t.Fatal(err)
			}
			if !tc.check(c) {
				t.Errorf("%s not applied: %+v", tc.env, c)
			}
		})
	}
}

func TestLoadProblems(t *testing.T) {
	for _, tc := range []struct {
		name string
		file string
		env  []string
		want []string // substrings of the error, in order of the lines
	}{
		{
			name: "unknown key in file",
			file: "tokens:\n  lenght: 6\n",
			want: []string{`tokens.lenght: unknown key; did you mean "tokens.length"?`},
		},
		{
			name: "unknown top-level key in file",
			file: "lisen: :80\n",
			want: []string{`lisen: unknown key; did you mean "listen"?`},
		},
		{
			name: "key names match case",
			file: "Listen: :80\n",
			want: []string{`Listen: unknown key`},
		},
		{
			name: "unknown key in a provider",
			file: "providers:\n  - name: a\n    kind: password\n    deliver:\n      webhook:\n        urll: x\n",
			want: []string{`providers[0].deliver.webhook.urll: unknown key; did you mean "providers[0].deliver.webhook.url"?`},
		},
		{
			name: "unexported fields are not keys",
			file: "tokens:\n  pepperFromFile: true\n",
			want: []string{`tokens.pepperFromFile: unknown key`},
		},
		{
			name: "unknown key in env",
			env:  []string{"HANDOFF_TOKENS__LENGHT=6"},
			want: []string{`tokens.lenght: unknown key; did you mean "tokens.length"? (from HANDOFF_TOKENS__LENGHT)`},
		},
		{
			name: "unknown section in env",
			env:  []string{"HANDOFF_NOPE__X=1"},
			want: []string{`nope: unknown key (from HANDOFF_NOPE__X)`},
		},
		{
			name: "bad duration in file",
			file: "tokens:\n  expire: 15 minutes\n",
			want: []string{`tokens.expire: invalid duration "15 minutes"`},
		},
		{
			name: "bad duration in env",
			env:  []string{"HANDOFF_HTTP__READ_TIMEOUT=soon"},
			want: []string{`http.read_timeout: invalid duration "soon"`, `(from HANDOFF_HTTP__READ_TIMEOUT)`},
		},
		{
			name: "bad number in env",
			env:  []string{"HANDOFF_TOKENS__LENGTH=six"},
			want: []string{`tokens.length: want a whole number, got "six" (from HANDOFF_TOKENS__LENGTH)`},
		},
		{
			name: "fraction for a whole number",
			file: "tokens:\n  length: 6.5\n",
			want: []string{`tokens.length: want a whole number, got 6.5`},
		},
		{
			name: "mapping for a string",
			file: "listen:\n  host: x\n",
			want: []string{`listen: want a string, got a mapping`},
		},
		{
			name: "list index past the end",
			env:  []string{"HANDOFF_PROVIDERS__3__NAME=x"},
			want: []string{`providers[3].name: index 3 is past the end of the list (0 entries) (from HANDOFF_PROVIDERS__3__NAME)`},
		},
		{
			name: "several at once, sorted by key",
			file: "tokens:\n  lenght: 6\n  expire: later\nlog:\n  colour: true\n",
			env:  []string{"HANDOFF_SESSIONS__DURATION=x"},
			want: []string{"log.colour: unknown key", "sessions.duration: invalid duration", "tokens.expire: invalid duration", "tokens.lenght: unknown key"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := LoadOptions{Env: tc.env}
			if opts.Env == nil {
				opts.Env = []string{}
			}
			if tc.file != "" {
				opts.Path = writeFile(t, "handoff.yaml", tc.file)
			}
			_, err := Load(opts)
			ps := problems(t, err)
			msg := err.Error()
			at := 0
			for _, w := range tc.want {
				i := strings.Index(msg[at:], w)
				if i < 0 {
					t.Fatalf("error\n%s\nlacks %q (in this order: %q)", msg, w, tc.want)
				}
				at += i + len(w)
			}
			if len(ps) < 1 {
				t.Errorf("no problems")
			}
		})
	}
	t.Run("provider config stays raw", func(t *testing.T) {
		path := writeFile(t, "handoff.yaml", `
providers:
  - name: sso
    kind: oidc
    config:
      anything: [1, 2]
      nested: {deep: {er: true}}
      1: numeric keys become strings
`)
		c, err := Load(LoadOptions{Path: path, Env: []string{}})
		if err != nil {
			t.Fatal(err)
		}
		nested, ok := c.Providers[0].Config["nested"].(map[string]any)
		if !ok || c.Providers[0].Config["1"] != "numeric keys become strings" {
			t.Fatalf("config = %#v", c.Providers[0].Config)
		}
		if _, ok := nested["deep"].(map[string]any); !ok {
			t.Errorf("nested = %#v", nested)
		}
	})
}

func TestLoadDurations(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		want       time.Duration
	}{
		{"go string", "15m", 15 * time.Minute},
		{"compound", "1h30m", 90 * time.Minute},
		{"seconds", "900", 15 * time.Minute},
		{"quoted seconds", `"900"`, 15 * time.Minute},
		{"fractional seconds", "1.5", 1500 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeFile(t, "handoff.yaml", "tokens:\n  expire: "+tc.yaml+"\n")
			c, err := Load(LoadOptions{Path: path, Env: []string{}})
			if err != nil {
				t.Fatal(err)
			}
			if c.Tokens.Expire != tc.want {
				t.Errorf("tokens.expire = %s, want %s", c.Tokens.Expire, tc.want)
			}
		})
	}
	for _, tc := range []struct{ name, yaml string }{
		{"words", "soon"},
		{"too long", "99999999999999999"},
		{"list", "[1]"},
	} {
		t.Run("bad "+tc.name, func(t *testing.T) {
			path := writeFile(t, "handoff.yaml", "tokens:\n  expire: "+tc.yaml+"\n")
			_, err := Load(LoadOptions{Path: path, Env: []string{}})
			if ps := problems(t, err); ps[0].Key != "tokens.expire" {
				t.Errorf("problems = %v", ps)
			}
		})
	}
}

func TestSecretFiles(t *testing.T) {
	dir := t.TempDir()
	secret := func(name, content string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	pepper := secret("pepper", "0123456789abcdef0123\n")
	dsn := secret("dsn", "postgres://u:p@db/h\r\n")
	hook := secret("hook", "whsec_c2VjcmV0\n")
	pass := secret("pass", "hunter2\n")
	empty := secret("empty", "\n")

	t.Run("read into the sibling keys", func(t *testing.T) {
		path := writeFile(t, "handoff.yaml", `
store: {driver: postgres, dsn_file: `+dsn+`}
secrets: {key_file: /etc/handoff/secrets.key}
tokens: {pepper_file: `+pepper+`}
providers:
  - name: a
    kind: captcha
    deliver:
      via: webhook
      webhook: {url: "https://b.example/h", secret_file: `+hook+`}
  - name: b
    kind: password
    deliver:
      via: email
      email: {smtp: "smtp.example:587", from: "a@example.com", password_file: `+pass+`}
`)
		c, err := Load(LoadOptions{Path: path, Env: []string{}})
		if err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct{ name, got, want string }{
			{"tokens.pepper", c.Tokens.Pepper, "0123456789abcdef0123"},
			{"store.dsn", c.Store.DSN, "postgres://u:p@db/h"},
			{"webhook.secret", c.Providers[0].Deliver.Webhook.Secret, "whsec_c2VjcmV0"},
			{"email.password", c.Providers[1].Deliver.Email.Password, "hunter2"},
		} {
			if tc.got != tc.want {
				t.Errorf("%s = %q, want %q", tc.name, tc.got, tc.want)
			}
		}
		if err := c.Validate(); err != nil {
			t.Errorf("Validate() = %v", err)
		}
	})
	t.Run("file path from env", func(t *testing.T) {
		c, err := Load(LoadOptions{Env: []string{"HANDOFF_TOKENS__PEPPER_FILE=" + pepper}})
		if err != nil {
			t.Fatal(err)
		}
		if c.Tokens.Pepper != "0123456789abcdef0123" {
			t.Errorf("pepper = %q", c.Tokens.Pepper)
		}
	})
	t.Run("both set", func(t *testing.T) {
		path := writeFile(t, "handoff.yaml", "tokens: {pepper: inline-pepper-0123456, pepper_file: "+pepper+"}\n")
		c, err := Load(LoadOptions{Path: path, Env: []string{}})
		if err != nil {
			t.Fatal(err)
		}
		if c.Tokens.Pepper != "inline-pepper-0123456" {
			t.Errorf("pepper = %q, want the inline one untouched", c.Tokens.Pepper)
		}
		ps := problems(t, c.Validate())
		if !slices.Equal(problemKeys(ps), []string{"tokens.pepper_file"}) {
			t.Errorf("problems = %v", ps)
		}
	})
	t.Run("missing and empty files", func(t *testing.T) {
		path := writeFile(t, "handoff.yaml", `
tokens: {pepper_file: `+filepath.Join(dir, "nope")+`}
store: {dsn_file: `+empty+`}
`)
		_, err := Load(LoadOptions{Path: path, Env: []string{}})
		ps := problems(t, err)
		if !slices.Equal(problemKeys(ps), []string{"tokens.pepper_file", "store.dsn_file"}) {
			t.Errorf("problems = %v", ps)
		}
	})
}

// valid returns a config that passes Validate, with one provider of each
// delivery.
func valid() Config {
	c := Default()
	c.PublicURL = "https://auth.example.com"
	c.CORS.Origins = []string{"https://app.example.com", "http://localhost:3000"}
	c.Redirect.Allow = []string{"https://app.example.com/auth/"}
	c.Providers = []Provider{
		Provider{Name: "google", Kind: "oidc", Guards: []string{"captcha"}, Deliver: Deliver{Via: "redirect"}}.WithDefaults(),
		Provider{Name: "captcha", Kind: "captcha", Deliver: Deliver{Via: "webhook", Webhook: Webhook{
			URL: "https://backend.example.com/hook", Secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
		}}}.WithDefaults(),
		Provider{Name: "corp", Plugin: &Plugin{Path: "/bin/corp", SHA256: strings.Repeat("ab", 32)}, Deliver: Deliver{Via: "email", Email: Email{
			SMTP: "smtp.example.com:587", From: "Sign-in <a@example.com>", Template: "{{.Secret}}",
		}}}.WithDefaults(),
	}
	return c
}

func TestValidate(t *testing.T) {
	if err := valid().Validate(); err != nil {
		t.Fatalf("valid().Validate() = %v", err)
	}
	for _, tc := range []struct {
		name   string
		change func(*Config)
		want   []string // problem keys, in order
	}{
		{"listen without port", func(c *Config) { c.Listen = "localhost" }, []string{"listen"}},
		{"audit sink unknown", func(c *Config) { c.Audit.Sink = "syslog" }, []string{"audit.sink"}},
		{"audit file without path", func(c *Config) { c.Audit.Sink = AuditFile }, []string{"audit.path"}},
		{"audit file", func(c *Config) { c.Audit.Sink, c.Audit.Path = AuditFile, "/var/log/a.jsonl" }, nil},
		{"audit stdout", func(c *Config) { c.Audit.Sink = AuditStdout }, nil},
		{"audit webhook without url and secret", func(c *Config) { c.Audit.Sink = AuditWebhook }, []string{"audit.webhook.url", "audit.webhook.secret"}},
		{"audit webhook", func(c *Config) {
			c.Audit.Sink, c.Audit.Webhook.URL, c.Audit.Webhook.Secret = AuditWebhook, "https://siem.example/in", "whsec_c2VjcmV0"
		}, nil},
		{"audit batch", func(c *Config) { c.Audit.Batch = 0 }, []string{"audit.batch"}},
		{"audit buffer", func(c *Config) { c.Audit.Buffer = 0 }, []string{"audit.buffer"}},
		{"listen with a bad port", func(c *Config) { c.Listen = ":http" }, []string{"listen"}},
		{"listen on any host", func(c *Config) { c.Listen = ":8080" }, nil},
		{"public_url relative", func(c *Config) { c.PublicURL = "/auth" }, []string{"public_url"}},
		{"project empty", func(c *Config) { c.Project = "" }, []string{"project"}},
		{"project starts with dot", func(c *Config) { c.Project = ".app" }, []string{"project"}},
		{"project too long", func(c *Config) { c.Project = strings.Repeat("a", 37) }, []string{"project"}},
		{"project of 36", func(c *Config) { c.Project = strings.Repeat("a", 36) }, nil},
		{"project bad char", func(c *Config) { c.Project = "my app" }, []string{"project"}},
		{"data empty", func(c *Config) { c.Data = "" }, []string{"data"}},
		{"store driver", func(c *Config) { c.Store.Driver = "sqlite" }, []string{"store.driver"}},
		{"postgres without dsn", func(c *Config) { c.Store.Driver, c.Secrets.KeyFile = "postgres", "/k" }, []string{"store.dsn"}},
		{"postgres with dsn", func(c *Config) { c.Store.Driver, c.Store.DSN, c.Secrets.KeyFile = "postgres", "postgres://db/h", "/k" }, nil},
		{"postgres without a secrets key", func(c *Config) { c.Store.Driver, c.Store.DSN = "postgres", "postgres://db/h" }, []string{"secrets.key_file"}},
		{"bolt without a secrets key", func(c *Config) { c.Secrets.KeyFile = "" }, nil},
		{"dsn twice", func(c *Config) { c.Store.DSN, c.Store.DSNFile = "x", "/run/dsn" }, []string{"store.dsn_file"}},
		{"sweep interval", func(c *Config) { c.Store.SweepInterval = 0 }, []string{"store.sweep_interval"}},
		{"postgres writers 0", func(c *Config) {
			c.Store.Driver, c.Store.DSN, c.Secrets.KeyFile, c.Store.Writers = "postgres", "postgres://db/h", "/k", 0
		}, []string{"store.writers"}},
		{"postgres writers past max_conns", func(c *Config) {
			c.Store.Driver, c.Store.DSN, c.Secrets.KeyFile, c.Store.MaxConns, c.Store.Writers = "postgres", "postgres://db/h", "/k", 4, 5
		}, []string{"store.writers"}},
		{"postgres writers at max_conns", func(c *Config) {
			c.Store.Driver, c.Store.DSN, c.Secrets.KeyFile, c.Store.MaxConns, c.Store.Writers = "postgres", "postgres://db/h", "/k", 4, 4
		}, nil},
		{"store timeout", func(c *Config) { c.Store.Timeout = 0 }, []string{"store.timeout"}},
		{"key cache off", func(c *Config) { c.Store.KeyCache = 0 }, nil},
		{"key cache negative", func(c *Config) { c.Store.KeyCache = -time.Second }, []string{"store.key_cache"}},
		{"key cache too long", func(c *Config) { c.Store.KeyCache = 2 * time.Minute }, []string{"store.key_cache"}},
		{"store timeout past the write timeout", func(c *Config) { c.Store.Timeout = 10 * time.Second }, []string{"store.timeout"}},
		{"token length low", func(c *Config) { c.Tokens.Length = 3 }, []string{"tokens.length"}},
		{"token length high", func(c *Config) { c.Tokens.Length = 129 }, []string{"tokens.length"}},
		{"token length bounds", func(c *Config) { c.Tokens.Length = 128 }, nil},
		{"token expire low", func(c *Config) { c.Tokens.Expire = 59 * time.Second }, []string{"tokens.expire"}},
		{"token expire high", func(c *Config) { c.Tokens.Expire = 31536001 * time.Second }, []string{"tokens.expire"}},
		{"token expire max", func(c *Config) { c.Tokens.Expire = 31536000 * time.Second }, nil},
		{"token expire fraction", func(c *Config) { c.Tokens.Expire = 90500 * time.Millisecond }, []string{"tokens.expire"}},
		{"max attempts zero", func(c *Config) { c.Tokens.MaxAttempts = 0 }, []string{"tokens.max_attempts"}},
		{"max attempts over NIST", func(c *Config) { c.Tokens.MaxAttempts = 101 }, []string{"tokens.max_attempts"}},
		{"max attempts 100", func(c *Config) { c.Tokens.MaxAttempts = 100 }, nil},
		{"max outstanding zero", func(c *Config) { c.Tokens.MaxOutstanding = 0 }, []string{"tokens.max_outstanding"}},
		{"max outstanding 101", func(c *Config) { c.Tokens.MaxOutstanding = 101 }, []string{"tokens.max_outstanding"}},
		{"max outstanding 1", func(c *Config) { c.Tokens.MaxOutstanding = 1 }, nil},
		{"max outstanding 100", func(c *Config) { c.Tokens.MaxOutstanding = 100 }, nil},
		{"short pepper", func(c *Config) { c.Tokens.Pepper = "short" }, []string{"tokens.pepper"}},
		{"session under a minute", func(c *Config) { c.Sessions.Duration = 59 * time.Second }, []string{"sessions.duration"}},
		{"max per user unlimited", func(c *Config) { c.Sessions.MaxPerUser = -1 }, nil},
		{"max per user -2", func(c *Config) { c.Sessions.MaxPerUser = -2 }, []string{"sessions.max_per_user"}},
		{"cors origin with path", func(c *Config) { c.CORS.Origins[1] = "https://app.example.com/x" }, []string{"cors.origins[1]"}},
		{"cors origin with slash", func(c *Config) { c.CORS.Origins[0] = "https://app.example.com/" }, []string{"cors.origins[0]"}},
		{"cors origin not http", func(c *Config) { c.CORS.Origins[0] = "ftp://app.example.com" }, []string{"cors.origins[0]"}},
		{"cors origin wildcard", func(c *Config) { c.CORS.Origins[0] = "*" }, []string{"cors.origins[0]"}},
		{"http timeouts", func(c *Config) { c.HTTP.ReadTimeout, c.HTTP.IdleTimeout = 0, -time.Second },
			[]string{"http.read_timeout", "http.idle_timeout"}},
		{"trusted proxies", func(c *Config) {
			c.HTTP.TrustedProxies = []string{"10.0.0.0/8", "192.0.2.7", "2001:db8::/32", "::ffff:10.1.0.0/112"}
		}, nil},
		{"trusted proxies bad CIDR", func(c *Config) { c.HTTP.TrustedProxies = []string{"10.0.0.0/8", "10.0.0.0/33", "proxy.internal", ""} },
			[]string{"http.trusted_proxies[1]", "http.trusted_proxies[2]", "http.trusted_proxies[3]"}},
		{"client ip header", func(c *Config) { c.HTTP.ClientIPHeader = "x-real-ip" }, []string{"http.client_ip_header"}},
		{"client ip header forwarded", func(c *Config) { c.HTTP.ClientIPHeader = "forwarded" }, nil},
		{"ipv6 prefix too short", func(c *Config) { c.HTTP.IPv6Prefix = 31 }, []string{"http.ipv6_prefix"}},
		{"ipv6 prefix too long", func(c *Config) { c.HTTP.IPv6Prefix = 129 }, []string{"http.ipv6_prefix"}},
		{"ipv6 prefix per address", func(c *Config) { c.HTTP.IPv6Prefix = 128 }, nil},
		{"redirect provider on any host without public_url", func(c *Config) { c.Listen, c.PublicURL = ":8080", "" }, []string{"public_url"}},
		{"redirect provider on a public address without public_url", func(c *Config) { c.Listen, c.PublicURL = "192.0.2.1:443", "" }, []string{"public_url"}},
		{"oidc delivering by response on any host without public_url", func(c *Config) {
			c.Listen, c.PublicURL, c.Providers[0].Deliver.Via = "0.0.0.0:8080", "", "response"
		}, []string{"public_url"}},
		{"oauth2 delivering by response on any host without public_url", func(c *Config) {
			c.Listen, c.PublicURL, c.Providers[0].Kind, c.Providers[0].Deliver.Via = "0.0.0.0:8080", "", "oauth2", "response"
		}, []string{"public_url"}},
		{"redirect provider on loopback without public_url", func(c *Config) { c.PublicURL = "" }, nil},
		{"redirect provider on localhost without public_url", func(c *Config) { c.Listen, c.PublicURL = "localhost:8080", "" }, nil},
		{"redirect provider on ::1 without public_url", func(c *Config) { c.Listen, c.PublicURL = "[::1]:8080", "" }, nil},
		{"no redirect provider on any host without public_url", func(c *Config) { c.Listen, c.PublicURL, c.Providers = ":8080", "", c.Providers[1:] }, nil},
		{"body too small", func(c *Config) { c.HTTP.MaxBodyBytes = 1023 }, []string{"http.max_body_bytes"}},
		{"body too large", func(c *Config) { c.HTTP.MaxBodyBytes = 64<<20 + 1 }, []string{"http.max_body_bytes"}},
		{"negative limit", func(c *Config) { c.Limits.JWT = -1 }, []string{"limits.jwt"}},
		{"log level", func(c *Config) { c.Log.Level = "verbose" }, []string{"log.level"}},
		{"log format", func(c *Config) { c.Log.Format = "xml" }, []string{"log.format"}},
		{"redirect relative", func(c *Config) { c.Redirect.Allow = []string{"/cb"} }, []string{"redirect.allow[0]"}},
		{"provider without name", func(c *Config) { c.Providers[2].Name = "" }, []string{"providers[2].name"}},
		{"provider bad name", func(c *Config) { c.Providers[2].Name = "-corp" }, []string{"providers[2].name"}},
		{"provider duplicate name", func(c *Config) { c.Providers[2].Name = "google" }, []string{"providers[2].name"}},
		{"provider kind and plugin", func(c *Config) { c.Providers[2].Kind = "oidc" }, []string{"providers[2]"}},
		{"provider neither kind nor plugin", func(c *Config) { c.Providers[0].Kind = "" }, []string{"providers[0]"}},
		{"plugin without path", func(c *Config) { c.Providers[2].Plugin.Path = "" }, []string{"providers[2].plugin.path"}},
		{"plugin bad sha256", func(c *Config) { c.Providers[2].Plugin.SHA256 = "abc" }, []string{"providers[2].plugin.sha256"}},
		{"guard unknown", func(c *Config) { c.Providers[0].Guards = []string{"nobody"} }, []string{"providers[0].guards[0]"}},
		{"guard itself", func(c *Config) { c.Providers[1].Guards = []string{"captcha"} }, []string{"providers[1].guards[0]"}},
		{"deliver via", func(c *Config) { c.Providers[0].Deliver.Via = "pigeon" }, []string{"providers[0].deliver.via"}},
		{"deliver via unset means response", func(c *Config) { c.Providers[0].Deliver.Via = "" }, nil},
		{"webhook without url and secret", func(c *Config) { c.Providers[1].Deliver.Webhook = Webhook{Timeout: time.Second, Attempts: 1} },
			[]string{"providers[1].deliver.webhook.url", "providers[1].deliver.webhook.secret"}},
		{"webhook secret prefix", func(c *Config) { c.Providers[1].Deliver.Webhook.Secret = "c2VjcmV0" }, []string{"providers[1].deliver.webhook.secret"}},
		{"webhook secret base64", func(c *Config) { c.Providers[1].Deliver.Webhook.Secret = "whsec_not base64!" }, []string{"providers[1].deliver.webhook.secret"}},
		{"webhook attempts", func(c *Config) { c.Providers[1].Deliver.Webhook.Attempts = 0 }, []string{"providers[1].deliver.webhook.attempts"}},
		{"webhook secret twice", func(c *Config) { c.Providers[1].Deliver.Webhook.SecretFile = "/run/s" }, []string{"providers[1].deliver.webhook.secret_file"}},
		{"email without smtp and from", func(c *Config) { c.Providers[2].Deliver.Email.SMTP, c.Providers[2].Deliver.Email.From = "", "" },
			[]string{"providers[2].deliver.email.smtp", "providers[2].deliver.email.from"}},
		{"email smtp without port", func(c *Config) { c.Providers[2].Deliver.Email.SMTP = "smtp.example.com" }, []string{"providers[2].deliver.email.smtp"}},
		{"email tls", func(c *Config) { c.Providers[2].Deliver.Email.TLS = "ssl" }, []string{"providers[2].deliver.email.tls"}},
		{"email template", func(c *Config) { c.Providers[2].Deliver.Email.Template = "{{.Secret" }, []string{"providers[2].deliver.email.template"}},
		{"provider timeout", func(c *Config) { c.Providers[0].Timeout = 0 }, []string{"providers[0].timeout"}},
		{"provider token override", func(c *Config) { c.Providers[0].Token = TokenOverride{Length: 2, Expire: time.Second} },
			[]string{"providers[0].token.length", "providers[0].token.expire"}},
		{
			name: "every problem at once",
			change: func(c *Config) {
				c.Listen = "nope"
				c.Project = ""
				c.Store.Driver = "postgres"
				c.Tokens.Length = 2
				c.Tokens.MaxAttempts = 1000
				c.HTTP.WriteTimeout = 0
				c.Log.Level = "loud"
				c.Providers[0].Guards = []string{"google"}
				c.Providers[1].Deliver.Webhook.URL = "not a url"
				c.Providers[2].Plugin.SHA256 = ""
			},
			want: []string{
				"listen", "project", "store.dsn", "secrets.key_file", "tokens.length", "tokens.max_attempts",
				"http.write_timeout", "log.level", "providers[0].guards[0]",
				"providers[1].deliver.webhook.url", "providers[2].plugin.sha256",
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := valid()
			tc.change(&c)
			err := c.Validate()
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			ps := problems(t, err)
			if got := problemKeys(ps); !slices.Equal(got, tc.want) {
				t.Errorf("problem keys = %q, want %q\n%v", got, tc.want, err)
			}
			if lines := strings.Split(err.Error(), "\n"); len(lines) != len(ps) {
				t.Errorf("Error() has %d lines for %d problems", len(lines), len(ps))
			}
		})
	}
}

// TestTrustedPrefixes: trust_proxy true adds loopback and the private
// ranges to trusted_proxies; a single address is its own /32 or /128.
func TestTrustedPrefixes(t *testing.T) {
	h := HTTP{TrustedProxies: []string{"203.0.113.9", "2001:db8::/48"}}
	want := []string{"203.0.113.9/32", "2001:db8::/48"}
	if got := fmt.Sprint(h.TrustedPrefixes()); got != fmt.Sprint(want) {
		t.Fatalf("TrustedPrefixes() = %s, want %s", got, want)
	}
	h.TrustProxy = true
	want = append(want, "127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")
	if got := fmt.Sprint(h.TrustedPrefixes()); got != fmt.Sprint(want) {
		t.Fatalf("with trust_proxy: %s, want %s", got, want)
	}
	if len(h.TrustedProxies) != 2 {
		t.Fatal("TrustedPrefixes changed the config")
	}
}

func TestProblemsError(t *testing.T) {
	ps := Problems{
		{Key: "listen", Message: `must be host:port, got "x"`},
		{Message: "no key"},
		{Key: "providers[1].deliver.webhook.url", Message: "is required"},
	}
	want := "listen: must be host:port, got \"x\"\nno key\nproviders[1].deliver.webhook.url: is required"
	if got := ps.Error(); got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

func TestRedacted(t *testing.T) {
	c := valid()
	c.Tokens.Pepper = "0123456789abcdef-pepper"
	c.Store.DSN = "postgres://u:p@db/h"
	c.Providers[0].Config = map[string]any{
		"client_id":          "id",
		"client_secret":      "s3cret",
		"client_secret_file": "/etc/handoff/client_secret",
		"token_url":          "https://idp.example/token",
		"nested":             map[string]any{"api_key": "k", "region": "eu", "private_key_file": "/etc/k.pem"},
		"headers":            map[string]any{"X-Api-Key": "vendor-key"},
		"access_token":       "at",
		"db_password":        "pw",
	}
	c.Providers[2].Plugin.Env = map[string]string{"CORP_TOKEN": "t", "CORP_REGION": "eu", "CORP_TOKEN_FILE": "/run/corp/token"}
	c.Providers[2].Deliver.Email.Password = "hunter2"
	c.Providers[2].Deliver.Email.PasswordFile = "/etc/handoff/smtp_password"
	c.Providers[1].Deliver.Webhook.SecretFile = "/etc/handoff/webhook_secret"
	c.Tokens.PepperFile = "/etc/handoff/pepper"
	c.Store.DSNFile = "/etc/handoff/dsn"

	r := c.Redacted()
	for _, tc := range []struct {
		name      string
		got, want any
	}{
		{"tokens.pepper", r.Tokens.Pepper, Redacted},
		{"store.dsn keeps all but the password", r.Store.DSN, "postgres://u:REDACTED@db/h"},
		{"webhook.secret", r.Providers[1].Deliver.Webhook.Secret, Redacted},
		{"email.password", r.Providers[2].Deliver.Email.Password, Redacted},
		{"tokens.pepper_file kept", r.Tokens.PepperFile, "/etc/handoff/pepper"},
		{"store.dsn_file kept", r.Store.DSNFile, "/etc/handoff/dsn"},
		{"webhook.secret_file kept", r.Providers[1].Deliver.Webhook.SecretFile, "/etc/handoff/webhook_secret"},
		{"email.password_file kept", r.Providers[2].Deliver.Email.PasswordFile, "/etc/handoff/smtp_password"},
		{"config client_secret_file kept", r.Providers[0].Config["client_secret_file"], "/etc/handoff/client_secret"},
		{"config nested private_key_file kept", r.Providers[0].Config["nested"].(map[string]any)["private_key_file"], "/etc/k.pem"},
		{"config header X-Api-Key", r.Providers[0].Config["headers"].(map[string]any)["X-Api-Key"], Redacted},
		{"config access_token", r.Providers[0].Config["access_token"], Redacted},
		{"config db_password", r.Providers[0].Config["db_password"], Redacted},
		{"plugin env token file kept", r.Providers[2].Plugin.Env["CORP_TOKEN_FILE"], "/run/corp/token"},
		{"unset secret stays empty", r.Providers[0].Deliver.Webhook.Secret, ""},
		{"config client_secret", r.Providers[0].Config["client_secret"], Redacted},
		{"config client_id", r.Providers[0].Config["client_id"], "id"},
		{"config token_url", r.Providers[0].Config["token_url"], "https://idp.example/token"},
		{"config nested api_key", r.Providers[0].Config["nested"].(map[string]any)["api_key"], Redacted},
		{"config nested region", r.Providers[0].Config["nested"].(map[string]any)["region"], "eu"},
		{"plugin env token", r.Providers[2].Plugin.Env["CORP_TOKEN"], Redacted},
		{"plugin env region", r.Providers[2].Plugin.Env["CORP_REGION"], "eu"},
		{"original pepper", c.Tokens.Pepper, "0123456789abcdef-pepper"},
		{"original webhook secret", c.Providers[1].Deliver.Webhook.Secret, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"},
		{"original config", c.Providers[0].Config["client_secret"], "s3cret"},
		{"original nested config", c.Providers[0].Config["nested"].(map[string]any)["api_key"], "k"},
		{"original plugin env", c.Providers[2].Plugin.Env["CORP_TOKEN"], "t"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.got != tc.want {
				t.Errorf("got %v, want %v", tc.got, tc.want)
			}
		})
	}
	t.Run("effective output has no secret", func(t *testing.T) {
		out, err := Effective(c)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range []string{"0123456789abcdef-pepper", "u:p@db", "MfKQ9r8G", "hunter2", "s3cret", "vendor-key", ": at\n", ": pw\n"} {
			if bytes.Contains(out, []byte(s)) {
				t.Errorf("effective config shows %q:\n%s", s, out)
			}
		}
	})
}

// TestRedactDSN: config check --print shows which server and database a
// DSN names, never its password, in either DSN form.
func TestRedactDSN(t *testing.T) {
	for _, tc := range []struct{ name, dsn, want string }{
		{"empty", "", ""},
		{"url with password", "postgres://handoff:s3cret@db:5432/handoff?sslmode=verify-full", "postgres://handoff:REDACTED@db:5432/handoff?sslmode=verify-full"},
		{"url without password", "postgres://handoff@db/handoff", "postgres://handoff@db/handoff"},
		{"postgresql scheme", "postgresql://u:s3cret@db/h", "postgresql://u:REDACTED@db/h"},
		{"password in the query", "postgres://db/h?password=s3cret&sslmode=disable", "postgres://db/h?password=REDACTED&sslmode=disable"},
		{"sslpassword in the query", "postgres://u@db/h?sslpassword=s3cret", "postgres://u@db/h?sslpassword=REDACTED"},
		{"key=value", "host=db user=handoff password=s3cret dbname=handoff", "host=db user=handoff password=REDACTED dbname=handoff"},
		{"key=value quoted", "host=db password='s3 cret'", Redacted},
		{"unparsable url", "postgres://u:s3cret@[db/h", Redacted},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := redactDSN(tc.dsn); got != tc.want {
				t.Errorf("redactDSN(%q) = %q, want %q", tc.dsn, got, tc.want)
			}
		})
	}
}

func TestEffectiveRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name string
		c    Config
	}{
		{"defaults", Default()},
		{"valid", valid()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := Effective(tc.c)
			if err != nil {
				t.Fatal(err)
			}
			back, err := Load(LoadOptions{Path: writeFile(t, "effective.yaml", string(out)), Env: []string{}})
			if err != nil {
				t.Fatalf("Load(Effective(c)) = %v\n%s", err, out)
			}
			again, err := Effective(back)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out, again) {
				t.Errorf("round trip changed the config:\n%s\nbecame\n%s", out, again)
			}
		})
	}
}

// TestGolden loads each testdata config and compares its effective YAML
// with the .golden file next to it. Run with -update to rewrite them.
func TestGolden(t *testing.T) {
	var files []string
	for _, pattern := range []string{"testdata/*.yaml", "testdata/*.toml"} {
		m, err := filepath.Glob(pattern)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, m...)
	}
	if len(files) == 0 {
		t.Fatal("no testdata configs")
	}
	for _, in := range files {
		t.Run(filepath.Base(in), func(t *testing.T) {
			c, err := Load(LoadOptions{Path: in, Env: []string{}})
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if err := c.Validate(); err != nil {
				t.Fatalf("Validate:\n%v", err)
			}
			got, err := Effective(c)
			if err != nil {
				t.Fatal(err)
			}
			golden := strings.TrimSuffix(in, filepath.Ext(in)) + ".golden"
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./config -run TestGolden -update)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("effective config of %s differs from %s (rerun with -update if intended)\ngot:\n%s", in, golden, got)
			}
		})
	}
}

// FuzzLoad feeds arbitrary bytes to Load as a YAML file. Load, Validate and
// Effective may reject them but must never panic.
func FuzzLoad(f *testing.F) {
	for _, seed := range []string{
		"",
		"listen: :80\n",
		"tokens: {lenght: 6, expire: 900}\n",
		"providers:\n  - name: a\n    kind: b\n    config: {1: [{2: 3}]}\n",
		"providers: [1, [2], {plugin: {sha256: zz}}]\n",
		"cors: {origins: https://a.example}\n",
		"a: &a [*a]\n",
		"tokens: {expire: 1e300, length: -1e300}\n",
		"sessions: {duration: 9223372036854775807}\n",
	} {
		f.Add([]byte(seed))
	}
	if full, err := os.ReadFile("testdata/full.yaml"); err == nil {
		f.Add(full)
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(dir, "fuzz.yaml")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := Load(LoadOptions{Path: path, Env: []string{}})
		if err != nil {
			if err.Error() == "" {
				t.Error("empty error")
			}
			return
		}
		_ = c.Validate()
		if _, err := Effective(c); err != nil {
			t.Errorf("Effective: %v", err)
		}
	})
}

// TestAuditEnv is the issue's own line: the audit log to a file, set by
// the environment alone, loads and validates.
func TestAuditEnv(t *testing.T) {
	c, err := Load(LoadOptions{Env: []string{"HANDOFF_AUDIT__SINK=file", "HANDOFF_AUDIT__PATH=/var/log/handoff/audit.jsonl"}})
	if err != nil {
		t.Fatal(err)
	}
	if c.Audit.Sink != AuditFile || c.Audit.Path != "/var/log/handoff/audit.jsonl" {
		t.Fatalf("audit = %+v", c.Audit)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	if red := c.Redacted(); red.Audit.Path != c.Audit.Path {
		t.Errorf("Redacted changed audit.path: %q", red.Audit.Path)
	}
}
