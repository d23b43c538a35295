package conformance

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/handoffd/handoff/providers/providertest"
)

// TestNodeTOTP runs the conformance suite against the Node.js TOTP
// example (examples/plugin-node), started as `node totp.mjs` with the
// packages `npm ci` installed there. Without node, npm or those packages
// it skips on a developer's machine and fails in CI (CI=true), where
// .ci/run runs `npm ci --prefix examples/plugin-node`.
func TestNodeTOTP(t *testing.T) {
	node := tool(t, "node")
	tool(t, "npm")
	dir := filepath.Join("..", "plugin-node")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "handoff-plugin-sdk", "index.js")); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("examples/plugin-node/node_modules is not installed (CI=true: .ci/run must run npm ci --prefix examples/plugin-node): %v", err)
		}
		t.Skipf("examples/plugin-node/node_modules is not installed (npm ci --prefix examples/plugin-node): %v", err)
	}
	providertest.RunCommand(t, providertest.CommandSuite{
		Command: []string{node, filepath.Join(dir, "totp.mjs")},
		Config:  totpConfig,
		Valid:   validTOTP,
	})
}
