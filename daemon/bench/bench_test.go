package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/handoffd/handoff/providers/sdk"
	"github.com/handoffd/handoff/tokenstore"
)

func TestParseConfig(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantErr string
		check   func(t *testing.T, c Config)
	}{
		{name: "defaults", args: nil, check: func(t *testing.T, c Config) {
			if c.Scenario != "exchange" || c.Clients != 64 || c.Duration != 10*time.Second || c.Warmup != 2*time.Second || c.Store != "bolt" || !c.load {
				t.Errorf("defaults: %+v", c)
			}
		}},
		{name: "fsync alone runs no load", args: []string{"--fsync"}, check: func(t *testing.T, c Config) {
			if c.load || !c.Fsync {
				t.Errorf("load %v fsync %v", c.load, c.Fsync)
			}
		}},
		{name: "startup with a scenario also runs it", args: []string{"--startup", "--scenario", "mint"}, check: func(t *testing.T, c Config) {
			if !c.load || !c.Startup {
				t.Errorf("load %v startup %v", c.load, c.Startup)
			}
		}},
		{name: "unknown scenario", args: []string{"--scenario", "nap"}, wantErr: "--scenario"},
		{name: "no clients", args: []string{"--clients", "0"}, wantErr: "--clients"},
		{name: "target needs a key", args: []string{"--target", "http://127.0.0.1:1"}, wantErr: "--key"},
		{name: "flow against a target needs a provider", args: []string{"--target", "http://x", "--key", "k", "--scenario", "flow"}, wantErr: "--provider"},
		{name: "payload must be an object", args: []string{"--target", "http://x", "--key", "k", "--scenario", "flow", "--provider", "p", "--payload", "[1]"}, wantErr: "--payload"},
		{name: "no profile of a target", args: []string{"--target", "http://x", "--key", "k", "--cpuprofile", "f"}, wantErr: "--cpuprofile"},
		{name: "postgres needs a dsn", args: []string{"--store", "postgres"}, wantErr: "--dsn"},
		{name: "provider only with a target", args: []string{"--provider", "p"}, wantErr: "--provider"},
		{name: "stray argument", args: []string{"mint"}, wantErr: "unexpected argument"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := ParseConfig(tt.args)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to mention %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, c)
		})
	}
}

// quick is a short run's config.
func quick(scenario string) Config {
	c, err := ParseConfig([]string{"--scenario", scenario, "--clients", "8", "--duration", "1s", "--warmup", "200ms", "--log-level", "error"})
	if err != nil {
		panic(err)
	}
	return c
}

// TestScenarios runs each scenario for a second against a self-started
// daemon and checks the table.
func TestScenarios(t *testing.T) {
	for _, sc := range Scenarios {
		t.Run(sc, func(t *testing.T) {
			opts := Options{Builtins: testBuiltins, OpenStore: openStore}
			if sc == "flow" {
				opts.Executable = handoffBinary(t)
			}
			var out, progress bytes.Buffer
			opts.Stdout, opts.Stderr = &out, &progress
			cfg := quick(sc)
			cfg.Data = t.TempDir()
			rep, err := Run(context.Background(), cfg, opts)
			if err != nil {
				t.Fatalf("%v\n%s", err, progress.String())
			}
			r := rep.Load
			if r.Ops == 0 || r.OpsPerSec <= 0 || r.Latency.P50 <= 0 || r.Latency.Max < r.Latency.P99 {
				t.Errorf("result: %+v", r)
			}
			if len(r.Errors) != 0 {
				t.Errorf("errors: %v %v", r.Errors, r.ErrorSamples)
			}
			if r.Process == nil || r.Process.Peak == 0 {
				t.Errorf("no process memory: %+v", r.Process)
			}
			text := out.String()
			for _, want := range []string{"handoff bench: " + sc, "ops/s", "p99", "no errors", "peak RSS"} {
				if !strings.Contains(text, want) {
					t.Errorf("table lacks %q:\n%s", want, text)
				}
			}
			if !strings.Contains(progress.String(), "ops/s") {
				t.Errorf("no progress lines:\n%s", progress.String())
			}
			if sc == "flow" {
				if len(r.Steps) != 2 || r.Steps[0].Name != "verify" || r.Steps[1].Name != "exchange" || r.Steps[0].Latency.P50 <= 0 {
					t.Errorf("steps: %+v", r.Steps)
				}
				if len(r.Plugins) != 1 || r.Plugins[0].Name != "plugin password" || r.Plugins[0].Peak == 0 {
					t.Errorf("plugins: %+v", r.Plugins)
				}
			}
		})
	}
}

// TestErrorsCounted drives a target through a proxy that fails every
// fourth mint with a 503, and checks that the errors are counted by step
// and status, and shown.
func TestErrorsCounted(t *testing.T) {
	ctx := context.Background()
	base := quick("mint")
	base.Data = t.TempDir()
	self, err := startSelf(ctx, base, Options{OpenStore: openStore}, false)
	if err != nil {
		t.Fatal(err)
	}
	defer self.close()
	u, _ := url.Parse(self.url)
	proxy := httputil.NewSingleHostReverseProxy(u)
	var mints atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/tokens") && mints.Add(1)%4 == 0 {
			http.Error(w, `{"message":"down","code":503,"type":"general_server_error"}`, http.StatusServiceUnavailable)
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	defer srv.Close()

	cfg := quick("mint")
	cfg.Target, cfg.Key = srv.URL, self.key
	var out bytes.Buffer
	rep, err := Run(ctx, cfg, Options{OpenStore: openStore, Stdout: &out})
	if err != nil {
		t.Fatal(err)
	}
	r := rep.Load
	if r.Errors["mint 503"] == 0 || r.Ops == 0 {
		t.Fatalf("errors %v, ops %d", r.Errors, r.Ops)
	}
	if ratio := float64(r.Errors["mint 503"]) / float64(r.Ops+r.Errors["mint 503"]); ratio < 0.15 || ratio > 0.35 {
		t.Errorf("a quarter of the mints failed, but the bench counted %.2f", ratio)
	}
	if r.Process != nil || r.Target != srv.URL {
		t.Errorf("a target run reports no process memory: %+v", r)
	}
	if text := out.String(); !strings.Contains(text, "mint 503 ×") || !strings.Contains(text, "e.g. mint 503") {
		t.Errorf("table does not show the errors:\n%s", text)
	}
}

// TestJSON checks that --json prints one document that parses, with
// the preload and the exchange pool.
func TestJSON(t *testing.T) {
	cfg := quick("exchange")
	cfg.JSON, cfg.Preload, cfg.Pool, cfg.Data = true, 300, 20000, t.TempDir()
	var out bytes.Buffer
	if _, err := Run(context.Background(), cfg, Options{OpenStore: openStore, Stdout: &out}); err != nil {
		t.Fatal(err)
	}
	var rep Report
	dec := json.NewDecoder(&out)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rep); err != nil {
		t.Fatalf("output is not the report: %v\n%s", err, out.String())
	}
	r := rep.Load
	if r == nil || r.Scenario != "exchange" || r.Ops == 0 || r.Latency.P99 <= 0 || r.Preload != 300 || r.PreloadSeconds <= 0 || r.Pool != 20000 {
		t.Fatalf("report: %+v", r)
	}
	if r.Steps[0].Latency.Count != int(r.Ops) {
		t.Errorf("step count %d, ops %d", r.Steps[0].Latency.Count, r.Ops)
	}
}

// TestPoolRunsOut checks that an exchange run whose pool runs out stops
// measuring there and says so.
func TestPoolRunsOut(t *testing.T) {
	cfg := quick("exchange")
	cfg.Pool, cfg.Warmup, cfg.Duration, cfg.Data = 200, 0, 5*time.Second, t.TempDir()
	rep, err := Run(context.Background(), cfg, Options{OpenStore: openStore})
	if err != nil {
		t.Fatal(err)
	}
	r := rep.Load
	if r.Ops != 200 || r.MeasuredSeconds >= 5 || len(r.Notes) == 0 || !strings.Contains(r.Notes[len(r.Notes)-1], "ran out") {
		t.Fatalf("ops %d in %.2fs, notes %q", r.Ops, r.MeasuredSeconds, r.Notes)
	}
}

// TestPreloadOverHTTP preloads a target through its API.
func TestPreloadOverHTTP(t *testing.T) {
	ctx := context.Background()
	base := quick("account")
	base.Data = t.TempDir()
	self, err := startSelf(ctx, base, Options{OpenStore: openStore}, false)
	if err != nil {
		t.Fatal(err)
	}
	defer self.close()
	cfg := quick("account")
	cfg.Target, cfg.Key, cfg.Preload = self.url, self.key, 100
	e := &env{cfg: cfg, api: newClient(self.url, cfg.Project, self.key, cfg.Clients), progress: &bytes.Buffer{}}
	defer e.api.close()
	if _, err := e.preload(ctx, cfg.Preload); err != nil {
		t.Fatal(err)
	}
	if len(e.sampleUsers) != 100 || len(e.sampleCreds) != 100 || e.sampleUsers[99] == "" || e.sampleCreds[99] == "" {
		t.Errorf("samples of the preload: %d users, %d credentials", len(e.sampleUsers), len(e.sampleCreds))
	}
	users, total, err := self.core().ListUsers(ctx, tokenstore.UserQuery{Limit: 3})
	if err != nil || total != 100 {
		t.Fatalf("%d users (%v), want 100", total, err)
	}
	for _, u := range users[:3] {
		toks, err := self.core().ListTokens(ctx, u.ID)
		if err != nil || len(toks) != 1 {
			t.Errorf("user %s has %d tokens (%v), want 1", u.ID, len(toks), err)
		}
		ss, err := self.core().ListSessions(ctx, u.ID)
		if err != nil || len(ss) != 1 {
			t.Errorf("user %s has %d sessions (%v), want 1", u.ID, len(ss), err)
		}
	}
}

func TestFsync(t *testing.T) {
	f, err := measureFsync(context.Background(), t.TempDir(), 200*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if f.Count == 0 || f.PerSec <= 0 || f.P50ms <= 0 {
		t.Fatalf("%+v", f)
	}
}

// TestStartup starts the built binary with the password plugin, and
// leaves out a kind whose factory panics (not built yet).
func TestStartup(t *testing.T) {
	defer func(d time.Duration) { idleFor = d }(idleFor)
	idleFor = 300 * time.Millisecond
	cfg := quick("exchange")
	cfg.Startup, cfg.StartupRun, cfg.Data = true, 2, t.TempDir()
	opts := Options{
		Builtins: map[string]sdk.Factory{
			"password": nil,
			"captcha":  func() sdk.Verifier { panic("captcha: not built yet") },
		},
		Executable: handoffBinary(t),
	}
	var out bytes.Buffer
	opts.Stdout = &out
	s, err := measureStartup(context.Background(), cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	printStartup(&out, s)
	if len(s.Runs) != 2 || !s.Runs[0].Cold || s.Runs[1].Cold || s.ColdMs <= 0 || s.WarmMs <= 0 {
		t.Errorf("runs: %+v", s.Runs)
	}
	if s.Runs[1].Health["password"] != "up" {
		t.Errorf("health: %v", s.Runs[1].Health)
	}
	if !strings.Contains(s.Skipped["captcha"], "not built yet") || s.Skipped["oidc"] == "" {
		t.Errorf("skipped: %v", s.Skipped)
	}
	if s.Daemon.RSS == 0 || len(s.Plugins) != 1 || s.Plugins[0].Name != "plugin password" || s.Plugins[0].RSS == 0 {
		t.Errorf("memory: %+v %+v", s.Daemon, s.Plugins)
	}
	if text := out.String(); !strings.Contains(text, "left out captcha") || !strings.Contains(text, "plugin password") {
		t.Errorf("output:\n%s", text)
	}
}

func TestHistogram(t *testing.T) {
	prev := -1
	for _, ns := range []int64{0, 1, 31, 32, 33, 63, 64, 1000, 123456, 1e9, 1e12} {
		b := bucketOf(ns)
		if b <= prev && ns > 0 {
			t.Errorf("bucket of %d is %d, not above %d", ns, b, prev)
		}
		prev = b
		if lo := bucketValue(b); lo > ns || float64(ns-lo) > float64(ns)/32+1 {
			t.Errorf("bucket %d of %d starts at %d", b, ns, lo)
		}
	}
	var h hist
	for i := 1; i <= 1000; i++ {
		h.add(time.Duration(i) * time.Microsecond)
	}
	var now, zero histSnap
	h.snapshot(&now)
	n, q := quantiles(&now, &zero, 0.5, 0.99)
	if n != 1000 || q[0] < 480*time.Microsecond || q[0] > 500*time.Microsecond || q[1] < 960*time.Microsecond || q[1] > 990*time.Microsecond {
		t.Errorf("n %d, p50 %s, p99 %s", n, q[0], q[1])
	}
}

func TestSummarize(t *testing.T) {
	var lat []time.Duration
	for i := 100; i >= 1; i-- {
		lat = append(lat, time.Duration(i)*time.Millisecond)
	}
	l := summarize(lat)
	if l.Count != 100 || l.P50 != 50 || l.P90 != 90 || l.P99 != 99 || l.Max != 100 || l.Mean != 50.5 {
		t.Errorf("%+v", l)
	}
	if (summarize(nil) != Latency{}) {
		t.Error("empty")
	}
}

func TestThousands(t *testing.T) {
	for n, want := range map[int64]string{0: "0", 999: "999", 1000: "1,000", 1234567: "1,234,567", -4500: "-4,500"} {
		if got := thousands(n); got != want {
			t.Errorf("thousands(%d) = %q, want %q", n, got, want)
		}
	}
}
