package conformance

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/handoffd/handoff/providers/providertest"
)

// totpConfig is the config every TOTP example takes.
var totpConfig = map[string]any{"issuer": "Conformance"}

// tool returns the path of a program the test needs. A missing one skips
// the test on a developer's machine and fails it in CI (CI=true), where
// .ci/run must have installed it.
func tool(t *testing.T, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is not installed (CI=true: .ci/run must install it): %v", name, err)
		}
		t.Skipf("%s is not installed: %v", name, err)
	}
	return path
}

// TestGoTOTP builds the Go TOTP example and runs the conformance suite
// against the binary, as handoff would run it.
func TestGoTOTP(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "totp")
	build := exec.Command(tool(t, "go"), "build", "-o", bin, "../plugin")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ../plugin: %v\n%s", err, out)
	}
	providertest.RunCommand(t, providertest.CommandSuite{
		Command: []string{bin},
		Config:  totpConfig,
		Valid:   validTOTP,
	})
}
