package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/handoffd/handoff/config"
)

// greeter is an echo provider whose identities carry greeting as the
// user's name.
func greeter(t *testing.T, name, greeting string) config.Provider {
	return echoProvider(t, name, func(p *config.Provider) { p.Config = map[string]any{"greeting": greeting} })
}

// hammer verifies against provider with new subjects until stop is
// closed, from a goroutine (no t.Fatal there): it counts the answers and
// keeps the first that was not 201.
type hammer struct {
	ok, bad atomic.Int64
	mu      sync.Mutex
	first   string
	done    chan struct{}
}

func (s *testServer) hammer(provider string, stop <-chan struct{}) *hammer {
	h := &hammer{done: make(chan struct{})}
	go func() {
		defer close(h.done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			status, body := s.verifyRaw(provider, fmt.Sprintf("%s-%d", provider, i))
			if status == 201 {
				h.ok.Add(1)
				continue
			}
			h.bad.Add(1)
			h.mu.Lock()
			if h.first == "" {
				h.first = fmt.Sprintf("%d %s", status, body)
			}
			h.mu.Unlock()
		}
	}()
	return h
}

// verifyRaw is a keyed verify that reports a transport error as status 0.
func (s *testServer) verifyRaw(provider, subject string) (int, string) {
	raw, _ := json.Marshal(map[string]any{"subject": subject})
	hr, _ := http.NewRequest("POST", s.URL+"/v1/providers/"+provider+"/verify", bytes.NewReader(raw))
	hr.Header.Set("Content-Type", "application/json")
	hr.Header.Set("X-Appwrite-Project", "default")
	hr.Header.Set("X-Appwrite-Key", s.key)
	res, err := http.DefaultClient.Do(hr)
	if err != nil {
		return 0, err.Error()
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(body)
}

// nameVia signs subject in through provider and returns the name of the
// user it made: the echo plugin's greeting.
func (s *testServer) nameVia(provider, subject string) string {
	s.t.Helper()
	r := s.do(req{method: "POST", path: "/v1/providers/" + provider + "/verify", key: true, body: map[string]any{"subject": subject}})
	if r.status != 201 {
		s.t.Fatalf("verify %s: %d %s", provider, r.status, r.body)
	}
	u := s.do(req{method: "GET", path: "/v1/users/" + r.json(s.t)["userId"].(string), key: true})
	name, _ := u.json(s.t)["name"].(string)
	return name
}

// TestReloadProviders: a reload adds B, restarts C with a new greeting and
// removes D while A and C are verified without a pause. A and C answer
// 201 throughout (C from its old instance, then from its new one), B
// signs in after, C greets with the new config, D answers 404, and D's
// and the old C's plugin processes are gone.
func TestReloadProviders(t *testing.T) {
	logs := &lockedBuffer{}
	s := newTestServer(t, func(c *config.Config) {
		c.Providers = []config.Provider{greeter(t, "a", "A"), greeter(t, "c", "old"), greeter(t, "d", "D")}
	}, withLogs(logs))
	if got := s.nameVia("c", "before"); got != "old" {
		t.Fatalf("c greets %q before the reload", got)
	}
	oldC := pidOf(t, s, "c")
	oldD := pidOf(t, s, "d")

	stop := make(chan struct{})
	ha, hc := s.hammer("a", stop), s.hammer("c", stop)
	waitUntil(t, 5*time.Second, "traffic before the reload", func() bool { return ha.ok.Load() > 5 && hc.ok.Load() > 5 })
	next := s.d.cfg
	next.Providers = []config.Provider{greeter(t, "a", "A"), greeter(t, "b", "B"), greeter(t, "c", "new")}
	if err := s.d.Reload(context.Background(), next); err != nil {
		t.Fatal(err)
	}
	before := ha.ok.Load()
	waitUntil(t, 5*time.Second, "traffic after the reload", func() bool { return ha.ok.Load() > before+5 })
	close(stop)
	<-ha.done
	<-hc.done
	for name, h := range map[string]*hammer{"a": ha, "c": hc} {
		t.Logf("%s: %d sign-ins across the reload", name, h.ok.Load())
		if h.bad.Load() != 0 {
			t.Errorf("%s: %d answers were not 201 across the reload (%d were); first: %s", name, h.bad.Load(), h.ok.Load(), h.first)
		}
	}
	if got := s.nameVia("b", "after"); got != "B" {
		t.Errorf("b greets %q after the reload", got)
	}
	if got := s.nameVia("c", "after"); got != "new" {
		t.Errorf("c greets %q after the reload, want the new config's greeting", got)
	}
	wantError(t, s.verify("d", map[string]any{"subject": "x"}, nil), 404, "provider_not_found")
	for name, pid := range map[string]int{"old c": oldC, "d": oldD} {
		if syscall.Kill(pid, 0) == nil {
			t.Errorf("%s's plugin process %d still runs after the reload", name, pid)
		}
	}
	if pidOf(t, s, "c") == oldC {
		t.Error("c's plugin was not restarted")
	}
	out := logs.String()
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "reload") {
			t.Log(l)
		}
	}
	if !strings.Contains(out, `msg="config reloaded" added=[b] changed=[c] removed=[d]`) {
		t.Errorf("the reload is not logged with what it changed: %s", out)
	}
}

// pidOf is a provider's plugin process, from the host.
func pidOf(t *testing.T, s *testServer, name string) int {
	t.Helper()
	for _, st := range s.d.host.Status() {
		if st.Name == name && st.PID != 0 {
			return st.PID
		}
	}
	t.Fatalf("provider %s has no process", name)
	return 0
}

// TestReloadRefused: a reload that changes a key that needs a restart, or
// whose config is invalid, or in which a changed provider fails its start,
// changes nothing (not even its providers), logs why, and the old
// providers serve on.
func TestReloadRefused(t *testing.T) {
	logs := &lockedBuffer{}
	s := newTestServer(t, func(c *config.Config) {
		c.Providers = []config.Provider{greeter(t, "c", "old")}
	}, withLogs(logs))
	pid := pidOf(t, s, "c")
	for _, tc := range []struct {
		name   string
		change func(*config.Config)
		log    string
	}{
		{"listen and store change", func(c *config.Config) {
			c.Listen, c.Store.Timeout, c.Tokens.Pepper = "127.0.0.1:1", time.Second, "a new pepper value"
			c.Providers = append(c.Providers, greeter(t, "e", "E"))
		}, `msg="config reload refused: these keys change only with a restart; serving the config as it was" keys=listen,store.timeout,tokens.pepper`},
		{"a guard that is not configured", func(c *config.Config) {
			c.Providers[0].Guards = []string{"nosuch"}
			c.Providers = append(c.Providers, greeter(t, "e", "E"))
		}, `config reload refused: the new config is invalid`},
		{"the new config's Configure fails", func(c *config.Config) {
			c.Providers[0].Config = map[string]any{"greeting": "new", "fail_configure": true}
			c.Providers = append(c.Providers, greeter(t, "e", "E"))
		}, `config reload refused: a provider failed its start; serving the config as it was" err="provider \"c\": configure:`},
		{"a wrong pin on a new provider", func(c *config.Config) {
			e := greeter(t, "e", "E")
			e.Plugin.SHA256 = strings.Repeat("0", 64)
			c.Providers = append(c.Providers, e)
		}, `config reload refused: a provider failed its start; serving the config as it was" err="provider \"e\":`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			next := s.d.cfg
			next.Providers = []config.Provider{greeter(t, "c", "old")}
			tc.change(&next)
			if err := s.d.Reload(context.Background(), next); !errors.Is(err, ErrReloadRefused) {
				t.Fatalf("Reload = %v, want ErrReloadRefused", err)
			}
			out := logs.String()
			if !strings.Contains(out, tc.log) {
				t.Fatalf("log lacks %q:\n%s", tc.log, out)
			}
			t.Log(out[strings.LastIndex(out, "config reload refused"):])
			if got := s.nameVia("c", "after-"+tc.name); got != "old" {
				t.Fatalf("c greets %q after a refused reload", got)
			}
			if pidOf(t, s, "c") != pid {
				t.Fatal("c was restarted by a refused reload")
			}
			wantError(t, s.verify("e", map[string]any{"subject": "x"}, nil), 404, "provider_not_found")
			if len(s.d.host.Status()) != 1 {
				t.Fatalf("host runs %+v after a refused reload", s.d.host.Status())
			}
		})
	}
}

// TestReloadOnSIGHUP: the real signal reloads what Options.Reload reads,
// and a daemon started without providers gets its first one.
func TestReloadOnSIGHUP(t *testing.T) {
	s := newTestServer(t)
	var next atomic.Pointer[config.Config]
	s.d.load = func() (config.Config, error) { return *next.Load(), nil }
	cfg := s.d.cfg
	cfg.Providers = []config.Provider{greeter(t, "late", "Late")}
	next.Store(&cfg)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.d.Serve(ctx, ln) }()
	defer func() { cancel(); <-done }()
	s.URL = "http://" + ln.Addr().String()
	waitUntil(t, 5*time.Second, "serving", func() bool {
		res, err := http.Get(s.URL + "/healthz")
		if err == nil {
			res.Body.Close()
		}
		return err == nil
	})
	wantError(t, s.verify("late", map[string]any{"subject": "x"}, nil), 404, "provider_not_found")
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 15*time.Second, "the provider the reload adds", func() bool {
		status, _ := s.verifyRaw("late", "probe")
		return status == 201
	})
	if got := s.nameVia("late", "y"); got != "Late" {
		t.Fatalf("late greets %q", got)
	}
}

// TestReloadRedirectNeedsPublicURL: on a listener that is not loopback,
// without public_url, a reload may not add a provider whose plugin offers
// the redirect flow (its callback URL would name the wildcard address),
// as Serve may not start with one. Before, only Serve checked.
func TestReloadRedirectNeedsPublicURL(t *testing.T) {
	logs := &lockedBuffer{}
	s := newTestServer(t, withLogs(logs))
	s.d.bound.Store(boundAddr{&net.TCPAddr{IP: net.IPv4zero, Port: 8080}})
	next := s.d.cfg
	next.Providers = []config.Provider{echoProvider(t, "idp", func(p *config.Provider) { p.Deliver.Via = config.DeliverRedirect })}
	if err := s.d.Reload(context.Background(), next); !errors.Is(err, ErrReloadRefused) {
		t.Fatalf("Reload = %v, want ErrReloadRefused", err)
	}
	if out := logs.String(); !strings.Contains(out, "provider idp offers the redirect flow, so public_url must be set") {
		t.Fatalf("the refusal does not say why:\n%s", out)
	}
	wantError(t, s.verify("idp", map[string]any{"subject": "x"}, nil), 404, "provider_not_found")
}

// TestRestartKeys: every key outside providers is named when it changes,
// by its key path, never its value; providers changes need no restart.
func TestRestartKeys(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(*config.Config)
		want   []string
	}{
		{"nothing", func(*config.Config) {}, nil},
		{"providers only", func(c *config.Config) { c.Providers = []config.Provider{{Name: "x"}} }, nil},
		{"listen", func(c *config.Config) { c.Listen = "127.0.0.1:9" }, []string{"listen"}},
		{"store dsn and timeout", func(c *config.Config) { c.Store.DSN, c.Store.Timeout = "postgres://u:hunter22@h/db", time.Second }, []string{"store.dsn", "store.timeout"}},
		{"http timeouts", func(c *config.Config) { c.HTTP.WriteTimeout++ }, []string{"http.write_timeout"}},
		{"pepper", func(c *config.Config) { c.Tokens.Pepper = "hunter22hunter22" }, []string{"tokens.pepper"}},
		{"audit and log", func(c *config.Config) { c.Audit.Sink, c.Log.Level = config.AuditStdout, "debug" }, []string{"log.level", "audit.sink"}},
		{"project and data", func(c *config.Config) { c.Project, c.Data = "p2", "/elsewhere" }, []string{"project", "data"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cur := config.Default()
			next := config.Default()
			tc.change(&next)
			got := restartKeys(cur, next)
			if !slices.Equal(got, tc.want) {
				t.Fatalf("restartKeys = %v, want %v", got, tc.want)
			}
			if strings.Contains(strings.Join(got, ","), "hunter22") {
				t.Fatal("a key names a value")
			}
		})
	}
}

// TestDiffProviders: a change to any field of a provider's section
// restarts it.
func TestDiffProviders(t *testing.T) {
	base := func() config.Provider {
		return config.Provider{Name: "c", Plugin: &config.Plugin{Path: "/p", SHA256: "aa"}, Config: map[string]any{"greeting": "hi"}}
	}
	for _, tc := range []struct {
		name   string
		change func(*config.Provider)
	}{
		{"plugin pin", func(p *config.Provider) { p.Plugin.SHA256 = "bb" }},
		{"plugin env", func(p *config.Provider) { p.Plugin.Env = map[string]string{"K": "v"} }},
		{"config", func(p *config.Provider) { p.Config["greeting"] = "ho" }},
		{"deliver", func(p *config.Provider) { p.Deliver.Via = config.DeliverWebhook }},
		{"guards", func(p *config.Provider) { p.Guards = []string{"g"} }},
		{"users", func(p *config.Provider) { p.Users.Create = true }},
		{"token", func(p *config.Provider) { p.Token.Length = 8 }},
		{"timeout", func(p *config.Provider) { p.Timeout = time.Second }},
		{"optional", func(p *config.Provider) { p.Optional = true }},
		{"kind", func(p *config.Provider) { p.Kind = "password" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			next := base()
			tc.change(&next)
			added, changed, removed := diffProviders([]config.Provider{base(), {Name: "same"}, {Name: "gone"}}, []config.Provider{{Name: "same"}, next, {Name: "new"}})
			if !slices.Equal(added, []string{"new"}) || !slices.Equal(changed, []string{"c"}) || !slices.Equal(removed, []string{"gone"}) {
				t.Fatalf("diff = added %v changed %v removed %v", added, changed, removed)
			}
		})
	}
}

// TestReloadScrubsNewSecrets: the secret values of a reloaded config are
// scrubbed from what /readyz and the logs show, as the start config's
// are, even when the reload is refused. Before, scrub knew the start
// config's secrets only.
func TestReloadScrubsNewSecrets(t *testing.T) {
	s := newTestServer(t)
	const secret = "whsec_reloaded-secret-value"
	next := s.d.cfg
	next.Providers = []config.Provider{echoProvider(t, "hook", func(p *config.Provider) {
		p.Deliver.Via = config.DeliverWebhook
		p.Deliver.Webhook.URL = "http://127.0.0.1:1/hook"
		p.Deliver.Webhook.Secret = secret
		p.Plugin.SHA256 = strings.Repeat("0", 64) // its start fails: the reload is refused
	})}
	if err := s.d.Reload(context.Background(), next); !errors.Is(err, ErrReloadRefused) {
		t.Fatalf("Reload = %v", err)
	}
	if got := s.d.scrub("dial failed with " + secret); strings.Contains(got, secret) {
		t.Fatalf("scrub left the reloaded secret in %q", got)
	}
}

// TestReloadAddsOptionalThatCannotStart: an optional provider new to the
// config that cannot start is added anyway and retried with backoff, as
// at start; it answers 503 meanwhile and /readyz stays 200.
func TestReloadAddsOptionalThatCannotStart(t *testing.T) {
	logs := &lockedBuffer{}
	s := newTestServer(t, withLogs(logs))
	next := s.d.cfg
	next.Providers = []config.Provider{echoProvider(t, "opt", func(p *config.Provider) {
		p.Optional = true
		p.Plugin.SHA256 = strings.Repeat("0", 64)
	})}
	if err := s.d.Reload(context.Background(), next); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), `msg="optional provider failed to start; retrying with backoff" provider=opt`) {
		t.Fatalf("the failed start is not logged:\n%s", logs.String())
	}
	wantError(t, s.verify("opt", map[string]any{"subject": "x"}, nil), 503, "provider_unavailable")
	code, body := s.ready(t)
	if p := findProvider(body, "opt"); code != 200 || p.State != "restarting" || !p.Optional {
		t.Fatalf("readyz = %d %+v", code, body)
	}
}
