package pythonsdk_test

import (
	"context"
	"encoding/json"
	"errors"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/handoffd/handoff/providers"
	"github.com/handoffd/handoff/providers/sdk"
	"github.com/handoffd/handoff/sdk/python/pythontest"
)

// Run without -race for meaningful numbers:
//
//	go test -run '^$' -bench . -benchtime 20x ./sdk/python/

// BenchmarkStart measures a Python plugin's start through the real host,
// to ready and to the first answer: pin check, spawn of /usr/bin/python3,
// imports, certificate, handshake (AutoMTLS), Describe, Configure (broker
// dial to the host KV), then a first Verify. "entry" is a script with the
// SDK on PYTHONPATH, "zipapp" the TOTP example built by build.sh.
func BenchmarkStart(b *testing.B) {
	pyz := filepath.Join(b.TempDir(), "totp.pyz")
	if out, err := exec.Command("../../examples/plugin-python/build.sh", pyz).CombinedOutput(); err != nil {
		b.Fatalf("build.sh: %v\n%s", err, out)
	}
	zipapp := providers.Spec{Name: "py", Config: json.RawMessage(`{"issuer":"Bench"}`), External: pythontest.External(b, pyz, nil)}
	for _, bc := range []struct {
		name    string
		spec    providers.Spec
		payload string
	}{
		{"entry", kvPlugin(b, ""), `{"op":"ok"}`},
		{"zipapp", zipapp, `{"userId":"nobody","code":"123456"}`},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var ready, first []time.Duration
			for b.Loop() {
				start := time.Now()
				h, err := startHost(b, nil, &records{}, bc.spec)
				if err != nil {
					b.Fatal(err)
				}
				ready = append(ready, time.Since(start))
				p, _ := h.Provider("py")
				_, err = p.Verify(context.Background(), sdk.Request{Payload: json.RawMessage(bc.payload)})
				if err != nil && !errors.Is(err, sdk.ErrInvalidCredentials) {
					b.Fatal(err)
				}
				first = append(first, time.Since(start))
				b.StopTimer()
				h.Close()
				b.StartTimer()
			}
			b.ReportMetric(median(ready), "ms_to_ready_p50")
			b.ReportMetric(median(first), "ms_to_first_verify_p50")
		})
	}
}

func median(ds []time.Duration) float64 {
	slices.Sort(ds)
	return float64(ds[len(ds)/2].Microseconds()) / 1000
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
