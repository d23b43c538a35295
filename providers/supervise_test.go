package providers

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/handoffd/handoff/providers/sdk"
)

// TestOptionalProviderIsRetriedUntilItStarts: a provider whose binary is
// missing at the first start is retried for ever when optional (Start
// does not fail; the rest serve) and comes up once the binary appears.
// Before, a failed first start was final.
func TestOptionalProviderIsRetriedUntilItStarts(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "echo")
	src := filepath.Join(bin, "echo")
	opt := Spec{Name: "later", Optional: true, External: &External{Path: path, SHA256: sha256File(t, src)}}
	h, err := newHost(t, Options{}, opt, Spec{Name: "ok", Kind: "minimal"})
	if err != nil {
		t.Fatalf("Start failed for an optional provider: %v", err)
	}
	p := mustProvider(t, h, "later")
	waitFor(t, 5*time.Second, "a retry", func() bool { return p.status().Attempts >= 2 })
	st := p.status()
	if st.Health != HealthRestarting || !st.Optional || !strings.Contains(st.LastError, "no such file") {
		t.Fatalf("status %+v", st)
	}
	if _, err := verify(p, map[string]any{"op": "ok"}); !errors.Is(err, sdk.ErrUnavailable) {
		t.Fatalf("call while restarting: %v", err)
	}
	if _, err := verify(mustProvider(t, h, "ok"), map[string]any{"user": "u"}); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, raw, 0o755); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the provider up", func() bool { return p.status().Health == HealthUp })
	if st := p.status(); st.Attempts != 0 || st.Restarts != 0 || st.PID == 0 {
		t.Fatalf("status once up: %+v", st)
	}
	if _, err := verify(p, map[string]any{"op": "ok"}); err != nil {
		t.Fatal(err)
	}
}

// TestRequiredProviderFailsStart: the same missing binary without
// optional fails Start, naming the provider and the key.
func TestRequiredProviderFailsStart(t *testing.T) {
	spec := Spec{Name: "needed", External: &External{Path: filepath.Join(t.TempDir(), "gone"), SHA256: strings.Repeat("ab", 32)}}
	_, err := newHost(t, Options{}, spec, Spec{Name: "ok", Kind: "minimal"})
	var ke *KeyError
	if err == nil || !strings.Contains(err.Error(), `provider "needed"`) || !errors.As(err, &ke) || ke.Key != "plugin.path" {
		t.Fatalf("Start = %v", err)
	}
	if strings.Contains(err.Error(), `provider "ok"`) {
		t.Fatalf("Start names the provider that started: %v", err)
	}
}

// TestStuckPluginIsRestarted: calls that run past the provider's timeout
// are logged with the timeout and request id, and stuckCalls of them in a
// row kill the plugin (its process alive, answering health checks) and
// start it again. Before, a plugin that hung every call stayed "up".
func TestStuckPluginIsRestarted(t *testing.T) {
	var mu sync.Mutex
	var recs []string
	log := slog.New(recordHandler{mu: &mu, recs: &recs})
	spec := external(t, "stuck", "echo")
	spec.Timeout = 150 * time.Millisecond
	h, err := newHost(t, Options{Logger: log}, spec)
	if err != nil {
		t.Fatal(err)
	}
	p := mustProvider(t, h, "stuck")
	pid := p.status().PID
	hang := func(id string) error {
		_, err := p.Verify(context.Background(), sdk.Request{Payload: payload(map[string]any{"op": "hang"}), RequestID: id})
		return err
	}
	// Two timeouts, then an answer in time: the count starts again.
	for _, id := range []string{"r1", "r2"} {
		if err := hang(id); !errors.Is(err, sdk.ErrUnavailable) {
			t.Fatalf("hung call: %v", err)
		}
	}
	if _, err := verify(p, map[string]any{"op": "ok"}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"r3", "r4"} {
		_ = hang(id)
	}
	time.Sleep(3 * h.tune.pingEvery) // health checks pass: the process answers Ping
	if st := p.status(); st.Health != HealthUp || st.PID != pid {
		t.Fatalf("restarted before %d timeouts in a row: %+v", h.tune.stuckCalls, st)
	}
	_ = hang("r5")
	waitFor(t, 5*time.Second, "the stuck plugin restarted", func() bool {
		st := p.status()
		return st.Health == HealthUp && st.Restarts == 1 && st.PID != pid
	})
	if !strings.Contains(p.status().LastError, "3 calls in a row ran past the 150ms timeout") {
		t.Errorf("last error %q", p.status().LastError)
	}
	waitFor(t, 5*time.Second, "the stuck process reaped", func() bool { return pidGone(pid) })
	if _, err := verify(p, map[string]any{"op": "ok"}); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	logged := map[string]bool{}
	for _, r := range recs {
		if strings.HasPrefix(r, "WARN plugin call timed out") && strings.Contains(r, "provider=stuck") && strings.Contains(r, "timeout=150ms") {
			for _, id := range []string{"r1", "r2", "r3", "r4", "r5"} {
				if strings.Contains(r, "request_id="+id+" ") {
					logged[id] = true
				}
			}
		}
	}
	if len(logged) != 5 {
		t.Errorf("timed-out calls logged: %v; records: %q", logged, recs)
	}
}

// TestBackoffScheduleCrashesEveryThreeSeconds: with the default timings,
// a plugin that crashes after 3 s of uptime, again and again, is
// restarted at once every time. Before, the backoff only reset after a
// healthy minute, so such a plugin waited 0.2, 0.4 ... 25.6 s and then
// 30 s before each restart.
func TestBackoffScheduleCrashesEveryThreeSeconds(t *testing.T) {
	tu := defaultTuning
	attempts := 0
	for crash := range 50 {
		attempts = nextAttempts(attempts, 3*time.Second, tu)
		if d := backoff(attempts, tu.backoffBase, tu.backoffMax); d != 0 {
			t.Fatalf("crash %d: restart delayed %s", crash, d)
		}
		attempts++
	}
	// A plugin that crashes at once backs off, never past backoffMax.
	attempts, last := 0, time.Duration(0)
	for range 50 {
		attempts = nextAttempts(attempts, 100*time.Millisecond, tu)
		last = backoff(attempts, tu.backoffBase, tu.backoffMax)
		if last > tu.backoffMax {
			t.Fatalf("delay %s past the cap %s", last, tu.backoffMax)
		}
		attempts++
	}
	if last < tu.backoffMax*3/4 {
		t.Fatalf("a crash loop is not backed off: last delay %s", last)
	}
}

// TestBackoffResetsAfterShortUptime runs the schedule on real processes:
// with healthyAfter 300 ms and a 2 s backoff base, a plugin that crashes
// after 400 ms of uptime is restarted at once each time; one that crashes
// sooner waits the backoff.
func TestBackoffResetsAfterShortUptime(t *testing.T) {
	h, err := newHostTuned(t, Options{}, func(t *tuning) {
		t.healthyAfter, t.backoffBase, t.backoffMax = 300*time.Millisecond, 2*time.Second, 4*time.Second
	}, external(t, "crashy", "echo"))
	if err != nil {
		t.Fatal(err)
	}
	p := mustProvider(t, h, "crashy")
	for i := 1; i <= 4; i++ {
		time.Sleep(400 * time.Millisecond)
		start := time.Now()
		_, _ = verify(p, map[string]any{"op": "crash"})
		waitFor(t, 5*time.Second, "the restart", func() bool { st := p.status(); return st.Restarts == i && st.Health == HealthUp })
		if took := time.Since(start); took > time.Second {
			t.Fatalf("restart %d after %s of uptime took %s: the backoff did not reset", i, 400*time.Millisecond, took)
		}
	}
	// At once after the restart (uptime below healthyAfter): the backoff.
	start := time.Now()
	_, _ = verify(p, map[string]any{"op": "crash"})
	waitFor(t, 10*time.Second, "the restart", func() bool { st := p.status(); return st.Restarts == 5 && st.Health == HealthUp })
	if took := time.Since(start); took < time.Second {
		t.Fatalf("a crash right after a restart was restarted after %s, want the backoff (>= 1.5 s)", took)
	}
}

// TestSlowPluginThatAnswersIsNotRestarted: calls that time out while
// another call is answered in time do not restart the plugin (a plugin
// slow under load still works); once nothing has been answered for a
// whole timeout, three timeouts in a row do.
func TestSlowPluginThatAnswersIsNotRestarted(t *testing.T) {
	spec := external(t, "slow", "echo")
	spec.Timeout = 300 * time.Millisecond
	h, err := newHost(t, Options{}, spec)
	if err != nil {
		t.Fatal(err)
	}
	p := mustProvider(t, h, "slow")
	pid := p.status().PID
	if _, err := verify(p, map[string]any{"op": "ok"}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 5 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _ = verify(p, map[string]any{"op": "hang"})
		}()
	}
	time.Sleep(100 * time.Millisecond)
	// Answered in time at about 250 ms, just before the five time out.
	if _, err := verify(p, map[string]any{"op": "sleep", "millis": 150}); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	time.Sleep(3 * h.tune.pingEvery)
	if st := p.status(); st.Health != HealthUp || st.PID != pid || st.Restarts != 0 {
		t.Fatalf("restarted while it answered: %+v", st)
	}
	for range 3 {
		_, _ = verify(p, map[string]any{"op": "hang"})
	}
	waitFor(t, 5*time.Second, "the restart", func() bool { st := p.status(); return st.Restarts == 1 && st.Health == HealthUp })
}
