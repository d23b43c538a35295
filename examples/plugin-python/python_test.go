// Package pluginpython holds only tests: the Python TOTP example's unit
// tests (test_totp.py) and the checks that keep its README honest. Like
// every example, it uses nothing of handoff's but the SDK and
// providertest; examples/conformance runs it through the host.
package pluginpython

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/handoffd/handoff/providers/providertest"
)

// python runs Debian's /usr/bin/python3 (the shebang's) with args and the
// SDK on PYTHONPATH, and returns its standard output. When that Python
// cannot import the SDK's Debian packages the test is skipped, and fails
// under CI=true, where .ci/run installs them.
func python(t *testing.T, args ...string) ([]byte, error) {
	t.Helper()
	if out, err := exec.Command("/usr/bin/python3", "-c", "import grpc, google.protobuf, cryptography").CombinedOutput(); err != nil {
		msg := "/usr/bin/python3 lacks python3-grpcio, python3-protobuf or python3-cryptography: " + err.Error() + ": " + string(out)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	sdk, err := filepath.Abs("../../sdk/python")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("/usr/bin/python3", append([]string{"-B"}, args...)...)
	cmd.Env = append(os.Environ(), "PYTHONPATH="+sdk)
	cmd.Stderr = &testWriter{t}
	return cmd.Output()
}

// testWriter shows a Python process's stderr in the test's log.
type testWriter struct{ t *testing.T }

func (w *testWriter) Write(b []byte) (int, error) { w.t.Logf("%s", b); return len(b), nil }

// TestUnittest runs `/usr/bin/python3 -m unittest discover examples/plugin-python`.
func TestUnittest(t *testing.T) {
	if _, err := python(t, "-m", "unittest", "discover", "-s", ".", "-t", "."); err != nil {
		t.Fatalf("test_totp.py: %v", err)
	}
}

// TestREADMEConfig checks the README against the plugin: the configuration
// table lists exactly the keys of totp.CONFIG, and each provider of the
// yaml example configures the plugin without an error.
func TestREADMEConfig(t *testing.T) {
	out, err := python(t, "-c", "import json, totp; print(json.dumps({k: d for k, (_, d) in totp.CONFIG.items()}))")
	if err != nil {
		t.Fatalf("read totp.CONFIG: %v", err)
	}
	var defaults map[string]any
	if err := json.Unmarshal(out, &defaults); err != nil {
		t.Fatal(err)
	}
	providertest.CheckConfigTable(t, "README.md", defaults)
	for _, p := range providertest.READMEProviders(t, "README.md", "") {
		if _, err := python(t, "-c", "import json, sys, totp, handoff_plugin as hp\n"+
			"totp.TOTP().configure(json.loads(sys.argv[1]), hp.Host(hp.kv.NoKV()))", string(p.Config)); err != nil {
			t.Errorf("README provider %s: config %s refused: %v", p.Name, p.Config, err)
		}
	}
}

// TestBuildIsReproducible builds the zipapp twice, more than a zip
// timestamp's 2 s apart and from different stage directories: the pin
// in the README holds only if the same sources give the same bytes.
func TestBuildIsReproducible(t *testing.T) {
	python(t, "-c", "pass")
	dir := t.TempDir()
	var sums [2][32]byte
	for i := range sums {
		if i > 0 {
			time.Sleep(2100 * time.Millisecond)
		}
		out := filepath.Join(dir, fmt.Sprintf("totp%d.pyz", i))
		if b, err := exec.Command("./build.sh", out).CombinedOutput(); err != nil {
			t.Fatalf("build.sh: %v\n%s", err, b)
		}
		b, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		sums[i] = sha256.Sum256(b)
	}
	if sums[0] != sums[1] {
		t.Fatalf("two builds differ: %x and %x", sums[0], sums[1])
	}
}
