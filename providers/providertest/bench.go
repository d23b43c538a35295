package providertest

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/handoffd/handoff/providers"
	"github.com/handoffd/handoff/providers/sdk"
)

// BenchCommand measures an external plugin command through the host
// handoff runs, as package providers' benchmarks measure its test
// plugins:
//
//   - start: the pinned copy hashed again, the process, the handshake with
//     AutoMTLS, Describe, Configure and the first Verify answered
//     (ms/start);
//   - verify: one Verify round trip (p50 and p99, µs);
//   - restart: kill -9 of the plugin → the first Verify answered by its
//     replacement, which the host's supervisor starts (p50 and p99, ms).
//     The plugin is left up 2 s between kills, untimed, so that each
//     restart is immediate, as after a healthy uptime in production.
//
// Verify gets payload (`{}` when nil); an identity, ErrInvalidRequest and
// ErrInvalidCredentials are answers. Run it without -race, e.g.
//
//	go test -run '^$' -bench . -benchtime 20x ./examples/conformance/
func BenchCommand(b *testing.B, s CommandSuite, payload json.RawMessage) {
	b.Helper()
	if payload == nil {
		payload = json.RawMessage(`{}`)
	}
	req := sdk.Request{Payload: payload}
	spec := providers.Spec{Name: "bench", External: commandExternal(b, s), Config: RawConfig(b, s.Config)}
	answered := func(err error) bool {
		return err == nil || errors.Is(err, sdk.ErrInvalidRequest) || errors.Is(err, sdk.ErrInvalidCredentials)
	}
	ctx := context.Background()

	b.Run("start", func(b *testing.B) {
		h := newHost(b, providers.Options{})
		var total time.Duration
		for b.Loop() {
			start := time.Now()
			proc, err := h.Spawn(spec)
			if err != nil {
				b.Fatal(err)
			}
			c := &Client{rpc: proc.RPC(), kv: NewKV()}
			_, err = c.Describe(ctx)
			if err == nil {
				err = c.Configure(ctx, spec.Config)
			}
			if err == nil {
				if _, verr := c.Verify(ctx, req); !answered(verr) {
					err = verr
				}
			}
			total += time.Since(start)
			b.StopTimer()
			proc.Stop()
			if err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
		b.ReportMetric(float64(total.Microseconds())/float64(b.N)/1000, "ms/start")
	})

	b.Run("verify", func(b *testing.B) {
		_, p := startBench(b, spec)
		for range 200 { // warm up
			_, _ = p.Verify(ctx, req)
		}
		lat := make([]time.Duration, 0, b.N)
		for b.Loop() {
			start := time.Now()
			if _, err := p.Verify(ctx, req); !answered(err) {
				b.Fatal(err)
			}
			lat = append(lat, time.Since(start))
		}
		reportLatency(b, lat, "µs", time.Microsecond)
	})

	b.Run("restart", func(b *testing.B) {
		h, p := startBench(b, spec)
		lat := make([]time.Duration, 0, b.N)
		for b.Loop() {
			b.StopTimer()
			time.Sleep(2 * time.Second) // past the host's healthyAfter: the restart is immediate
			pid := benchPID(h)
			proc, err := os.FindProcess(pid)
			if err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			start := time.Now()
			_ = proc.Kill()
			for {
				_, err := p.Verify(ctx, req)
				if answered(err) && benchPID(h) != pid {
					break
				}
				time.Sleep(200 * time.Microsecond)
			}
			lat = append(lat, time.Since(start))
		}
		reportLatency(b, lat, "ms", time.Millisecond)
	})
}

// startBench starts spec in a host of its own, closed when b ends.
func startBench(b *testing.B, spec providers.Spec) (*providers.Host, *providers.Provider) {
	b.Helper()
	h := newHost(b, providers.Options{})
	if err := h.Start(context.Background(), []providers.Spec{spec}); err != nil {
		b.Fatal(err)
	}
	p, _ := h.Provider(spec.Name)
	return h, p
}

// benchPID is the pid of the host's one plugin, 0 while it is down.
func benchPID(h *providers.Host) int { return h.Status()[0].PID }

// reportLatency reports the p50 and p99 of lat in unit.
func reportLatency(b *testing.B, lat []time.Duration, unit string, scale time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	for _, q := range []struct {
		name string
		at   float64
	}{{"p50-", 0.50}, {"p99-", 0.99}} {
		b.ReportMetric(float64(lat[int(q.at*float64(len(lat)-1))])/float64(scale), q.name+unit)
	}
}
