package conformance

import (
	"testing"

	"github.com/handoffd/handoff/providers/providertest"
	"github.com/handoffd/handoff/sdk/python/pythontest"
)

// TestPythonTOTP runs the conformance suite against the Python TOTP
// example as an operator would configure it: the entry file
// examples/plugin-python/totp.py pinned and executed (its shebang names
// Debian's /usr/bin/python3), with the SDK on PYTHONPATH.
func TestPythonTOTP(t *testing.T) {
	pythontest.Require(t)
	providertest.RunCommand(t, providertest.CommandSuite{
		Command: []string{"../plugin-python/totp.py"},
		Env:     []string{"PYTHONPATH=" + pythontest.SDKDir()},
		Config:  totpConfig,
		Valid:   validTOTP,
	})
}
