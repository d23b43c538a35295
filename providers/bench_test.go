package providers

import (
	"context"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/handoffd/handoff/providers/sdk"
)

// Run without -race for meaningful numbers:
//
//	go test -run '^$' -bench . -benchtime 2000x ./providers/

// BenchmarkStart measures spawn → handshake (AutoMTLS) → Describe →
// Configure → first Verify, for a built-in (re-exec of this binary) and a
// pinned external plugin (its sha256 checked on every start).
func BenchmarkStart(b *testing.B) {
	for _, bc := range []struct {
		name string
		spec func() Spec
	}{
		{"builtin", func() Spec { return Spec{Name: "echo", Kind: "echo"} }},
		{"external", func() Spec { return external(b, "echo", "echo") }},
	} {
		b.Run(bc.name, func(b *testing.B) { benchStart(b, bc.spec()) })
	}
}

// benchStart starts a host with spec alone (named "echo"), calls Verify
// once and closes it, b.N times, and reports the mean time to that first
// answer.
func benchStart(b *testing.B, spec Spec) {
	rt := runtimeDir(b)
	var total time.Duration
	for b.Loop() {
		start := time.Now()
		h := New(Options{Builtins: builtins, RuntimeDir: rt})
		if err := h.Start(context.Background(), []Spec{spec}); err != nil {
			b.Fatal(err)
		}
		p, _ := h.Provider("echo")
		if _, err := p.Verify(context.Background(), sdk.Request{Payload: payload(map[string]any{"op": "ok"})}); err != nil {
			b.Fatal(err)
		}
		total += time.Since(start)
		b.StopTimer()
		h.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(total.Microseconds())/float64(b.N)/1000, "ms/start")
}

// BenchmarkVerify measures one Verify round trip through a real plugin
// process (AutoMTLS on), with and without a host KV call inside, and
// reports p50 and p99.
func BenchmarkVerify(b *testing.B) { benchVerify(b, external(b, "echo", "echo"), 200) }

// benchVerify runs spec (an echo plugin named "echo") and times Verify
// after warm calls, plain and with a host KV get inside.
func benchVerify(b *testing.B, spec Spec, warm int) {
	h, err := newHost(b, Options{}, spec)
	if err != nil {
		b.Fatal(err)
	}
	p := mustProvider(b, h, "echo")
	if _, err := verify(p, map[string]any{"op": "kvput", "key": "k", "value": "v"}); err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name    string
		payload any
	}{
		{"plain", map[string]any{"op": "ok"}},
		{"with_kv_get", map[string]any{"op": "kvget", "key": "k"}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			req := sdk.Request{Payload: payload(bc.payload)}
			for range warm {
				_, _ = p.Verify(context.Background(), req)
			}
			lat := make([]time.Duration, 0, b.N)
			for b.Loop() {
				start := time.Now()
				if _, err := p.Verify(context.Background(), req); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(start))
			}
			reportPercentiles(b, lat, "µs", time.Microsecond)
		})
	}
}

// BenchmarkRestart measures kill -9 of a plugin → the first successful
// Verify on its replacement (detection, reap, spawn, handshake, Configure).
func BenchmarkRestart(b *testing.B) {
	for _, bc := range []struct {
		name string
		spec func() Spec
	}{
		{"builtin", func() Spec { return Spec{Name: "echo", Kind: "echo"} }},
		{"external", func() Spec { return external(b, "echo", "echo") }},
	} {
		b.Run(bc.name, func(b *testing.B) { benchRestart(b, bc.spec()) })
	}
}

// benchRestart kills spec's plugin (an echo named "echo") with SIGKILL
// b.N times and times each until a Verify answers from its replacement.
func benchRestart(b *testing.B, spec Spec) {
	// healthyAfter 0: every restart is a first one, made at once.
	h, err := newHostTuned(b, Options{}, func(t *tuning) { t.healthyAfter = 0 }, spec)
	if err != nil {
		b.Fatal(err)
	}
	p := mustProvider(b, h, "echo")
	lat := make([]time.Duration, 0, b.N)
	req := sdk.Request{Payload: payload(map[string]any{"op": "ok"})}
	for b.Loop() {
		pid := p.status().PID
		start := time.Now()
		_ = syscall.Kill(pid, syscall.SIGKILL)
		for {
			id, err := p.Verify(context.Background(), req)
			if err == nil && int(id.Claims["pid"].(float64)) != pid {
				break
			}
			time.Sleep(200 * time.Microsecond)
		}
		lat = append(lat, time.Since(start))
	}
	reportPercentiles(b, lat, "ms", time.Millisecond)
}

func reportPercentiles(b *testing.B, lat []time.Duration, unit string, scale time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	at := func(q float64) float64 { return float64(lat[int(q*float64(len(lat)-1))]) / float64(scale) }
	b.ReportMetric(at(0.50), "p50-"+unit)
	b.ReportMetric(at(0.99), "p99-"+unit)
}
