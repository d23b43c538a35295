package bench

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/handoffd/handoff/providers/sdk"
)

// StartupResult is what --startup measured: the time from starting
// `handoff serve` to its first ready answer, with a provider of each
// built-in kind, and the idle memory of the daemon and its plugins.
type StartupResult struct {
	// Providers are the kinds configured, one provider each.
	Providers []string `json:"providers"`
	// Skipped are the built-in kinds left out, and why.
	Skipped map[string]string `json:"skipped,omitempty"`
	Runs    []StartRun        `json:"runs"`
	// ColdMs is the first start, on a fresh data dir (it creates the
	// store, pepper, signing key and first API key); WarmMs the median of
	// the restarts on the same dir.
	ColdMs float64 `json:"cold_ms"`
	WarmMs float64 `json:"warm_median_ms,omitempty"`
	// Daemon and Plugins are the processes' memory after IdleSeconds of
	// idling after the last start.
	Daemon      Proc    `json:"daemon"`
	Plugins     []Proc  `json:"plugins"`
	IdleSeconds float64 `json:"idle_seconds"`
}

// StartRun is one start.
type StartRun struct {
	Cold    bool              `json:"cold"`
	ReadyMs float64           `json:"ready_ms"`
	Health  map[string]string `json:"health"` // provider -> health at ready
}

// startupKinds are the built-in kinds --startup configures, in order.
var startupKinds = []string{"password", "captcha", "biometric", "oidc"}

// idleFor is how long the daemon idles before its memory is read.
var idleFor = 2 * time.Second

// factoryReady reports whether a built-in kind is implemented: a kind not
// built yet has a factory that panics. A nil factory (tests, which serve
// the kinds from another binary) counts as ready.
func factoryReady(f sdk.Factory) (ok bool, why string) {
	if f == nil {
		return true, ""
	}
	defer func() {
		if p := recover(); p != nil {
			ok, why = false, fmt.Sprintf("not built yet (its factory panics: %v)", p)
		}
	}()
	f()
	return true, ""
}

// fakeServices stands in for the services the built-ins reach: a captcha
// siteverify, a biometric service, an OIDC issuer (discovery and JWKS)
// and a webhook receiver, on one loopback server.
func fakeServices() (*httptest.Server, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	pub, err := key.PublicKey.Bytes() // 0x04 | X | Y
	if err != nil {
		return nil, err
	}
	b64 := base64.RawURLEncoding.EncodeToString
	jwks := mustJSON(map[string]any{"keys": []any{map[string]string{
		"kty": "EC", "crv": "P-256", "x": b64(pub[1:33]), "y": b64(pub[33:65]), "kid": "bench", "alg": "ES256", "use": "sig",
	}}})
	var base string
	mux := http.NewServeMux()
	reply := func(w http.ResponseWriter, v any) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(mustJSON(v))
	}
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		reply(w, map[string]any{
			"issuer": base, "authorization_endpoint": base + "/authorize", "token_endpoint": base + "/token",
			"jwks_uri": base + "/jwks", "userinfo_endpoint": base + "/userinfo",
			"response_types_supported": []string{"code"}, "subject_types_supported": []string{"public"},
			"id_token_signing_alg_values_supported": []string{"ES256"},
		})
	})
	mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(jwks)
	})
	mux.HandleFunc("POST /siteverify", func(w http.ResponseWriter, r *http.Request) {
		reply(w, map[string]any{"success": true, "hostname": "localhost", "challenge_ts": time.Now().UTC().Format(time.RFC3339)})
	})
	mux.HandleFunc("/biometric/", func(w http.ResponseWriter, r *http.Request) {
		reply(w, map[string]any{"ok": true})
	})
	mux.HandleFunc("POST /webhook", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	})
	srv := httptest.NewServer(mux)
	base = srv.URL
	return srv, nil
}

// benchWebhookSecret signs the captcha provider's webhooks and the
// biometric plugin's requests to the fake services (Standard Webhooks).
var benchWebhookSecret = "whsec_" + base64.StdEncoding.EncodeToString([]byte("handoff-bench-webhook-secret-32b"))

// startupProvider is the provider section of one built-in kind, pointed
// at the fake services. The keys follow each plugin's README; a plugin
// that rejects them shows as failed in the runs' health.
func startupProvider(kind, fake string) map[string]any {
	p := map[string]any{"name": kind, "kind": kind}
	switch kind {
	case "password":
		p["config"] = benchPasswordConfig(DefaultArgon2KiB)
		p["deliver"] = map[string]any{"via": "response"}
	case "captcha":
		p["config"] = map[string]any{"provider": "hcaptcha", "secret": "0x0000000000000000000000000000000000000000", "siteverify_url": fake + "/siteverify"}
		p["deliver"] = map[string]any{"via": "webhook", "webhook": map[string]any{
			"url": fake + "/webhook", "secret": benchWebhookSecret,
		}}
	case "biometric":
		p["config"] = map[string]any{"url": fake + "/biometric/", "secret": benchWebhookSecret}
		p["deliver"] = map[string]any{"via": "response"}
	case "oidc":
		p["config"] = map[string]any{"issuer": fake, "client_id": "handoff-bench", "client_secret": "handoff-bench"}
		p["deliver"] = map[string]any{"via": "redirect"}
	}
	return p
}

// measureStartup starts `handoff serve` cfg.StartupRun times with one
// provider of each built-in kind that is ready, and measures each start
// to its first ready answer; then the idle memory.
func measureStartup(ctx context.Context, cfg Config, opts Options) (*StartupResult, error) {
	opts.defaults()
	if opts.Executable == "" {
		return nil, errors.New("bench: --startup needs the handoff binary (Options.Executable)")
	}
	res := &StartupResult{Skipped: map[string]string{}, IdleSeconds: idleFor.Seconds()}
	fake, err := fakeServices()
	if err != nil {
		return nil, err
	}
	defer fake.Close()
	var provs []any
	for _, kind := range startupKinds {
		f, ok := opts.Builtins[kind]
		if !ok {
			res.Skipped[kind] = "not in this binary"
			continue
		}
		if ok, why := factoryReady(f); !ok {
			res.Skipped[kind] = why
			continue
		}
		res.Providers = append(res.Providers, kind)
		provs = append(provs, startupProvider(kind, fake.URL))
	}
	dir, err := os.MkdirTemp(cfg.Data, "handoff-bench-startup-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	file := filepath.Join(dir, "handoff.yaml") // JSON is YAML
	doc := map[string]any{
		"listen": "127.0.0.1:0", "data": filepath.Join(dir, "data"), "project": cfg.Project,
		"log":       map[string]any{"level": "info", "format": "json"},
		"providers": provs,
	}
	if err := os.WriteFile(file, mustJSON(doc), 0o600); err != nil {
		return nil, err
	}
	fmt.Fprintf(opts.Stderr, "startup: %d starts of `%s serve` with providers %s\n", cfg.StartupRun, filepath.Base(opts.Executable), strings.Join(res.Providers, ", "))
	var warm []float64
	for i := range cfg.StartupRun {
		last := i == cfg.StartupRun-1
		run, mem, err := startOnce(ctx, opts.Executable, file, last)
		if err != nil {
			return nil, fmt.Errorf("bench: startup run %d: %w", i+1, err)
		}
		run.Cold = i == 0
		res.Runs = append(res.Runs, run)
		if run.Cold {
			res.ColdMs = run.ReadyMs
		} else {
			warm = append(warm, run.ReadyMs)
		}
		if last {
			res.Daemon, res.Plugins = mem.daemon, mem.plugins
		}
		fmt.Fprintf(opts.Stderr, "  start %d (%s): ready in %s\n", i+1, map[bool]string{true: "fresh data dir", false: "restart"}[run.Cold], fmtMs(run.ReadyMs))
	}
	if len(warm) > 0 {
		slices.Sort(warm)
		res.WarmMs = warm[len(warm)/2]
	}
	return res, nil
}

type startMemory struct {
	daemon  Proc
	plugins []Proc
}

// startOnce runs `exe serve --config file` until its first ready answer,
// then, with idle set, lets it idle and reads its memory, and stops it.
func startOnce(ctx context.Context, exe, file string, idle bool) (StartRun, startMemory, error) {
	var run StartRun
	var mem startMemory
	pr, pw, err := os.Pipe()
	if err != nil {
		return run, mem, err
	}
	defer pr.Close()
	cmd := exec.Command(exe, "serve", "--config", file)
	cmd.Stderr = pw
	cmd.Env = slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "HANDOFF_") })
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		pw.Close()
		return run, mem, err
	}
	pw.Close()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stopped := false
	defer func() {
		if !stopped {
			_ = cmd.Process.Kill()
			<-exited
		}
	}()

	// The daemon logs "handoff serving" with its address once it listens.
	addrc := make(chan string, 1)
	var tailMu sync.Mutex
	var tail []string
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		sent := false
		for sc.Scan() {
			line := sc.Text()
			tailMu.Lock()
			tail = append(tail, line)
			if len(tail) > 20 {
				tail = tail[1:]
			}
			tailMu.Unlock()
			var l struct {
				Msg  string `json:"msg"`
				Addr string `json:"addr"`
			}
			if !sent && json.Unmarshal([]byte(line), &l) == nil && l.Msg == "handoff serving" {
				addrc <- l.Addr
				sent = true
			}
		}
	}()
	logTail := func() string {
		tailMu.Lock()
		defer tailMu.Unlock()
		return strings.Join(tail, "\n")
	}
	var addr string
	select {
	case addr = <-addrc:
	case err := <-exited:
		stopped = true
		return run, mem, fmt.Errorf("the daemon exited (%v) before serving:\n%s", err, logTail())
	case <-time.After(60 * time.Second):
		return run, mem, fmt.Errorf("the daemon did not serve within a minute:\n%s", logTail())
	case <-ctx.Done():
		return run, mem, ctx.Err()
	}
	hc := &http.Client{Timeout: 5 * time.Second}
	defer hc.CloseIdleConnections()
	for {
		ready, health, err := readyz(hc, addr)
		if ready {
			run.ReadyMs = ms(time.Since(t0))
			run.Health = health
			break
		}
		if time.Since(t0) > time.Minute {
			return run, mem, fmt.Errorf("not ready within a minute (%v):\n%s", err, logTail())
		}
		time.Sleep(time.Millisecond)
	}
	if idle {
		time.Sleep(idleFor)
		if mem.daemon, err = readMemory(cmd.Process.Pid); err != nil {
			return run, mem, err
		}
		mem.daemon.Name = "daemon"
		mem.plugins = childMemory(cmd.Process.Pid)
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
	}
	stopped = true
	return run, mem, nil
}

// readyz asks GET /readyz; ready is a 200.
func readyz(hc *http.Client, addr string) (bool, map[string]string, error) {
	resp, err := hc.Get("http://" + addr + "/readyz")
	if err != nil {
		return false, nil, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return false, nil, fmt.Errorf("readyz: %d %s", resp.StatusCode, body)
	}
	var r struct {
		Components struct {
			Providers []struct {
				Name  string `json:"name"`
				State string `json:"state"`
			} `json:"providers"`
		} `json:"components"`
	}
	_ = json.Unmarshal(body, &r)
	health := map[string]string{}
	for _, p := range r.Components.Providers {
		health[p.Name] = p.State
	}
	return true, health, nil
}

func printStartup(w io.Writer, s *StartupResult) {
	fmt.Fprintf(w, "\nstart to ready (`handoff serve` to the first 200 of /readyz) with providers: %s\n", strings.Join(s.Providers, ", "))
	for _, k := range slices.Sorted(maps.Keys(s.Skipped)) {
		fmt.Fprintf(w, "  left out %s: %s\n", k, s.Skipped[k])
	}
	fmt.Fprintf(w, "  fresh data dir: %s", fmtMs(s.ColdMs))
	if s.WarmMs > 0 {
		fmt.Fprintf(w, "; restart (median of %d): %s", len(s.Runs)-1, fmtMs(s.WarmMs))
	}
	fmt.Fprintln(w)
	if len(s.Runs) > 0 {
		last := s.Runs[len(s.Runs)-1]
		for _, k := range slices.Sorted(maps.Keys(last.Health)) {
			if last.Health[k] != "up" {
				fmt.Fprintf(w, "  provider %s was %s at ready\n", k, last.Health[k])
			}
		}
	}
	fmt.Fprintf(w, "idle memory after %.0fs:\n", s.IdleSeconds)
	line := func(name string, m Proc) {
		fmt.Fprintf(w, "  %-16s RSS %s (anon %s, file %s), PSS %s, peak RSS %s\n", name, mb(m.RSS), mb(m.Anon), mb(m.File), mb(m.PSS), mb(m.Peak))
	}
	line("daemon", s.Daemon)
	for _, p := range s.Plugins {
		line(p.Name, p)
	}
	fmt.Fprintln(w, "  (file pages are mostly the handoff binary, which the daemon and its built-in plugins share; PSS counts them in shares)")
}
