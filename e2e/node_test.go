package e2e

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestNodeAppwriteSDK runs e2e/node/appwrite.test.mjs, the official
// node-appwrite SDK's custom-token login, against the real daemon.
func TestNodeAppwriteSDK(t *testing.T) {
	_, err := exec.LookPath("node")
	requireTool(t, err == nil, "node")
	if _, err := os.Stat("node/node_modules/node-appwrite/package.json"); err != nil {
		// A fresh clone: install the pinned SDK from package-lock.json.
		out, err := exec.Command("npm", "ci", "--prefix", "node", "--no-audit", "--no-fund").CombinedOutput()
		requireTool(t, err == nil, "node-appwrite (npm ci failed: "+string(out)+")")
	}

	d := startDaemon(t, "")
	if d.Key == "" {
		t.Fatal("the first start printed no API key")
	}
	cmd := exec.Command("node", "--test", "--test-reporter=spec", "appwrite.test.mjs")
	cmd.Dir = "node"
	cmd.Env = append(os.Environ(), "HANDOFF_ENDPOINT="+d.URL+"/v1", "HANDOFF_PROJECT=default", "HANDOFF_KEY="+d.Key)
	out, err := cmd.CombinedOutput()
	t.Logf("node-appwrite:\n%s", out)
	if err != nil {
		t.Fatalf("node-appwrite scenario failed: %v", err)
	}
	// The SDK prints every X-Appwrite-Warning with console.warn: a server
	// version older than the SDK's response format warns on each call.
	if strings.Contains(string(out), "The current SDK is built for Appwrite") || strings.Contains(string(out), "Please downgrade") {
		t.Fatalf("node-appwrite warned about the server version:\n%s", out)
	}
}
