package pythonsdk_test

import (
	"context"
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/handoffd/handoff/providers/sdk"
)

// Run without -race for meaningful numbers:
//
//	go test -run '^$' -bench . -benchtime 20x ./sdk/python/

// BenchmarkStart measures a Python plugin's start through the real host:
// pin check, spawn of /usr/bin/python3, imports, certificate, handshake
// (AutoMTLS), Describe, Configure (broker dial to the host KV) and the
// first Verify.
func BenchmarkStart(b *testing.B) {
	spec := kvPlugin(b, "")
	var total time.Duration
	for b.Loop() {
		start := time.Now()
		h, err := startHost(b, nil, &records{}, spec)
		if err != nil {
			b.Fatal(err)
		}
		p, _ := h.Provider("py")
		if _, err := p.Verify(context.Background(), sdk.Request{Payload: json.RawMessage(`{"op":"ok"}`)}); err != nil {
			b.Fatal(err)
		}
		total += time.Since(start)
		b.StopTimer()
		h.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(total.Microseconds())/float64(b.N)/1000, "ms/start")
}

// BenchmarkVerify measures a Verify round trip through a Python plugin,
// without and with one host KV call inside, and reports p50 and p99.
func BenchmarkVerify(b *testing.B) {
	h, err := startHost(b, nil, &records{}, kvPlugin(b, ""))
	if err != nil {
		b.Fatal(err)
	}
	p, _ := h.Provider("py")
	if _, err := call(b, p, map[string]any{"op": "put", "key": "k", "value": b64("v")}); err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct{ name, payload string }{
		{"plain", `{"op":"ok"}`},
		{"with_kv_get", `{"op":"get","key":"k"}`},
	} {
		b.Run(bc.name, func(b *testing.B) {
			req := sdk.Request{Payload: json.RawMessage(bc.payload)}
			for range 200 { // warm up
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
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50_µs")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99_µs")
		})
	}
}
