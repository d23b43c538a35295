package providers

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/handoffd/handoff/providers/internal/memkv"
	"github.com/handoffd/handoff/providers/sdk"
)

func TestBuiltinReexec(t *testing.T) {
	h, err := newHost(t, Options{}, Spec{Name: "echo", Kind: "echo", Config: payload(map[string]any{"greeting": "hi"})})
	if err != nil {
		t.Fatal(err)
	}
	p := mustProvider(t, h, "echo")
	id, err := verify(p, map[string]any{"op": "ok", "subject": "alice"})
	if err != nil {
		t.Fatal(err)
	}
	if id.Subject != "alice" || id.Name != "hi" || id.Claims["request_id"] != "req-1" || id.Claims["client_ip"] != "192.0.2.1" {
		t.Fatalf("identity = %+v", id)
	}
	st := h.Status()[0]
	if st.Health != HealthUp || st.PID == 0 || st.PID == os.Getpid() || len(st.Capabilities) != 4 || !st.ProvesIdentity {
		t.Fatalf("status = %+v", st)
	}
	if info := p.Info(); info.Name != "echo" || info.Version != "1.0.0" || len(info.Flows) != 2 {
		t.Fatalf("info = %+v", info)
	}
}

func TestChecksumMismatchRefusesOnlyThatProvider(t *testing.T) {
	bad := external(t, "bad", "echo")
	bad.External.SHA256 = strings.Repeat("ab", 32)
	h, err := newHost(t, Options{}, bad, external(t, "good", "echo"))
	if err == nil {
		t.Fatal("Start: no error for a checksum mismatch")
	}
	msg := err.Error()
	want := sha256File(t, bad.External.Path)
	for _, s := range []string{`provider "bad"`, "sha256 mismatch", "expected " + bad.External.SHA256, "actual " + want} {
		if !strings.Contains(msg, s) {
			t.Errorf("error %q does not say %q", msg, s)
		}
	}
	if strings.Contains(msg, `provider "good"`) {
		t.Errorf("error names the good provider: %q", msg)
	}
	var ke *KeyError
	if !errors.As(err, &ke) || ke.Key != "plugin.sha256" {
		t.Errorf("error %v does not name plugin.sha256", err)
	}
	if _, err := verify(mustProvider(t, h, "bad"), map[string]any{"op": "ok"}); !errors.Is(err, sdk.ErrUnavailable) {
		t.Errorf("the refused provider answered: %v", err)
	}
	st := h.Status()
	if st[0].Health != HealthRestarting || !strings.Contains(st[0].LastError, "sha256 mismatch") || st[0].PID != 0 || st[0].Attempts < 1 {
		t.Errorf("bad status = %+v", st[0])
	}
	if st[1].Health != HealthUp {
		t.Errorf("good status = %+v", st[1])
	}
	if _, err := verify(mustProvider(t, h, "good"), map[string]any{"op": "ok"}); err != nil {
		t.Fatal(err)
	}
}

func TestStartFailuresAreReported(t *testing.T) {
	missing := Spec{Name: "missing", External: &External{Path: filepath.Join(bin, "nope"), SHA256: strings.Repeat("00", 32)}}
	unpinned := Spec{Name: "unpinned", External: &External{Path: filepath.Join(bin, "echo")}}
	badConfig := Spec{Name: "badconfig", Kind: "echo", Config: payload(map[string]any{"greting": "typo", "nested": map[string]any{"deep": 1}})}
	failConfig := Spec{Name: "failconfig", Kind: "echo", Config: payload(map[string]any{"fail_configure": true})}
	unknownKind := Spec{Name: "unknown", Kind: "ldap"}
	noisy := external(t, "noisy", "noisy")
	// No retry during the test: its socket dirs would race the count below.
	h, err := newHostTuned(t, Options{}, func(t *tuning) { t.backoffBase, t.backoffMax = time.Hour, time.Hour },
		missing, unpinned, badConfig, failConfig, unknownKind, noisy, Spec{Name: "ok", Kind: "minimal"})
	if err == nil {
		t.Fatal("no error")
	}
	for name, want := range map[string]struct {
		health    Health
		key, text string
	}{
		"missing":    {HealthRestarting, "plugin.path", "no such file"},
		"unpinned":   {HealthDown, "plugin.sha256", "sha256 is required"},
		"badconfig":  {HealthRestarting, "config", "config: greting: unknown key"},
		"failconfig": {HealthRestarting, "config", "configure asked to fail"},
		"unknown":    {HealthDown, "kind", `unknown kind "ldap" (built-in kinds: echo, minimal)`},
		"noisy":      {HealthRestarting, "plugin.path", "print to stdout"},
	} {
		if !strings.Contains(err.Error(), fmt.Sprintf("provider %q: ", name)) {
			t.Errorf("error does not name %s: %v", name, err)
		}
		found := false
		for _, st := range h.Status() {
			if st.Name == name {
				found = true
				if st.Health != want.health || !strings.Contains(st.LastError, want.text) {
					t.Errorf("%s: status %+v, want %s with %q", name, st, want.health, want.text)
				}
			}
		}
		spec := map[string]Spec{"missing": missing, "unpinned": unpinned, "badconfig": badConfig, "failconfig": failConfig, "unknown": unknownKind, "noisy": noisy}[name]
		_, perr := h.Probe(context.Background(), spec)
		var ke *KeyError
		if !errors.As(perr, &ke) || ke.Key != want.key || !strings.Contains(perr.Error(), want.text) {
			t.Errorf("%s: Probe = %v, want key %s", name, perr, want.key)
		}
		if !found {
			t.Errorf("%s: no status", name)
		}
	}
	if !strings.Contains(err.Error(), "config: nested.deep: unknown key") {
		t.Errorf("nested unknown key not named: %v", err)
	}
	if _, err := verify(mustProvider(t, h, "ok"), map[string]any{"user": "u"}); err != nil {
		t.Fatal(err)
	}
	// Failed starts leave no socket dir behind; only "ok" has one.
	if entries := socketDirs(h.sockDir); len(entries) != 1 {
		t.Fatalf("socket dirs after failed starts: %v", entries)
	}
}

// TestErrorCodesRoundTrip: a plugin's sentinel, wrapped with a message,
// comes back as an error that matches the same sentinel and keeps the
// message; a bare sentinel comes back with the code's text.
func TestErrorCodesRoundTrip(t *testing.T) {
	h, err := newHost(t, Options{}, external(t, "echo", "echo"))
	if err != nil {
		t.Fatal(err)
	}
	p := mustProvider(t, h, "echo")
	for code, sentinel := range map[string]error{
		"invalid_credentials": sdk.ErrInvalidCredentials,
		"invalid_request":     sdk.ErrInvalidRequest,
		"unavailable":         sdk.ErrUnavailable,
		"internal":            sdk.ErrInternal,
		"not_found":           sdk.ErrNotFound,
		"misconfigured":       sdk.ErrMisconfigured,
	} {
		t.Run(code, func(t *testing.T) {
			_, err := verify(p, map[string]any{"op": "error", "code": code, "message": "because " + code})
			if !errors.Is(err, sentinel) {
				t.Fatalf("err = %v, want it to match %v", err, sentinel)
			}
			var se *sdk.Error
			if !errors.As(err, &se) || se.Message != "because "+code+": "+sentinel.Error() {
				t.Fatalf("message not kept: %#v", se)
			}
			for _, other := range []error{sdk.ErrInvalidCredentials, sdk.ErrInvalidRequest, sdk.ErrUnavailable, sdk.ErrInternal, sdk.ErrNotFound, sdk.ErrMisconfigured} {
				if other != sentinel && errors.Is(err, other) {
					t.Fatalf("%v also matches %v", err, other)
				}
			}
			_, err = verify(p, map[string]any{"op": "error", "code": code})
			if !errors.Is(err, sentinel) || err.Error() != sentinel.Error() {
				t.Fatalf("bare sentinel: %v", err)
			}
		})
	}
	_, err = verify(p, map[string]any{"op": "error", "message": "plain failure"})
	if !errors.Is(err, sdk.ErrInternal) || err.Error() != "plain failure" {
		t.Fatalf("plain error: %v", err)
	}
	_, err = verify(p, map[string]any{"op": "nope"})
	if !errors.Is(err, sdk.ErrInvalidRequest) {
		t.Fatalf("unknown op: %v", err)
	}
}

// TestLastCallError: a call the plugin fails with ErrMisconfigured (an IdP
// refusing the client credentials) is kept in the provider's status for
// the operator, while the provider stays up; the user's own failures do
// not replace it, and the same call succeeding clears it.
func TestLastCallError(t *testing.T) {
	h, err := newHost(t, Options{}, external(t, "echo", "echo"))
	if err != nil {
		t.Fatal(err)
	}
	p := mustProvider(t, h, "echo")
	if st := p.status(); st.LastCallError != "" || !st.LastCallErrorAt.IsZero() {
		t.Fatalf("a fresh provider has a call error: %+v", st)
	}
	before := time.Now()
	_, err = verify(p, map[string]any{"op": "error", "code": "misconfigured", "message": "the IdP refused the client credentials (invalid_client)"})
	if !errors.Is(err, sdk.ErrMisconfigured) {
		t.Fatalf("err = %v", err)
	}
	st := p.status()
	if st.Health != HealthUp || !strings.Contains(st.LastCallError, "(invalid_client)") || st.LastCallErrorAt.Before(before) || st.LastError != "" {
		t.Fatalf("status after a misconfigured call: %+v", st)
	}
	if _, err := verify(p, map[string]any{"op": "error", "code": "invalid_credentials"}); !errors.Is(err, sdk.ErrInvalidCredentials) {
		t.Fatal(err)
	}
	if st := p.status(); st.LastCallError == "" {
		t.Fatal("a user's wrong credentials cleared the operator's call error")
	}
	if _, err := verify(p, map[string]any{"op": "ok"}); err != nil {
		t.Fatal(err)
	}
	if st := p.status(); st.LastCallError != "" || !st.LastCallErrorAt.IsZero() {
		t.Fatalf("a successful call left the call error: %+v", st)
	}
}

func TestCapabilities(t *testing.T) {
	h, err := newHost(t, Options{}, Spec{Name: "echo", Kind: "echo"}, external(t, "minimal", "minimal"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	echo, minimal := mustProvider(t, h, "echo"), mustProvider(t, h, "minimal")

	res, err := echo.Begin(ctx, sdk.BeginRequest{CallbackURL: "https://h.example/cb", RequestID: "r1"})
	if err != nil || !strings.Contains(res.AuthURL, "state=st-r1") || string(res.State) != "state-for-r1" {
		t.Fatalf("Begin = %+v, %v", res, err)
	}
	id, err := echo.Complete(ctx, sdk.CompleteRequest{Query: map[string][]string{"code": {"c1"}, "state": {"st-r1"}}, State: res.State})
	if err != nil || id.Subject != "c1" || id.Claims["state"] != "state-for-r1" {
		t.Fatalf("Complete = %+v, %v", id, err)
	}
	if _, err := echo.Complete(ctx, sdk.CompleteRequest{}); !errors.Is(err, sdk.ErrInvalidRequest) {
		t.Fatalf("Complete without code: %v", err)
	}
	en, err := echo.Enroll(ctx, sdk.EnrollRequest{UserID: "u1", Payload: payload(map[string]any{"x": 1})})
	if err != nil || en.Subject != "u1" || string(en.Data) != `{"enrolled":true}` {
		t.Fatalf("Enroll = %+v, %v", en, err)
	}
	if err := echo.Check(ctx, sdk.Request{Payload: payload(map[string]any{"pass": true})}); err != nil {
		t.Fatalf("Check: %v", err)
	}
	if err := echo.Check(ctx, sdk.Request{Payload: payload(map[string]any{"pass": false})}); !errors.Is(err, sdk.ErrInvalidCredentials) {
		t.Fatalf("Check fail: %v", err)
	}

	if _, err := minimal.Begin(ctx, sdk.BeginRequest{}); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("Begin on minimal: %v", err)
	}
	if _, err := minimal.Complete(ctx, sdk.CompleteRequest{}); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("Complete on minimal: %v", err)
	}
	if _, err := minimal.Enroll(ctx, sdk.EnrollRequest{}); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("Enroll on minimal: %v", err)
	}
	if err := minimal.Check(ctx, sdk.Request{}); !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), `provider "minimal"`) {
		t.Fatalf("Check on minimal: %v", err)
	}
	if caps := minimal.Info().Capabilities; len(caps) != 0 {
		t.Fatalf("minimal capabilities = %v", caps)
	}
}

// TestKill9MidTraffic kills a plugin with SIGKILL while callers are busy:
// every failed call matches sdk.ErrUnavailable, and the provider comes back
// without a host restart.
func TestKill9MidTraffic(t *testing.T) {
	h, err := newHost(t, Options{}, external(t, "echo", "echo"))
	if err != nil {
		t.Fatal(err)
	}
	p := mustProvider(t, h, "echo")
	oldPID := h.Status()[0].PID

	var (
		stop           atomic.Bool
		ok, unavail    atomic.Int64
		wg             sync.WaitGroup
		otherErrsMu    sync.Mutex
		otherErrs      []error
		okAfterRestart atomic.Int64
	)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				id, err := verify(p, map[string]any{"op": "sleep", "ms": 2})
				switch {
				case err == nil:
					ok.Add(1)
					if int(id.Claims["pid"].(float64)) != oldPID {
						okAfterRestart.Add(1)
					}
				case errors.Is(err, sdk.ErrUnavailable):
					unavail.Add(1)
				default:
					otherErrsMu.Lock()
					otherErrs = append(otherErrs, err)
					otherErrsMu.Unlock()
				}
			}
		}()
	}
	waitFor(t, 5*time.Second, "traffic", func() bool { return ok.Load() > 50 })
	killed := time.Now()
	if err := syscall.Kill(oldPID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "calls served by the restarted plugin", func() bool { return okAfterRestart.Load() > 20 })
	recovered := time.Since(killed)
	stop.Store(true)
	wg.Wait()

	if len(otherErrs) > 0 {
		t.Fatalf("%d errors did not match ErrUnavailable, first: %v", len(otherErrs), otherErrs[0])
	}
	st := h.Status()[0]
	if st.Restarts != 1 || st.PID == oldPID || st.Health != HealthUp || !strings.Contains(st.LastError, "killed") {
		t.Fatalf("status after restart = %+v", st)
	}
	if !pidGone(oldPID) {
		t.Fatalf("killed plugin %d not reaped", oldPID)
	}
	t.Logf("ok=%d unavailable=%d; recovered %s after kill -9", ok.Load(), unavail.Load(), recovered.Round(time.Millisecond))
}

func TestHangingPluginAnswersWithinDeadline(t *testing.T) {
	spec := external(t, "echo", "echo")
	spec.Timeout = 300 * time.Millisecond
	h, err := newHost(t, Options{}, spec)
	if err != nil {
		t.Fatal(err)
	}
	p := mustProvider(t, h, "echo")
	start := time.Now()
	_, err = verify(p, map[string]any{"op": "hang"})
	took := time.Since(start)
	if !errors.Is(err, sdk.ErrUnavailable) || !strings.Contains(err.Error(), "did not answer within 300ms") {
		t.Fatalf("err = %v", err)
	}
	if took < 300*time.Millisecond || took > time.Second {
		t.Fatalf("hanging call took %s, want about 300ms", took)
	}
	// The caller's own shorter deadline wins, and crosses to the plugin.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	id, err := p.Verify(ctx, sdk.Request{Payload: payload(map[string]any{"op": "deadline"})})
	if err != nil {
		t.Fatal(err)
	}
	if ms := id.Claims["deadline_ms"].(float64); ms <= 0 || ms > 100 {
		t.Fatalf("plugin saw a deadline %vms away, want (0,100]", ms)
	}
	// The plugin still serves; the hung call did not cost a restart.
	if _, err := verify(p, map[string]any{"op": "ok"}); err != nil {
		t.Fatal(err)
	}
	if st := h.Status()[0]; st.Restarts != 0 {
		t.Fatalf("status = %+v", st)
	}
}

func TestPanicReturnsInternalAndKeepsServing(t *testing.T) {
	h, err := newHost(t, Options{}, external(t, "echo", "echo"), Spec{Name: "builtin", Kind: "echo"})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"echo", "builtin"} {
		p := mustProvider(t, h, name)
		pid := p.status().PID
		for range 3 {
			_, err := verify(p, map[string]any{"op": "panic"})
			if !errors.Is(err, sdk.ErrInternal) || !strings.Contains(err.Error(), "test panic in Verify") {
				t.Fatalf("%s: err = %v", name, err)
			}
		}
		id, err := verify(p, map[string]any{"op": "ok"})
		if err != nil || int(id.Claims["pid"].(float64)) != pid {
			t.Fatalf("%s after panics: %+v %v (pid was %d)", name, id, err, pid)
		}
		if st := p.status(); st.Restarts != 0 || st.PID != pid {
			t.Fatalf("%s: status = %+v", name, st)
		}
	}
}

// TestUnhealthyPluginIsRestarted stops a plugin with SIGSTOP: the pid
// lives but health checks fail, and after three the host replaces it.
func TestUnhealthyPluginIsRestarted(t *testing.T) {
	h, err := newHost(t, Options{}, external(t, "echo", "echo"))
	if err != nil {
		t.Fatal(err)
	}
	p := mustProvider(t, h, "echo")
	pid := p.status().PID
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "a restart", func() bool { st := p.status(); return st.Restarts == 1 && st.Health == HealthUp })
	st := p.status()
	if !strings.Contains(st.LastError, "3 health checks failed") || st.PID == pid {
		t.Fatalf("status = %+v", st)
	}
	waitFor(t, 2*time.Second, "the stopped plugin to be killed", func() bool { return pidGone(pid) })
	if _, err := verify(p, map[string]any{"op": "ok"}); err != nil {
		t.Fatal(err)
	}
}

// TestCallsFailFastWhileDown makes restarts fail (the pinned binary was
// replaced, and its verified copy is gone, so it must be copied and checked
// again): the provider stays down, calls fail at once with ErrUnavailable,
// and it recovers once the binary is right again.
func TestCallsFailFastWhileDown(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "echo")
	orig, err := os.ReadFile(filepath.Join(bin, "echo"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, orig, 0o755); err != nil {
		t.Fatal(err)
	}
	spec := Spec{Name: "echo", External: &External{Path: path, SHA256: sha256File(t, path)}}
	h, err := newHost(t, Options{}, spec)
	if err != nil {
		t.Fatal(err)
	}
	p := mustProvider(t, h, "echo")
	pid := p.status().PID
	// Swap in another binary (rename, as an upgrade would), then crash it.
	other, _ := os.ReadFile(filepath.Join(bin, "minimal"))
	if err := os.WriteFile(path+".new", other, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".new", path); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(h.pins.dir, spec.External.SHA256)); err != nil {
		t.Fatal(err)
	}
	if _, err := verify(p, map[string]any{"op": "crash"}); !errors.Is(err, sdk.ErrUnavailable) {
		t.Fatalf("crashing call: %v", err)
	}
	waitFor(t, 5*time.Second, "failed restarts", func() bool {
		return strings.Contains(p.status().LastError, "sha256 mismatch")
	})
	start := time.Now()
	_, err = verify(p, map[string]any{"op": "ok"})
	if took := time.Since(start); took > 50*time.Millisecond {
		t.Errorf("call while down took %s", took)
	}
	if !errors.Is(err, sdk.ErrUnavailable) || !strings.Contains(err.Error(), "restarting (attempt ") {
		t.Fatalf("call while down: %v", err)
	}
	if st := p.status(); st.Health != HealthRestarting || st.PID != 0 || st.Attempts < 1 {
		t.Fatalf("status = %+v", st)
	}
	if err := os.WriteFile(path+".new", orig, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".new", path); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "recovery", func() bool { return p.status().Health == HealthUp })
	if _, err := verify(p, map[string]any{"op": "ok"}); err != nil {
		t.Fatal(err)
	}
	if !pidGone(pid) {
		t.Fatal("crashed plugin not reaped")
	}
}

// recordingKV is a host KV that notes whether calls carried a deadline.
type recordingKV struct {
	*memkv.KV
	deadlines atomic.Int64
}

func (k *recordingKV) Get(ctx context.Context, key string) ([]byte, error) {
	if _, ok := ctx.Deadline(); ok {
		k.deadlines.Add(1)
	}
	return k.KV.Get(ctx, key)
}

func TestHostKVFromVerifyIsNamespaced(t *testing.T) {
	kvs := map[string]*recordingKV{"a": {KV: memkv.New()}, "b": {KV: memkv.New()}}
	opts := Options{KV: func(name string) KV { return kvs[name] }}
	h, err := newHost(t, opts, Spec{Name: "a", Kind: "echo"}, external(t, "b", "echo"))
	if err != nil {
		t.Fatal(err)
	}
	a, b := mustProvider(t, h, "a"), mustProvider(t, h, "b")
	if _, err := verify(a, map[string]any{"op": "kvput", "key": "users/alice", "value": "alice-subject"}); err != nil {
		t.Fatal(err)
	}
	id, err := verify(a, map[string]any{"op": "kvget", "key": "users/alice"})
	if err != nil || id.Subject != "alice-subject" {
		t.Fatalf("get from a: %+v %v", id, err)
	}
	_, err = verify(b, map[string]any{"op": "kvget", "key": "users/alice"})
	if !errors.Is(err, sdk.ErrNotFound) || !strings.Contains(err.Error(), `kv get "users/alice"`) {
		t.Fatalf("b sees a's key: %v", err)
	}
	if v, err := kvs["a"].KV.Get(context.Background(), "users/alice"); err != nil || string(v) != "alice-subject" {
		t.Fatalf("host KV of a: %q %v", v, err)
	}
	if es, _ := kvs["b"].KV.List(context.Background(), "", "", 0); len(es) != 0 {
		t.Fatalf("host KV of b: %v", es)
	}
	if kvs["a"].deadlines.Load() == 0 {
		t.Fatal("the call's deadline did not reach the host KV")
	}
	// put-if-absent through CompareAndSwap.
	if _, err := verify(a, map[string]any{"op": "kvonce", "key": "used/1", "value": "x"}); err != nil {
		t.Fatal(err)
	}
	if _, err := verify(a, map[string]any{"op": "kvonce", "key": "used/1", "value": "x"}); !errors.Is(err, sdk.ErrInvalidCredentials) {
		t.Fatalf("second kvonce: %v", err)
	}
	id, err = verify(a, map[string]any{"op": "kvlist", "key": "u"})
	if err != nil || fmt.Sprint(id.Claims["keys"]) != "[used/1 users/alice]" {
		t.Fatalf("list: %+v %v", id.Claims, err)
	}
	// A TTL crosses too.
	if _, err := verify(a, map[string]any{"op": "kvput", "key": "short", "value": "v", "ms": 50}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(80 * time.Millisecond)
	if _, err := verify(a, map[string]any{"op": "kvget", "key": "short"}); !errors.Is(err, sdk.ErrNotFound) {
		t.Fatalf("expired key: %v", err)
	}
	// Bad keys are the plugin's invalid request.
	if _, err := verify(a, map[string]any{"op": "kvget", "key": ""}); !errors.Is(err, sdk.ErrInvalidRequest) {
		t.Fatalf("empty key: %v", err)
	}
}

// TestNoStaleSocketDirs: crashes, restarts and Close leave nothing behind
// in the runtime dir.
func TestNoStaleSocketDirs(t *testing.T) {
	rt := runtimeDir(t)
	h, err := newHost(t, Options{RuntimeDir: rt}, external(t, "a", "echo"), Spec{Name: "b", Kind: "echo"})
	if err != nil {
		t.Fatal(err)
	}
	sockDir := h.sockDir
	for _, name := range []string{"a", "b"} {
		p := mustProvider(t, h, name)
		for i := range 3 {
			pid := p.status().PID
			_ = syscall.Kill(pid, syscall.SIGKILL)
			waitFor(t, 5*time.Second, "restart", func() bool { st := p.status(); return st.Restarts == i+1 && st.Health == HealthUp })
		}
	}
	entries := socketDirs(sockDir)
	if len(entries) != 2 {
		t.Fatalf("%d socket dirs for 2 running plugins: %v", len(entries), entries)
	}
	h.Close()
	if entries, _ := os.ReadDir(rt); len(entries) != 0 {
		t.Fatalf("runtime dir not empty after Close: %v", entries)
	}
}

func TestStartTwiceAndClose(t *testing.T) {
	h, err := newHost(t, Options{}, Spec{Name: "a", Kind: "minimal"})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Start(context.Background(), []Spec{{Name: "a", Kind: "minimal"}, {Name: "b", Kind: "minimal"}}); err == nil || !strings.Contains(err.Error(), `provider "a": a provider with this name`) {
		t.Fatalf("duplicate: %v", err)
	}
	p := mustProvider(t, h, "b")
	pids := []int{h.Status()[0].PID, h.Status()[1].PID}
	h.Close()
	h.Close()
	for _, pid := range pids {
		if !pidGone(pid) {
			t.Fatalf("plugin %d alive after Close", pid)
		}
	}
	if _, err := verify(p, map[string]any{"op": "ok"}); !errors.Is(err, sdk.ErrUnavailable) || !strings.Contains(err.Error(), "stopped") {
		t.Fatalf("call after Close: %v", err)
	}
	if err := h.Start(context.Background(), nil); err == nil {
		t.Fatal("Start after Close")
	}
}

func TestBackoff(t *testing.T) {
	if d := backoff(0, 200*time.Millisecond, 30*time.Second); d != 0 {
		t.Fatalf("first restart delayed %s", d)
	}
	for n, want := range map[int]time.Duration{1: 200 * time.Millisecond, 2: 400 * time.Millisecond, 5: 3200 * time.Millisecond, 20: 30 * time.Second} {
		for range 50 {
			d := backoff(n, 200*time.Millisecond, 30*time.Second)
			if d < want*3/4 || d > min(want*5/4, 30*time.Second) {
				t.Fatalf("backoff(%d) = %s, want %s ±25%%", n, d, want)
			}
		}
	}
}

func TestLongRuntimeDirFallsBack(t *testing.T) {
	long := filepath.Join(t.TempDir(), strings.Repeat("d", 60))
	h, err := newHost(t, Options{RuntimeDir: long}, Spec{Name: "m", Kind: "minimal"})
	if err != nil {
		t.Fatal(err)
	}
	if strings.HasPrefix(h.sockDir, long) || !strings.HasPrefix(h.sockDir, defaultRuntimeDir()) {
		t.Fatalf("socket dir %s", h.sockDir)
	}
	if _, err := verify(mustProvider(t, h, "m"), map[string]any{"user": "u"}); err != nil {
		t.Fatal(err)
	}
}

// recordHandler keeps log records for assertions.
type recordHandler struct {
	mu   *sync.Mutex
	recs *[]string
	pre  []slog.Attr
}

func (h recordHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h recordHandler) WithAttrs(as []slog.Attr) slog.Handler {
	h.pre = append(append([]slog.Attr{}, h.pre...), as...)
	return h
}
func (h recordHandler) WithGroup(string) slog.Handler { return h }
func (h recordHandler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", r.Level, r.Message)
	for _, a := range h.pre {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
	}
	r.Attrs(func(a slog.Attr) bool { fmt.Fprintf(&b, " %s=%v", a.Key, a.Value); return true })
	h.mu.Lock()
	*h.recs = append(*h.recs, b.String())
	h.mu.Unlock()
	return nil
}

// TestPluginLogsReachHost: sdk.Logger lines arrive in the host's log with
// their level, the provider's name and the request id; a stray stdout
// line after the handshake is logged as a warning.
func TestPluginLogsReachHost(t *testing.T) {
	var mu sync.Mutex
	var recs []string
	log := slog.New(recordHandler{mu: &mu, recs: &recs})
	h, err := newHost(t, Options{Logger: log}, external(t, "echo", "echo"))
	if err != nil {
		t.Fatal(err)
	}
	p := mustProvider(t, h, "echo")
	if _, err := p.Verify(context.Background(), sdk.Request{Payload: payload(map[string]any{"op": "log", "subject": "s9"}), RequestID: "rid-7"}); err != nil {
		t.Fatal(err)
	}
	if _, err := verify(p, map[string]any{"op": "stdout"}); err != nil {
		t.Fatal(err)
	}
	find := func(parts ...string) bool {
		mu.Lock()
		defer mu.Unlock()
		for _, r := range recs {
			ok := true
			for _, s := range parts {
				ok = ok && strings.Contains(r, s)
			}
			if ok {
				return true
			}
		}
		return false
	}
	waitFor(t, 2*time.Second, "the plugin's log line", func() bool {
		return find("INFO log from Verify", "provider=echo", "request_id=rid-7", "subject=s9")
	})
	waitFor(t, 2*time.Second, "the stray stdout line", func() bool {
		return find("WARN plugin wrote to stdout", "stray stdout line from Verify")
	})
}

// updaterKV is a host KV with Update but no Add of its own.
type updaterKV struct{ m *memkv.KV }

func (k updaterKV) Get(ctx context.Context, key string) ([]byte, error) { return k.m.Get(ctx, key) }
func (k updaterKV) Put(ctx context.Context, key string, v []byte, ttl time.Duration) error {
	return k.m.Put(ctx, key, v, ttl)
}
func (k updaterKV) Delete(ctx context.Context, key string) error { return k.m.Delete(ctx, key) }
func (k updaterKV) List(ctx context.Context, p, after string, limit int) ([]sdk.KVEntry, error) {
	return k.m.List(ctx, p, after, limit)
}
func (k updaterKV) Update(ctx context.Context, key string, ttl time.Duration, change func([]byte) ([]byte, error)) error {
	return k.m.Update(ctx, key, ttl, change)
}

// plainKV is a host KV with neither Update nor Add.
type plainKV struct{ m *memkv.KV }

func (k plainKV) Get(ctx context.Context, key string) ([]byte, error) { return k.m.Get(ctx, key) }
func (k plainKV) Put(ctx context.Context, key string, v []byte, ttl time.Duration) error {
	return k.m.Put(ctx, key, v, ttl)
}
func (k plainKV) Delete(ctx context.Context, key string) error { return k.m.Delete(ctx, key) }
func (k plainKV) List(ctx context.Context, p, after string, limit int) ([]sdk.KVEntry, error) {
	return k.m.List(ctx, p, after, limit)
}

// TestHostKVAdd: a plugin's KV.Add crosses to the host and is atomic
// whichever way the host KV offers it (its own Add, Update, or neither):
// concurrent adds from the plugin each get a distinct count, the stored
// value is 8 bytes big-endian, a TTL crosses, and a key holding another
// value is the plugin's invalid request.
func TestHostKVAdd(t *testing.T) {
	for _, tc := range []struct {
		name string
		kv   func(*memkv.KV) KV
	}{
		{"adder", func(m *memkv.KV) KV { return m }},
		{"updater", func(m *memkv.KV) KV { return updaterKV{m} }},
		{"plain", func(m *memkv.KV) KV { return plainKV{m} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := memkv.New()
			h, err := newHost(t, Options{KV: func(string) KV { return tc.kv(m) }}, Spec{Name: "a", Kind: "echo"})
			if err != nil {
				t.Fatal(err)
			}
			a := mustProvider(t, h, "a")
			const n = 20
			var (
				mu   sync.Mutex
				seen = map[float64]bool{}
				wg   sync.WaitGroup
			)
			for range n {
				wg.Go(func() {
					id, err := verify(a, map[string]any{"op": "kvadd", "key": "c", "value": "1"})
					if err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					defer mu.Unlock()
					got, _ := id.Claims["n"].(float64)
					if seen[got] {
						t.Errorf("two adds returned %v", got)
					}
					seen[got] = true
				})
			}
			wg.Wait()
			id, err := verify(a, map[string]any{"op": "kvadd", "key": "c", "value": "-25"})
			if err != nil || id.Claims["n"] != float64(-5) {
				t.Fatalf("add -25 after %d adds: %v %v", n, id.Claims["n"], err)
			}
			if v, err := m.Get(context.Background(), "c"); err != nil || !bytes.Equal(v, sdk.EncodeCounter(-5)) {
				t.Fatalf("stored counter %x %v, want %x", v, err, sdk.EncodeCounter(-5))
			}
			if _, err := verify(a, map[string]any{"op": "kvadd", "key": "short", "value": "7", "ms": 50}); err != nil {
				t.Fatal(err)
			}
			time.Sleep(80 * time.Millisecond)
			if id, err := verify(a, map[string]any{"op": "kvadd", "key": "short", "value": "1"}); err != nil || id.Claims["n"] != float64(1) {
				t.Fatalf("add after the TTL: %v %v, want 1", id.Claims["n"], err)
			}
			if _, err := verify(a, map[string]any{"op": "kvput", "key": "text", "value": "12"}); err != nil {
				t.Fatal(err)
			}
			if _, err := verify(a, map[string]any{"op": "kvadd", "key": "text", "value": "1"}); !errors.Is(err, sdk.ErrInvalidRequest) {
				t.Fatalf("add to a text value: %v, want invalid request", err)
			}
			if _, err := verify(a, map[string]any{"op": "kvadd", "key": "", "value": "1"}); !errors.Is(err, sdk.ErrInvalidRequest) {
				t.Fatalf("add to an empty key: %v, want invalid request", err)
			}
		})
	}
}
