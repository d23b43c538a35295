package conformance

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/handoffd/handoff/providers/providertest"
)

// python is Debian's interpreter, the one the Python example's shebang
// names; it must import the SDK's Debian packages (.ci/run installs them).
const python = "/usr/bin/python3"

// TestPythonTOTP runs the conformance suite against the Python TOTP
// example each way an operator can configure it (see its README): the
// entry file examples/plugin-python/totp.py as path (its shebang names
// Debian's /usr/bin/python3) with the SDK on PYTHONPATH; the zipapp
// build.sh makes, which holds the SDK, as path; and the interpreter as
// path with the zipapp as its argument.
func TestPythonTOTP(t *testing.T) {
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
	t.Run("entry", func(t *testing.T) {
		providertest.RunCommand(t, providertest.CommandSuite{
			Command: []string{"../plugin-python/totp.py"},
			Env:     []string{"PYTHONPATH=" + sdk},
			Config:  totpConfig,
			Valid:   validTOTP,
		})
	})
	pyz := filepath.Join(t.TempDir(), "totp.pyz")
	if out, err := exec.Command("../plugin-python/build.sh", pyz).CombinedOutput(); err != nil {
		t.Fatalf("build.sh: %v\n%s", err, out)
	}
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
