package conformance

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/handoffd/handoff/providers/providertest"
)

// nodeTOTP returns the command of the Node.js TOTP example
// (examples/plugin-node): `node totp.mjs`, with the packages `npm ci`
// installed there. Without node, npm or those packages it skips on a
// developer's machine and fails in CI (CI=true), where .ci/run runs
// `npm ci --prefix examples/plugin-node`.
func nodeTOTP(t testing.TB) []string {
	t.Helper()
	node := tool(t, "node")
	tool(t, "npm")
	dir := filepath.Join("..", "plugin-node")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "handoff-plugin-sdk", "index.js")); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("examples/plugin-node/node_modules is not installed (CI=true: .ci/run must run npm ci --prefix examples/plugin-node): %v", err)
		}
		t.Skipf("examples/plugin-node/node_modules is not installed (npm ci --prefix examples/plugin-node): %v", err)
	}
	return []string{node, filepath.Join(dir, "totp.mjs")}
}

// TestNodeTOTP runs the conformance suite against the Node.js TOTP
// example through the host handoff runs.
func TestNodeTOTP(t *testing.T) {
	providertest.RunCommand(t, providertest.CommandSuite{Command: nodeTOTP(t), Config: totpConfig, Valid: validTOTP})
}

// BenchmarkNodeTOTP measures the Node.js TOTP example's start, Verify
// round trip and kill -9 recovery through the host, as BenchmarkGoTOTP
// does the Go one's.
func BenchmarkNodeTOTP(b *testing.B) {
	providertest.BenchCommand(b, providertest.CommandSuite{Command: nodeTOTP(b), Config: totpConfig}, nil)
}
