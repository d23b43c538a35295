package conformance

import (
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/handoffd/handoff/providers/providertest"
	"github.com/handoffd/handoff/sdk/python/pythontest"
)

// TestPythonTOTP runs the conformance suite against the Python TOTP
// example both ways an operator can configure it: the entry file
// examples/plugin-python/totp.py pinned and executed (its shebang names
// Debian's /usr/bin/python3) with the SDK on PYTHONPATH, and the zipapp
// build.sh makes, which holds the SDK and needs no PYTHONPATH.
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
	t.Run("zipapp", func(t *testing.T) {
		pyz := filepath.Join(t.TempDir(), "totp.pyz")
		if out, err := exec.Command("../plugin-python/build.sh", pyz).CombinedOutput(); err != nil {
			t.Fatalf("build.sh: %v\n%s", err, out)
		}
		providertest.RunCommand(t, providertest.CommandSuite{Command: []string{pyz}, Config: totpConfig, Valid: validTOTP})
	})
}
