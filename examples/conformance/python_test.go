package conformance

import (
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/handoffd/handoff/providers/providertest"
	"github.com/handoffd/handoff/sdk/python/pythontest"
)

// TestPythonTOTP runs the conformance suite against the Python TOTP
// example each way an operator can configure it (see its README): the
// entry file examples/plugin-python/totp.py as path (its shebang names
// Debian's /usr/bin/python3) with the SDK on PYTHONPATH; the zipapp
// build.sh makes, which holds the SDK, as path; and the interpreter as
// path with the zipapp as its argument.
func TestPythonTOTP(t *testing.T) {
	pythontest.Require(t)
	t.Run("entry", func(t *testing.T) {
		providertest.RunCommand(t, providertest.CommandSuite{
			Command: []string{"../plugin-python/totp.py"},
			Env:     []string{"PYTHONPATH=" + pythontest.SDKDir()},
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
		python, err := filepath.EvalSymlinks(pythontest.Interpreter) // the real binary, as the pin must name it
		if err != nil {
			t.Fatal(err)
		}
		providertest.RunCommand(t, providertest.CommandSuite{Command: []string{python, "-sB", pyz}, Config: totpConfig, Valid: validTOTP})
	})
}
