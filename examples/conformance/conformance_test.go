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
func tool(t testing.TB, name string) string {
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

// goTOTP builds the Go TOTP example and returns its command.
func goTOTP(t testing.TB) []string {
	bin := filepath.Join(t.TempDir(), "totp")
	build := exec.Command(tool(t, "go"), "build", "-o", bin, "../plugin")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ../plugin: %v\n%s", err, out)
	}
	return []string{bin}
}

// TestGoTOTP runs the conformance suite against the Go TOTP example's
// binary, as handoff would run it.
func TestGoTOTP(t *testing.T) {
	providertest.RunCommand(t, providertest.CommandSuite{Command: goTOTP(t), Config: totpConfig, Valid: validTOTP})
}

// BenchmarkGoTOTP measures the Go TOTP example's start, Verify round trip
// and kill -9 recovery through the host (see providertest.BenchCommand).
func BenchmarkGoTOTP(b *testing.B) {
	providertest.BenchCommand(b, providertest.CommandSuite{Command: goTOTP(b), Config: totpConfig}, nil)
}
