package conformance

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/handoffd/handoff/providers/providertest"
)

// python is Debian's interpreter, the one the Python example's shebang
// names; it must import the SDK's Debian packages (.ci/run installs them).
const python = "/usr/bin/python3"

// pythonTOTP checks python and builds the Python TOTP example's zipapp
// (examples/plugin-python/build.sh); it returns the zipapp and the SDK's
// directory, for the layout that runs totp.py with it on PYTHONPATH.
func pythonTOTP(t testing.TB) (pyz, sdk string) {
	t.Helper()
	if out, err := exec.Command(tool(t, python), "-c", "import grpc, google.protobuf, cryptography").CombinedOutput(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s lacks the Python SDK's Debian packages (.ci/run installs them): %v: %s", python, err, out)
		}
		t.Skipf("%s lacks the Python SDK's Debian packages: %v: %s", python, err, out)
	}
	sdk, err := filepath.Abs("../../sdk/python")
	if err != nil {
		t.Fatal(err)
	}
	pyz = filepath.Join(t.TempDir(), "totp.pyz")
	if out, err := exec.Command("../plugin-python/build.sh", pyz).CombinedOutput(); err != nil {
		t.Fatalf("build.sh: %v\n%s", err, out)
	}
	return pyz, sdk
}

// TestPythonTOTP runs the conformance suite against the Python TOTP
// example each way an operator can configure it (see its README): the
// entry file examples/plugin-python/totp.py as path (its shebang names
// Debian's /usr/bin/python3) with the SDK on PYTHONPATH; the zipapp
// build.sh makes, which holds the SDK, as path; and the interpreter as
// path with the zipapp as its argument.
func TestPythonTOTP(t *testing.T) {
	pyz, sdk := pythonTOTP(t)
	t.Run("entry", func(t *testing.T) {
		providertest.RunCommand(t, providertest.CommandSuite{
			Command: []string{"../plugin-python/totp.py"},
			Env:     []string{"PYTHONPATH=" + sdk},
			Config:  totpConfig,
			Valid:   validTOTP,
		})
	})
	t.Run("zipapp", func(t *testing.T) {
		providertest.RunCommand(t, providertest.CommandSuite{Command: []string{pyz}, Config: totpConfig, Valid: validTOTP})
	})
	t.Run("runtime", func(t *testing.T) {
		bin, err := filepath.EvalSymlinks(python) // the real binary, as the pin must name it
		if err != nil {
			t.Fatal(err)
		}
		providertest.RunCommand(t, providertest.CommandSuite{Command: []string{bin, "-sB", pyz}, Config: totpConfig, Valid: validTOTP})
	})
}

// BenchmarkPythonTOTP measures the Python TOTP example (its zipapp) as
// BenchmarkGoTOTP measures the Go one: start, Verify round trip and kill -9
// recovery through the host. "plain" sends `{}`, refused before any KV
// call, as BenchmarkGoTOTP does; "kv" sends a code for a user who is not
// enrolled, which once throttled costs one host KV call (a Get over the
// broker) per Verify.
func BenchmarkPythonTOTP(b *testing.B) {
	pyz, _ := pythonTOTP(b)
	s := providertest.CommandSuite{Command: []string{pyz}, Config: totpConfig}
	b.Run("plain", func(b *testing.B) { providertest.BenchCommand(b, s, nil) })
	b.Run("kv", func(b *testing.B) {
		providertest.BenchCommand(b, s, json.RawMessage(`{"userId":"bench","code":"123456"}`))
	})
}
