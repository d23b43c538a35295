// Package pluginpython holds only tests: the Python TOTP example's unit
// tests (test_totp.py) and the checks that keep its README honest.
package pluginpython

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/handoffd/handoff/providers"
	"github.com/handoffd/handoff/providers/providertest"
	"github.com/handoffd/handoff/sdk/python/pythontest"
)

// TestUnittest runs `/usr/bin/python3 -m unittest discover examples/plugin-python`.
func TestUnittest(t *testing.T) { pythontest.Unittest(t, ".") }

// TestREADMEConfig checks the README's config example against the plugin
// itself: each provider of the yaml example starts through the real host
// with its config, and the configuration table lists exactly the keys of
// totp.CONFIG.
func TestREADMEConfig(t *testing.T) {
	py := pythontest.Require(t)
	cmd := exec.Command(py, "-B", "-c", "import json, totp; print(json.dumps({k: d for k, (_, d) in totp.CONFIG.items()}))")
	cmd.Env = append(os.Environ(), "PYTHONPATH="+pythontest.SDKDir())
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("read totp.CONFIG: %v", err)
	}
	var defaults map[string]any
	if err := json.Unmarshal(out, &defaults); err != nil {
		t.Fatal(err)
	}
	providertest.CheckConfigTable(t, "README.md", defaults)

	ext := pythontest.External(t, "totp.py", pythontest.Env())
	h := providers.New(providers.Options{})
	defer h.Close()
	for _, p := range providertest.READMEProviders(t, "README.md", "") {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		info, err := h.Probe(ctx, providers.Spec{Name: p.Name, Config: p.Config, External: ext})
		cancel()
		if err != nil || info.Name != "totp" {
			t.Errorf("README provider %s with config %s: %+v, %v", p.Name, p.Config, info, err)
		}
	}
}
